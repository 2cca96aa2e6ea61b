"""Every section a benchmark writes into benchmarks/RESULTS.md names the command that produced it, as typed at the
repository root, whatever folder the benchmark ran from and however its main() was called."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


def load_common():
    spec = importlib.util.spec_from_file_location("benchmarks_common", BENCHMARKS / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    return common


def test_the_command_is_named_as_typed_at_the_repository_root(monkeypatch):
    common = load_common()
    script = str(BENCHMARKS / "recipe_search.py")
    assert (
        common.command_line(script, ["--only", "base", "eta1"]) == "python benchmarks/recipe_search.py --only base eta1"
    )
    monkeypatch.chdir(BENCHMARKS)  # typed there as `python recipe_search.py --n 64`
    monkeypatch.setattr(sys, "argv", ["recipe_search.py", "--n", "64"])
    assert common.command_line(script) == "python benchmarks/recipe_search.py --n 64"
    header = common.section_header("## Heading", "a machine", common.command_line(script, []))
    assert "Command: `python benchmarks/recipe_search.py`" in header


def test_every_benchmark_that_writes_a_section_names_its_own_command():
    writers = [path for path in BENCHMARKS.glob("*.py") if "section_header(" in path.read_text()]
    assert len(writers) >= 7, writers
    for path in writers:
        if path.name != "common.py":
            assert "command_line(__file__" in path.read_text(), path.name
