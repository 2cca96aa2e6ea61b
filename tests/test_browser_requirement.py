"""Without Chromium the browser tests skip with one line saying how to get them, unless the environment requires
them (.ci/run sets DDPM_EXPLORER_REQUIRE_BROWSER=1): then they fail. Checked on two tiny browser tests run by a
pytest in a subprocess, with conftest.py's Chromium pointed at a file that does not exist."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONFTEST = """
import importlib.util

spec = importlib.util.spec_from_file_location("repo_conftest", {path!r})
repo_conftest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(repo_conftest)
browser, page, pytest_runtest_setup = repo_conftest.browser, repo_conftest.page, repo_conftest.pytest_runtest_setup
"""

TINY_TESTS = """
def test_one(page):
    pass


def test_two(browser):
    pass
"""


def run_without_chromium(tmp_path: Path, require: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(CONFTEST.format(path=str(ROOT / "tests" / "conftest.py")))
    (tmp_path / "test_tiny_browser.py").write_text(TINY_TESTS)
    env = {**os.environ, "DDPM_EXPLORER_CHROMIUM": str(tmp_path / "no-chromium-here")}
    env.pop("DDPM_EXPLORER_REQUIRE_BROWSER", None)
    if require is not None:
        env["DDPM_EXPLORER_REQUIRE_BROWSER"] = require
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-ra", "-p", "no:cacheprovider", "test_tiny_browser.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_chromium_skips_the_browser_tests_with_one_line_saying_how_to_get_them(tmp_path):
    result = run_without_chromium(tmp_path, require=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 skipped" in result.stdout
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert line.startswith("SKIPPED [2] ") and "apt-get install -y chromium" in line


def test_missing_chromium_fails_when_the_environment_requires_the_browser_tests(tmp_path):
    result = run_without_chromium(tmp_path, require="1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 errors" in result.stdout and "skipped" not in result.stdout
    assert "apt-get install -y chromium" in result.stdout
    assert "DDPM_EXPLORER_REQUIRE_BROWSER=1 requires them" in result.stdout
