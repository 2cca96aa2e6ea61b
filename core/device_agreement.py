"""Does a device compute what the CPU computes? The same short sampling run and the same few training steps on both,
compared, for tests/test_cuda.py (where CUDA exists) and benchmarks/gpu_check.py.

Both devices compute in float32 with TF32 off (cuDNN's convolutions use TF32 by default on Ampere and later GPUs,
which keeps 10 bits of mantissa; `exact_float32` turns it off for the comparison), and every random number is drawn
on the CPU from the same seed (the samplers' and the trainer's generators), so what differs is float32 rounding in
another order of summation: about 1e-6 of a pixel per network call. The tolerances:

* sampling: DDIM-20 (eta 0) of the "tiny" U-Net at its seeded initial weights from one x_T: pictures within
  SAMPLING_TOLERANCE of each other (pixels live in [-1, 1]);
* training: TRAINING_STEPS steps of the Train tab's recipe (AdamW) in float32: every step's loss within
  LOSS_TOLERANCE relative, and the weights after them within WEIGHT_TOLERANCE, except where a gradient is at
  float32's rounding level: AdamW divides the gradient by its own size, so there a rounding difference can move a
  weight by up to the learning rate per step in either direction. At most MOVED_FRACTION of the weights may differ
  by more than WEIGHT_TOLERANCE, and none by more than twice the learning rate per step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch

from core.classic_samplers import DDIMSampler
from core.data import load_dataset
from core.samplers import sample
from core.schedules import make_schedule
from core.training import TrainConfig, Trainer
from core.unet import make_unet

SAMPLING_TOLERANCE = 1e-3
LOSS_TOLERANCE = 1e-4
WEIGHT_TOLERANCE = 1e-4
MOVED_FRACTION = 1e-3
TRAINING_STEPS = 5


@dataclass(frozen=True)
class Agreement:
    """How far a device's results are from the CPU's, and whether that is within the stated tolerances."""

    sampling_error: float  # max |pixel difference| after DDIM-20
    loss_error: float  # max relative difference of a step's loss
    weight_error: float  # max |weight difference| after the steps
    moved_fraction: float  # share of weights that differ by more than WEIGHT_TOLERANCE
    lr: float  # the learning rate the steps used

    @property
    def sampling_ok(self) -> bool:
        return self.sampling_error <= SAMPLING_TOLERANCE

    @property
    def training_ok(self) -> bool:
        bound = 2 * self.lr * TRAINING_STEPS
        return (
            self.loss_error <= LOSS_TOLERANCE and self.moved_fraction <= MOVED_FRACTION and self.weight_error <= bound
        )


@contextmanager
def exact_float32() -> Iterator[None]:
    """float32 matrix products and convolutions without TF32 on CUDA, and one CPU thread (the CPU's sums then do
    not depend on the machine's core count), restored afterwards."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.get_num_threads()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, threads = before
        torch.set_num_threads(threads)


def sampled(device: torch.device, seed: int = 0) -> torch.Tensor:
    """DDIM-20 of the seeded "tiny" U-Net from the noise of `seed`, computed on `device`, returned on the CPU."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_unet("tiny", in_channels=1).eval().to(device)
    x_T = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(seed + 1)).to(device)
    with torch.no_grad(), exact_float32():
        return sample(model, DDIMSampler(make_schedule("cosine")), x_T, 20).float().cpu()


def trained(device: torch.device, seed: int = 0) -> tuple[list[float], list[torch.Tensor], float]:
    """(every step's loss, the weights on the CPU, the lr) after TRAINING_STEPS float32 steps on 256 digits."""
    digits = load_dataset("mnist5k", split="train").subset(256)
    config = TrainConfig(steps=TRAINING_STEPS, batch_size=32, warmup_steps=0, precision="fp32", seed=seed)
    with exact_float32():
        trainer = Trainer(replace(config, device=str(device), num_threads=1), dataset=digits)
        losses = [record.loss for record in trainer.run()]
    return losses, [p.detach().float().cpu() for p in trainer.model.parameters()], config.lr


def agreement(device: torch.device) -> Agreement:
    """The device's results against the CPU's (see the module docstring)."""
    sampling_error = (sampled(device) - sampled(torch.device("cpu"))).abs().max().item()
    losses, weights, lr = trained(device)
    cpu_losses, cpu_weights, _ = trained(torch.device("cpu"))
    loss_error = max(abs(a - b) / abs(b) for a, b in zip(losses, cpu_losses, strict=True))
    differences = torch.cat([(a - b).abs().flatten() for a, b in zip(weights, cpu_weights, strict=True)])
    return Agreement(
        sampling_error=sampling_error,
        loss_error=loss_error,
        weight_error=differences.max().item(),
        moved_fraction=(differences > WEIGHT_TOLERANCE).double().mean().item(),
        lr=lr,
    )
