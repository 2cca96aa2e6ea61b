"""benchmarks/cpu_efficiency.py: its smoke run (the docstring's) measures the matmul peaks, the live recipe and a
variant, and profiles the live recipe, in seconds and without writing RESULTS.md; the variants it builds train
the network they name (the model swap reaches what the loss calls)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ["--quick", "--presets", "tiny", "--variants", "fp32", "--no-write"]


@pytest.fixture
def cpu_efficiency(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import cpu_efficiency

    return cpu_efficiency


def test_the_docstring_s_smoke_command_is_the_one_tested(cpu_efficiency):
    assert " ".join(SMOKE) in cpu_efficiency.__doc__


def test_the_smoke_run_reports_peaks_rows_and_profile_and_writes_nothing():
    results = (ROOT / "benchmarks" / "RESULTS.md").read_bytes()
    done = subprocess.run(
        [sys.executable, "benchmarks/cpu_efficiency.py", *SMOKE], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"float32 \d+ GFLOP/s, bf16 \d+ GFLOP/s", out), out
    assert "| live | - | 433,860 | 0.179 |" in out, out  # tiny (with its 11 x 64 label embedding): 28x28 FLOPs
    assert "| fp32 | precision=fp32 | 433,860 | 0.179 |" in out and "| 1.00x | 1.00x |" in out
    assert "Where the live recipe's time goes" in out and "convolution" in out
    assert "Command: `python benchmarks/cpu_efficiency.py --quick" in out
    assert (ROOT / "benchmarks" / "RESULTS.md").read_bytes() == results


def test_a_variant_trains_its_own_network(cpu_efficiency):
    from core.training import TrainConfig, load_training_data

    data = load_training_data(TrainConfig())
    for name in ("w32-2lv", "p2-w32-2lv", "no-norm", "fused-adamw", "channels_last-contiguous-norm"):
        trainer = cpu_efficiency.build(cpu_efficiency.BY_NAME[name], data).trainer
        assert trainer.network is trainer.model  # what the loss calls is the network the optimizer steps
        optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
        assert optimized == {id(p) for p in trainer.model.parameters()}
        before = [p.detach().clone() for p in trainer.model.parameters()]
        trainer.train_step(1e-3)
        assert any(not torch.equal(a, p) for a, p in zip(before, trainer.model.parameters(), strict=True)), name
        has_norm = any(isinstance(m, torch.nn.GroupNorm) for m in trainer.model.modules())
        assert has_norm == (name != "no-norm")
        x = trainer.train_tensor[:2]
        assert trainer.model(x, torch.tensor([0, 999])).shape == x.shape


def test_the_contiguous_group_norm_is_group_norm_in_the_input_s_layout(cpu_efficiency):
    norm = torch.nn.GroupNorm(4, 16)
    torch.nn.init.normal_(norm.weight)
    contiguous = cpu_efficiency.ContiguousGroupNorm(4, 16)
    contiguous.load_state_dict(norm.state_dict())
    x = torch.randn(2, 16, 7, 7).to(memory_format=torch.channels_last)
    out = contiguous(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, norm(x))
