"""GPU memory for the app's heavy runs: what a run will need, the share it may take, and out of memory as advice.

Several users share one GPU through the compute worker (explorer/compute_worker.py runs every step, one at a time),
but their models, optimizer states, data and activations all sit in the GPU's memory at once. So before a run
starts (explorer.jobs.run_job) its estimated need is checked against its share of the GPU (`MemoryBudget`): what
is free now (torch.cuda.mem_get_info, plus what PyTorch's caching allocator holds unused), and at most
1/N of the memory PyTorch may use when N runs are active. A run over its share is refused with advice (a smaller
batch, fewer pictures) instead of failing halfway or pushing another user's run out of memory. Off CUDA (the CPU,
Apple's MPS) nothing is checked: the CPU's memory limits are the server's (explorer/sessions.py).

The estimates are deliberately rough upper bounds, from the model's structure on the meta device (no memory, no
compute): parameters, gradients, AdamW's two moments and the EMA copy (5 x the weights, float32), the training
data on the device, and the activations a backward pass keeps (KEPT_PER_OUTPUT bytes per float32 element of every
layer's output, for every picture of the batch; under bf16 autocast also its bf16 copies of the weights). Sampling
keeps the weights and, without gradients, at most one pass of activations for its pictures (twice with
classifier-free guidance, which runs every picture twice).

Out of memory that still happens (an estimate too low, memory taken outside the app) becomes advice through
`out_of_memory_advice` and `is_out_of_memory`, and the cache PyTorch held for the failed run is given back
(`release_cached_memory`), so the app keeps serving everyone else.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable

import torch
from torch import nn

from core.accelerators import speed_choices
from core.checkpoint import build_model
from core.data import ImageDataset
from core.toy_data import PointDataset
from core.training import TrainConfig, make_denoiser

RESERVE = 0.1  # of the GPU's memory kept free: CUDA's context, cuDNN workspaces, fragmentation
FLOAT_BYTES = 4
GIGABYTE = 1e9
# bytes a training step keeps for its backward pass, per float32 element of every layer's output: measured on the
# CPU with torch.autograd.graph.saved_tensors_hooks (tests/test_gpu_memory.py), 1.06-1.09 for the U-Nets in float32
# and 0.56-0.59 under bf16 autocast, 1.46 for the 2D MLP; 2 bounds them all
KEPT_PER_OUTPUT = 2


class OverMemoryBudget(RuntimeError):
    """A run would need more GPU memory than its share; the message says how much and what to change."""


def is_out_of_memory(error: BaseException) -> bool:
    """torch's OutOfMemoryError (CUDA), or the RuntimeError that MPS and the CPU allocator raise for it."""
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def release_cached_memory() -> None:
    """Give the memory PyTorch's caching allocator holds unused back to the GPU (after a run failed)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def out_of_memory_advice(kind: str) -> str:
    """What a user reads when their run of `kind` ran out of memory (a training's own advice names its batch:
    explorer.training_run.out_of_memory_advice)."""
    what = "ask for fewer pictures or points" if kind == "sampling" else "use a smaller batch or the 'tiny' model"
    return f"Out of memory during this {kind} run: {what} and try again. Nothing else was affected."


@functools.lru_cache(maxsize=64)
def _activation_elements(model_json: str, sample_shape: tuple[int, ...], conditional: bool) -> tuple[int, int]:
    """(parameters, elements of every leaf module's output for one sample), from the model built on meta."""
    with torch.device("meta"):
        model = build_model(json.loads(model_json))
    elements = 0

    def count(_module: nn.Module, _inputs: tuple, output: object) -> None:
        nonlocal elements
        if isinstance(output, torch.Tensor):
            elements += output.numel()

    leaves = [module for module in model.modules() if not list(module.children())]
    handles = [module.register_forward_hook(count) for module in leaves]
    try:
        x = torch.zeros((1, *sample_shape), device="meta")
        t = torch.zeros(1, dtype=torch.long, device="meta")
        y = torch.zeros(1, dtype=torch.long, device="meta") if conditional else None
        with torch.no_grad():
            model(x, t, y)
    finally:
        for handle in handles:
            handle.remove()
    return sum(p.numel() for p in model.parameters()), elements


def _structure(model_config: dict, sample_shape: tuple[int, ...]) -> tuple[int, int]:
    conditional = bool(model_config.get("num_classes"))
    return _activation_elements(json.dumps(model_config, sort_keys=True), tuple(sample_shape), conditional)


def training_need(config: TrainConfig, data: ImageDataset | PointDataset, device: torch.device) -> int:
    """Estimated GPU bytes of training `config` on `data` (see the module docstring), before any weight exists."""
    with torch.device("meta"):
        model_config = make_denoiser(config, data).config
    parameters, elements = _structure(model_config, tuple(data.tensor.shape[1:]))
    bf16 = speed_choices(device, config.precision).bf16
    activations = KEPT_PER_OUTPUT * config.batch_size * elements * FLOAT_BYTES
    weight_copies = parameters * 2 if bf16 else 0  # autocast's bf16 copies of the weights
    return 5 * parameters * FLOAT_BYTES + data.tensor.numel() * FLOAT_BYTES + activations + weight_copies


def sampling_need(model: nn.Module, sample_shape: tuple[int, ...], count: int, guidance: bool = False) -> int | None:
    """Estimated GPU bytes of sampling `count` pictures (or points) of `sample_shape`; None for a model without a
    core config (nothing to estimate from)."""
    model_config = getattr(model, "config", None)
    if not isinstance(model_config, dict):
        return None
    parameters, elements = _structure(model_config, sample_shape)
    return parameters * FLOAT_BYTES + count * (2 if guidance else 1) * elements * FLOAT_BYTES


Need = int | None | Callable[[], int | None]  # bytes, unknown, or how to estimate them (asked only on CUDA)


class MemoryBudget:
    """The GPU memory share of a run on `device` (see the module docstring); off CUDA every run fits."""

    def __init__(self, device: torch.device, reserve: float = RESERVE) -> None:
        self.device = device
        self.reserve = reserve

    def share(self, active_runs: int) -> int | None:
        """Bytes a run may take now when `active_runs` runs (this one included) share the GPU; None off CUDA."""
        if self.device.type != "cuda":
            return None
        free, total = torch.cuda.mem_get_info(self.device)
        unused_cache = torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        usable = total * (1 - self.reserve)
        return int(min(free + unused_cache - total * self.reserve, usable / max(active_runs, 1)))

    def check(self, need: Need, active_runs: int, kind: str) -> None:
        """Raise OverMemoryBudget (with advice) when a run of `kind` needing `need` bytes is over its share. A
        callable `need` is estimated only where there is a share to fit (on CUDA), never on the CPU's hot path."""
        share = self.share(active_runs)
        if share is None:
            return
        need = need() if callable(need) else need
        if need is None or need <= share:
            return
        runs = f"{active_runs} runs share the GPU now" if active_runs > 1 else "what the GPU has free now"
        what = "fewer pictures or points" if kind == "sampling" else "a smaller batch or the 'tiny' model"
        raise OverMemoryBudget(
            f"This {kind} run needs about {_gigabytes(need)} of GPU memory, and its share is "
            f"{_gigabytes(max(share, 0))} ({runs}). Try {what}, or try again when a run has finished."
        )


def _gigabytes(count: int) -> str:
    return f"{count / GIGABYTE:.2f} GB" if count < 10 * GIGABYTE else f"{math.floor(count / GIGABYTE)} GB"
