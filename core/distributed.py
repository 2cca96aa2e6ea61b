"""Multi-process training on PyTorch's DistributedDataParallel, as torchrun (or `accelerate launch`) starts it.

    torchrun --nproc-per-node 2 -m core train --steps 2000 --out runs/ddp     # gloo on CPUs, NCCL on GPUs

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT; `from_environment()` reads
them and joins the process group (`ProcessGroup`), or returns None in a plain single process.

How N processes train the same model as one: every rank holds the same seeded generator, so every rank draws the
same global batch (its indices, timesteps, noise and label drop-outs) and keeps its own contiguous slice of it
(`rows`); DDP averages the gradients, which for equal slices is the gradient of the global batch's mean loss. The
learning rate and the decision to stop follow rank 0's clock (`agree`), so no rank runs a step the others do not.
The logged loss and the loss-by-timestep buckets are the global batch's (`mean`, `gather`). Rank 0 alone writes
checkpoints and logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place among the ranks of one training run (a joined torch.distributed process group)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    backend: str

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints and logs."""
        return self.rank == 0

    def rows(self, batch_size: int) -> slice:
        """This rank's contiguous slice of a global batch of `batch_size` (which the world size must divide)."""
        if batch_size % self.world_size:
            raise ValueError(
                f"batch size {batch_size} cannot be split evenly over {self.world_size} processes; "
                f"use a multiple of {self.world_size}"
            )
        share = batch_size // self.world_size
        return slice(self.rank * share, (self.rank + 1) * share)

    def mean(self, value: float) -> float:
        """The mean of `value` over the ranks (the global batch's loss from each slice's mean)."""
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def gather(self, tensor: Tensor) -> Tensor:
        """Every rank's `tensor` (same shape on each) concatenated in rank order: the global batch's rows."""
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    def agree(self, values: list[float]) -> list[float]:
        """Rank 0's `values` on every rank (its clock decides the learning rate and when a timed run stops)."""
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.broadcast(tensor, src=0)
        return tensor.tolist()

    def barrier(self) -> None:
        dist.barrier()

    @property
    def device(self) -> torch.device:
        """Where the group's collectives run: this rank's GPU under NCCL, else the CPU."""
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def launched() -> bool:
    """Whether torchrun (or accelerate launch) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def from_environment(device: str = "auto") -> ProcessGroup | None:
    """Join the process group torchrun describes in the environment (NCCL when this run trains on CUDA GPUs,
    else gloo), or None when this process runs alone. Under NCCL each rank takes the GPU of its LOCAL_RANK."""
    if not launched():
        return None
    missing = [name for name in ENVIRONMENT if name not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE > 1 but {', '.join(missing)} not set: start several processes with torchrun")
    local_rank = int(os.environ["LOCAL_RANK"])
    on_gpus = device in ("auto", "cuda") and torch.cuda.is_available()
    backend = "nccl" if on_gpus else "gloo"
    if on_gpus:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return ProcessGroup(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])),
        backend=backend,
    )
