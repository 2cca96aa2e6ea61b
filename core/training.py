"""The training loop as a generator of progress records, with everything a diffusion run needs to be trusted.

AdamW with linear warm-up then cosine decay of the learning rate, gradient clipping, an exponential moving average
(EMA) of the weights for sampling, bf16 autocast where the hardware runs it natively (CUDA, and CPUs with AVX512-BF16
or AMX; core.device), a guard that stops on a non-finite loss or gradient (keeping the last finite weights), and exact
resume from a checkpoint (weights, EMA, optimizer, step, RNG).

Measured on 2 EPYC cores (AVX512-BF16), benchmarks/RESULTS.md: bf16 autocast trains "tiny" at 32x32 at 1,103
images/s against 818 in float32, 1.35x ("Live-training recipe", run 1); the Train tab's default 60-s run (28x28,
bf16) makes 957 steps at 1,020 images/s ("UI latency"). The float32 loop of benchmarks/train_throughput.py
("Training throughput": eps, 32x32) trains "tiny" at 680 images/s, 1.63x diffusers' closest UNet2DModel.

The denoiser follows the dataset's kind: a U-Net for images, core.toy.ToyMLP for 2D points (the toy sets). The
`preset` names the size of either ("tiny", "small", "seed"; for the MLP see core.toy.TOY_PRESETS); everything else
(schedule, objective, loss, EMA, samplers) is shared, since both networks have the signature forward(x, t, y).

    trainer = Trainer(TrainConfig(steps=500))
    for record in trainer.run():      # one ProgressRecord per optimizer step
        print(record.step, record.loss)
    trainer.save("runs/mnist")
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from core.accelerators import speed_choices
from core.checkpoint import load_checkpoint, load_training_state, save_checkpoint
from core.data import ImageDataset, load_dataset
from core.device import available_cores, pick_device
from core.diffusion import LossResult, training_loss
from core.distributed import ProcessGroup
from core.toy import make_toy_mlp
from core.toy_data import PointDataset
from core.train_config import TrainConfig
from core.unet import make_unet

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN or infinite; the model keeps its last finite weights."""


@dataclass
class ProgressRecord:
    """What one optimizer step reports."""

    step: int  # steps done so far (1 after the first)
    total_steps: int | None
    loss: float
    lr: float
    grad_norm: float  # before clipping
    images_per_second: float  # averaged over this run so far (points per second for a toy set)
    elapsed: float  # seconds since this run started
    eta_seconds: float | None  # to the step or time limit, whichever comes first
    bucket_losses: list[float | None]  # smoothed loss per timestep bucket (None: not seen yet)
    device: str


def load_training_data(config: TrainConfig) -> ImageDataset | PointDataset:
    """The "train" split of the config's dataset (toy sets: the default 10,000 points of seed 0, the same for every
    run, like any other dataset)."""
    if config.dataset == "folder" and not config.data_path:
        raise ValueError("dataset 'folder' needs data_path (a folder or a .zip of pictures)")
    options = {"path": config.data_path, "channels": config.channels} if config.dataset == "folder" else {}
    return load_dataset(config.dataset, split="train", image_size=config.image_size, **options)


def make_denoiser(config: TrainConfig, data: ImageDataset | PointDataset, **unet_changes: object) -> nn.Module:
    """A U-Net for images, a ToyMLP for points, sized by config.preset; class-conditional if the run is.
    unet_changes: UNetConfig fields that differ from the preset's (a shape no preset names; images only)."""
    num_classes = data.num_classes if config.conditional_on(data.labels is not None) else None
    if data.kind == "points":
        if unet_changes:
            raise ValueError(f"U-Net fields {sorted(unet_changes)} do not apply to a 2D point set's MLP")
        return make_toy_mlp(config.preset, dim=data.dim, num_classes=num_classes)
    return make_unet(config.preset, in_channels=data.channels, num_classes=num_classes, **unet_changes)


def lr_at(config: TrainConfig, step: int, progress: float) -> float:
    """Learning rate for the given step: linear warm-up over warmup_steps, then cosine decay over `progress`
    (the fraction of the run done, 0..1) down to lr * min_lr_ratio."""
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    cosine = 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


class Trainer:
    """Holds a model, its EMA, optimizer, data and RNG; `run()` trains and yields a ProgressRecord per step.

    `dataset` (images or points) replaces the one the config names. `group`: this process's place in a
    multi-process run (core.distributed; torchrun): the model is wrapped in DistributedDataParallel and each rank
    trains on its slice of the same global batch, so N processes train the model one process would."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        dataset: ImageDataset | PointDataset | None = None,
        resume_from: str | Path | None = None,
        group: ProcessGroup | None = None,
    ):
        config.validate()
        self.config = config
        self.group = group
        self.rows = group.rows(config.batch_size) if group is not None else None  # (checks the batch splits)
        self.device = group.device if group is not None and group.backend == "nccl" else pick_device(config.device)
        threads = config.num_threads or max(1, available_cores() // (group.local_world_size if group else 1))
        if self.device.type == "cpu" and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)  # (only when needed: it also resets the count new threads start with)
        if group is not None and not group.is_main:
            group.barrier()  # rank 0 loads (and downloads, if it must) first
        self.data = dataset or load_training_data(config)
        if group is not None and group.is_main:
            group.barrier()
        # "when the dataset has labels" resolved: the run (and its checkpoint) records True or False
        self.config = config = replace(config, class_conditional=config.conditional_on(self.data.labels is not None))
        if config.class_conditional and self.data.labels is None:
            raise ValueError(f"dataset {self.data.name!r} has no labels; it cannot train a class-conditional model")
        self.train_tensor = self.data.tensor.to(self.device)  # (N, C, H, W) images or (N, D) points
        self.labels = self.data.labels.to(self.device) if self.data.labels is not None else None
        self.schedule = config.noise_schedule()
        with torch.random.fork_rng(devices=[]):  # seeded initial weights, the caller's global RNG untouched
            torch.manual_seed(config.seed)
            self.model: nn.Module = make_denoiser(config, self.data).to(self.device)
        self.model.check_input(self.train_tensor[:1])
        self.speed = speed_choices(self.device, config.precision)  # bf16, channels_last, compile: as measured
        self.bf16 = self.speed.bf16
        self.speed.prepare(self.model)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.ema_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.optimizer = self._make_optimizer()
        if resume_from is not None:
            self._resume(Path(resume_from))
        self.network = self.model  # what the loss calls: the model, or its DDP wrapper sharing its parameters
        if group is not None:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.network = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.network = self.speed.network(self.network)
        self._bucket_losses: list[float | None] = [None] * config.num_buckets
        self.last_loss: LossResult | None = None  # the last step's batch, draws and prediction (core.observed_step)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.model.parameters(), lr=self.config.lr, betas=(0.9, 0.999), weight_decay=self.config.weight_decay
        )

    def _resume(self, directory: Path) -> None:
        checkpoint = load_checkpoint(directory, device=self.device)
        if checkpoint.config["model"] != self.model.config:
            raise ValueError(
                "the checkpoint's model does not match this run's preset and dataset "
                f"({checkpoint.config['model'].get('extra', {})} vs {self.model.config.get('extra')})"
            )
        if checkpoint.schedule.params != self.schedule.params or checkpoint.objective != self.config.objective:
            raise ValueError("the checkpoint was trained with another schedule or objective; resume with the same")
        self.model.load_state_dict(checkpoint.model.state_dict())
        self.ema_model.load_state_dict(checkpoint.sampling_model.state_dict())
        rng = load_training_state(directory, self.optimizer)
        if "generator" in rng:
            self.generator.set_state(rng["generator"])
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        self.step = checkpoint.step

    def checkpoint_config(self) -> dict:
        """The config.json fields that describe this run (the model config is added by save_checkpoint)."""
        return {
            "schedule": self.schedule.params,
            "objective": self.config.objective,
            "dataset": self.data.describe(),
            "class_conditional": self.config.class_conditional,
            "step": self.step,
            "training": asdict(self.config),
            "world_size": self.group.world_size if self.group is not None else 1,  # processes that trained it
            "sampling_defaults": self.config.sampling_defaults().to_dict(),
        }

    def save(self, directory: str | Path, *, with_training_state: bool = True) -> Path:
        """Save weights, EMA and (for resuming) optimizer and RNG states as a checkpoint folder."""
        return save_checkpoint(
            directory,
            self.model,
            self.checkpoint_config(),
            ema_model=self.ema_model,
            optimizer=self.optimizer if with_training_state else None,
            rng_states={"generator": self.generator.get_state(), "torch": torch.get_rng_state()}
            if with_training_state
            else None,
        )

    def _update_ema(self) -> None:
        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        ema_params = list(self.ema_model.parameters())
        params = [p.detach() for p in self.model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        for ema_buffer, buffer in zip(self.ema_model.buffers(), self.model.buffers(), strict=True):
            ema_buffer.copy_(buffer)

    def _update_buckets(self, per_sample: torch.Tensor, t: torch.Tensor) -> None:
        buckets = (t * self.config.num_buckets // self.schedule.num_timesteps).tolist()
        values = per_sample.detach().float().tolist()
        sums: dict[int, list[float]] = {}
        for bucket, value in zip(buckets, values, strict=True):
            sums.setdefault(bucket, []).append(value)
        for bucket, group in sums.items():
            mean = sum(group) / len(group)
            old = self._bucket_losses[bucket]
            self._bucket_losses[bucket] = mean if old is None else 0.9 * old + 0.1 * mean

    def train_step(self, lr: float) -> tuple[float, float]:
        """One optimizer step at learning rate lr; returns (loss, grad_norm). Raises TrainingDiverged."""
        cfg = self.config
        self.model.train()
        index = torch.randint(len(self.train_tensor), (cfg.batch_size,), generator=self.generator).to(self.device)
        x0 = self.train_tensor[index]  # (B, C, H, W) or (B, D)
        y = self.labels[index] if cfg.class_conditional else None
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            result = training_loss(
                self.network,
                self.schedule,
                x0,
                objective=cfg.objective,
                y=y,
                p_uncond=cfg.p_uncond if y is not None else 0.0,
                weighting=cfg.weighting,
                min_snr_gamma=cfg.min_snr_gamma,
                timestep_sampling=cfg.timestep_sampling,
                generator=self.generator,
                rows=self.rows,
            )
        loss = float(result.loss.detach())
        per_sample, t = result.per_sample.detach(), result.t
        if self.group is not None:  # the global batch's loss and rows, as one process would see them
            loss = self.group.mean(loss)
            per_sample, t = self.group.gather(per_sample.float()), self.group.gather(t)
        if not math.isfinite(loss):
            raise TrainingDiverged(self._diverged_message("loss", loss, lr))
        self.optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        if not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDiverged(self._diverged_message("gradient norm", grad_norm, lr))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.step += 1
        self.last_loss = result._replace(loss=result.loss.detach(), per_sample=result.per_sample.detach())
        self._update_ema()
        self._update_buckets(per_sample, t)
        return loss, grad_norm

    def _diverged_message(self, what: str, value: float, lr: float) -> str:
        return (
            f"training stopped at step {self.step + 1}: the {what} became {value}. The weights from step "
            f"{self.step} are kept. Try a smaller learning rate (now {lr:.3g}) or a smaller batch."
        )

    def run(self) -> Iterator[ProgressRecord]:
        """Train until `steps` or `time_budget` is reached, yielding a ProgressRecord after every step.
        Stop early by simply not asking for the next record."""
        cfg = self.config
        start = time.perf_counter()
        start_step = self.step
        while True:
            elapsed = time.perf_counter() - start
            if self.group is not None:  # rank 0's clock: every rank takes the same lr and stops at the same step
                elapsed = self.group.agree([elapsed])[0]
            if cfg.steps is not None and self.step >= cfg.steps:
                return
            if cfg.time_budget is not None and elapsed >= cfg.time_budget:
                return
            progress = max(
                self.step / cfg.steps if cfg.steps else 0.0, elapsed / cfg.time_budget if cfg.time_budget else 0.0
            )
            lr = lr_at(cfg, self.step, progress)
            loss, grad_norm = self.train_step(lr)
            elapsed = time.perf_counter() - start
            done = self.step - start_step
            steps_per_second = done / elapsed if elapsed > 0 else 0.0
            yield ProgressRecord(
                step=self.step,
                total_steps=cfg.steps,
                loss=loss,
                lr=lr,
                grad_norm=grad_norm,
                images_per_second=steps_per_second * cfg.batch_size,
                elapsed=elapsed,
                eta_seconds=self._eta(elapsed, steps_per_second),
                bucket_losses=list(self._bucket_losses),
                device=str(self.device),
            )

    def _eta(self, elapsed: float, steps_per_second: float) -> float | None:
        etas = []
        if self.config.steps is not None and steps_per_second > 0:
            etas.append((self.config.steps - self.step) / steps_per_second)
        if self.config.time_budget is not None:
            etas.append(max(self.config.time_budget - elapsed, 0.0))
        return min(etas) if etas else None
