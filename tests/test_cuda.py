"""Sampling and training on CUDA give the CPU's results within float32 tolerance (core/device_agreement.py states
the tolerances and why). Where there is no CUDA GPU the two CUDA tests skip, saying so; the comparison itself is
checked on the CPU everywhere."""

import pytest
import torch

from core.device_agreement import SAMPLING_TOLERANCE, agreement, sampled, trained

NO_CUDA = "no CUDA GPU on this machine: CUDA-vs-CPU agreement runs where one exists (and in benchmarks/gpu_check.py)"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def on_cuda():
    return agreement(torch.device("cuda"))


@needs_cuda
def test_sampling_on_cuda_matches_the_cpu(on_cuda):
    assert on_cuda.sampling_ok, on_cuda


@needs_cuda
def test_training_on_cuda_matches_the_cpu(on_cuda):
    assert on_cuda.training_ok, on_cuda


def test_the_comparison_finds_the_cpu_equal_to_itself_and_tells_other_runs_apart():
    same = agreement(CPU)
    assert same.sampling_ok and same.training_ok
    assert same.sampling_error == 0 and same.loss_error == 0 and same.weight_error == 0
    assert (sampled(CPU, seed=0) - sampled(CPU, seed=1)).abs().max() > 100 * SAMPLING_TOLERANCE
    losses, _, _ = trained(CPU, seed=0)
    other, _, _ = trained(CPU, seed=1)
    assert max(abs(a - b) / b for a, b in zip(losses, other, strict=True)) > 1e-2
