"""The race: which training setup reaches the best digit samples in a given wall-clock budget on this machine.

Every contender trains on the same 4,000 training digits (`load_dataset("mnist5k", split="train",
image_size=32)`: 28x28 padded to 32x32, values in [-1, 1]; ours at its recipe's image size, the digits' own 28x28,
since that padding is part of what the recipe chooses) at each learning rate (--lrs) for each wall-clock
training budget (--budgets, seconds of optimizer steps only: no data loading, no sampling, no evaluation).
After each budget it draws --n samples with 50 DDIM steps (eta = 0; timed separately) from a fixed seed and
scores them with `core.metrics.evaluate_samples` (Fréchet distance in our digit feature network's features, the
fraction of confidently classified digits, the entropy of the class histogram), next to the real-vs-real FD
floor `core.metrics.real_floor(n)` at the same n, all on the "report" split of the held-out digits (SPLIT: the race
reports numbers; tuning used the "tune" split).

Contenders (all batch 64, gradient-norm clipping at 1.0, CPU, one thread per available core):

* ours: `core.training.Trainer` with the `TrainConfig` defaults (preset "tiny", x0 objective, cosine
  schedule, the digits' own 28x28, bf16 autocast where the CPU runs it natively, AdamW, 50 warm-up steps then
  cosine decay to 0.1 lr over the budget, EMA 0.99; how they were chosen: benchmarks/recipe_search.py), with
  `time_budget=budget, steps=None`, without labels (`class_conditional=False`: the peers train unconditional
  models, so ours does too here); "default" lr = TrainConfig().lr (2e-3), and 1e-3. Samples: the EMA model,
  core DDIM-50 with the config's objective and clip_x0=True.
  Because the shipped recipe decays its learning rate over the budget it is given, each budget is a fresh run
  (a 180 s run is not the 60 s run continued): ours costs the sum of the budgets, not their maximum.
* ddpm_pytorch: lucidrains' denoising-diffusion-pytorch, `Unet(dim=32, dim_mults=(1, 2, 4), channels=1)` in
  `GaussianDiffusion(model, image_size=32, timesteps=1000, sampling_timesteps=50, auto_normalize=False)`
  (its defaults otherwise: objective "pred_v", sigmoid beta schedule; auto_normalize=False because our data is
  already in [-1, 1]), trained by a plain loop on `diffusion(x0)` with what its `Trainer` class uses:
  Adam(betas=(0.9, 0.99)), "default" lr = Trainer's train_lr default 1e-4, max_grad_norm 1.0, and an
  ema_pytorch EMA(beta=0.995, update_every=10) sampled with `ema.ema_model.sample(batch_size=...)` (its DDIM,
  50 steps, clipping x0). Constant learning rate, as in its Trainer.
* diffusers: `UNet2DModel(sample_size=32, in_channels=1, out_channels=1, block_out_channels=(32, 64, 128),
  layers_per_block=2, DownBlock2D/UpBlock2D levels, no attention in the levels; the default mid-block
  attention kept)`, eps objective with MSE on `DDPMScheduler(num_train_timesteps=1000)` (linear betas);
  samples with `DDIMScheduler` (50 steps, its default clip_sample=True, and `use_clipped_model_output=True`, its
  documented option for recomputing the noise from the clipped x0 as the other two contenders do) from the same
  config. Optimizer and EMA as examples/unconditional_image_generation/train_unconditional.py's defaults:
  AdamW(betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8), "default" lr 1e-4, clip 1.0,
  `EMAModel(decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=3/4)`, sampling the EMA weights. Its cosine
  schedule with 500 warm-up steps is *not* used (a step count is not known in advance under a time budget):
  constant lr.

Tuning budget: ours had the recipe search (benchmarks/recipe_search.py, rounds 1 and 2 in RESULTS.md: 34 runs of
60 s); each peer gets its library's defaults at two learning rates (its documented default and 1e-3), with no other
tuning.

Fairness: same data, batch size, budgets, seeds, thread count, sampler step count, sample count and metric;
every contender samples its EMA weights, as its own standard training code does (the EMA update is counted in
the training time). The peers, which keep a constant learning rate, continue one run across the budgets (train
60 s, evaluate, continue to 180 s in all, evaluate, ...); their budget-B point is exactly a B-second run.
Network sizes differ (they are each library's small configuration, not matched); images/s in the table shows
what each pays per step.

Output: a markdown table (printed, and written with the machine description and the command into
benchmarks/RESULTS.md under "## Time to quality (benchmarks/time_to_quality.py)", replacing that section),
grids of the first 64 samples as benchmarks/results/race_<contender>_<lr>_<budget>s.png, and a plot of FD
against training seconds (log y, one line per contender and lr) as benchmarks/results/race_fd.png, drawn with
PIL (--results and --pictures choose other places). With --no-write nothing in the repository changes; the
pictures go to a temporary folder (printed). A budget is met with whole optimizer steps, so a run may overshoot
it by up to one step (the plot uses the seconds actually trained).

    python benchmarks/time_to_quality.py                                   # full race, ~90 min on 2 cores
    python benchmarks/time_to_quality.py --budgets 3 6 --n 64 --no-write   # smoke run, ~3 minutes
    python benchmarks/time_to_quality.py --contenders ours                 # rerun ours, keep the peers' rows
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from common import (
    RESULTS_PATH,
    busy_warning,
    command_line,
    machine_description,
    section_header,
    write_section,
)
from torch import Tensor

from core.charts import line_chart
from core.data import load_dataset
from core.device import available_cores
from core.imaging import save_images
from core.metrics import evaluate_samples, real_floor
from core.sampler_base import draw_noise
from core.samplers import make_sampler, sample
from core.training import TrainConfig, Trainer

try:
    import denoising_diffusion_pytorch.denoising_diffusion_pytorch as ddp_module
    import diffusers
    from denoising_diffusion_pytorch import GaussianDiffusion, Unet
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
    from diffusers.training_utils import EMAModel
    from ema_pytorch import EMA
except ImportError as error:  # pragma: no cover - depends on the environment
    raise SystemExit("the race needs diffusers and denoising-diffusion-pytorch: pip install -e '.[test]'") from error

SPLIT = "report"  # the held-out digits for reported numbers (core.metrics.REFERENCE_SPLITS)
SECTION_HEADING = "## Time to quality (benchmarks/time_to_quality.py)"
RESULTS_DIR = RESULTS_PATH.parent / "results"
CONTENDERS = ("ours", "ddpm_pytorch", "diffusers")
DEFAULT_LR = {"ours": TrainConfig().lr, "ddpm_pytorch": 1e-4, "diffusers": 1e-4}
BATCH_SIZE = 64
RECIPE_SIZE = TrainConfig().image_size or 28  # ours: None means the digits' own 28x28
DDIM_STEPS = 50
GRID_IMAGES = 64
SAMPLE_CHUNK = 250  # samples drawn per batch
ddp_module.tqdm = lambda iterable, *args, **kwargs: iterable  # silence its sampling progress bar


@dataclass
class Point:
    """One (contender, lr, budget) evaluation."""

    contender: str
    lr: float
    budget: float
    train_seconds: float
    steps: int
    fd: float
    confident: float
    entropy: float
    sample_seconds: float
    n: int  # samples scored

    @property
    def images_per_second(self) -> float:
        return self.steps * BATCH_SIZE / self.train_seconds if self.train_seconds > 0 else 0.0


@dataclass
class Checkpoint:
    """What a contender's run yields at each budget: the training so far and a sampler of n images."""

    train_seconds: float
    steps: int
    draw: Callable[[int, int], Tensor]  # (n, seed) -> samples [n, 1, H, W] in [-1, 1]


POINTS_FILE = RESULTS_DIR / "race_points.json"


def load_points(path: Path) -> list[Point]:
    if not path.exists():
        return []
    return [Point(**row) for row in json.loads(path.read_text())]


def merge_points(old: Sequence[Point], new: Sequence[Point]) -> list[Point]:
    """Earlier points of the (contender, lr) pairs not in `new`, then all of `new`, in contender, lr, budget order."""
    rerun = {(p.contender, p.lr) for p in new}
    merged = [p for p in old if (p.contender, p.lr) not in rerun] + list(new)
    return sorted(merged, key=lambda p: (CONTENDERS.index(p.contender), p.lr, p.budget))


def in_chunks(n: int, draw_chunk: Callable[[int], Tensor]) -> Tensor:
    return torch.cat([draw_chunk(min(SAMPLE_CHUNK, n - i)) for i in range(0, n, SAMPLE_CHUNK)])


# ------------------------------------------------------------------------------------------ the contenders


def race_ours(data, lr: float, budgets: Sequence[float], seed: int) -> Iterator[Checkpoint]:
    """A fresh Trainer per budget: the shipped recipe decays its lr over the budget it is given. The same digits,
    at the recipe's image size (their own 28x28: the padding to 32 carries no information)."""
    data = load_dataset("mnist5k", split="train", image_size=RECIPE_SIZE)
    for budget in budgets:
        config = TrainConfig(lr=lr, time_budget=budget, steps=None, seed=seed, class_conditional=False)  # as the peers
        trainer = Trainer(config, dataset=data)
        elapsed = 0.0
        for record in trainer.run():
            elapsed = record.elapsed
        sampler = make_sampler("ddim", trainer.schedule, objective=trainer.config.objective, clip_x0=True)

        def draw(n: int, sample_seed: int, trainer: Trainer = trainer, sampler=sampler) -> Tensor:
            generator = torch.Generator().manual_seed(sample_seed)
            x_T = draw_noise((n, *trainer.train_tensor.shape[1:]), generator, "cpu", torch.float32)
            with torch.no_grad():
                return sample(trainer.ema_model, sampler, x_T, DDIM_STEPS, generator=generator)

        yield Checkpoint(elapsed, trainer.step, draw)
        del trainer


def train_until(budget: float, spent: float, step: Callable[[], None]) -> tuple[float, int]:
    """Call step() until `budget` seconds of them have been spent in all; return (seconds spent, calls)."""
    calls = 0
    while spent < budget:
        start = time.perf_counter()
        step()
        spent += time.perf_counter() - start
        calls += 1
    return spent, calls


def race_ddpm_pytorch(data, lr: float, budgets: Sequence[float], seed: int) -> Iterator[Checkpoint]:
    torch.manual_seed(seed)
    model = Unet(dim=32, dim_mults=(1, 2, 4), channels=1)
    diffusion = GaussianDiffusion(
        model, image_size=32, timesteps=1000, sampling_timesteps=DDIM_STEPS, auto_normalize=False
    )
    optimizer = torch.optim.Adam(diffusion.parameters(), lr=lr, betas=(0.9, 0.99))  # its Trainer's
    ema = EMA(diffusion, beta=0.995, update_every=10)  # its Trainer's
    generator = torch.Generator().manual_seed(seed)
    images = data.tensor

    def step() -> None:
        diffusion.train()
        x0 = images[torch.randint(len(images), (BATCH_SIZE,), generator=generator)]
        loss = diffusion(x0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(diffusion.parameters(), 1.0)
        optimizer.step()
        ema.update()

    def draw(n: int, sample_seed: int) -> Tensor:
        torch.manual_seed(sample_seed)  # its sampler draws from the global RNG
        ema.ema_model.eval()
        return in_chunks(n, lambda k: ema.ema_model.sample(batch_size=k))

    spent, steps = 0.0, 0
    for budget in budgets:
        spent, calls = train_until(budget, spent, step)
        steps += calls
        yield Checkpoint(spent, steps, draw)


def race_diffusers(data, lr: float, budgets: Sequence[float], seed: int) -> Iterator[Checkpoint]:
    torch.manual_seed(seed)
    model = UNet2DModel(
        sample_size=32,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 128),
        layers_per_block=2,
        down_block_types=("DownBlock2D",) * 3,
        up_block_types=("UpBlock2D",) * 3,
    )
    train_scheduler = DDPMScheduler(num_train_timesteps=1000)
    ddim = DDIMScheduler.from_config(train_scheduler.config)
    # train_unconditional.py's defaults: AdamW betas (0.95, 0.999), weight decay 1e-6, eps 1e-8; EMA 0.9999 with
    # warm-up (inv_gamma 1, power 3/4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    ema = EMAModel(model.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4)
    generator = torch.Generator().manual_seed(seed)
    images = data.tensor

    def step() -> None:
        model.train()
        x0 = images[torch.randint(len(images), (BATCH_SIZE,), generator=generator)]
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(0, 1000, (BATCH_SIZE,), generator=generator)
        loss = F.mse_loss(model(train_scheduler.add_noise(x0, noise, t), t).sample, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        ema.step(model.parameters())

    def draw(n: int, sample_seed: int) -> Tensor:
        sample_generator = torch.Generator().manual_seed(sample_seed)
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
        model.eval()

        def chunk(k: int) -> Tensor:
            x = torch.randn((k, 1, 32, 32), generator=sample_generator)
            ddim.set_timesteps(DDIM_STEPS)
            for t in ddim.timesteps:
                # use_clipped_model_output: recompute the noise from the clipped x0, as our sampler and lucidrains'
                # do; diffusers' default keeps the raw noise prediction, which leaves grey backgrounds
                x = ddim.step(model(x, t).sample, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
            return x

        try:
            with torch.no_grad():
                return in_chunks(n, chunk)
        finally:
            ema.restore(model.parameters())

    spent, steps = 0.0, 0
    for budget in budgets:
        spent, calls = train_until(budget, spent, step)
        steps += calls
        yield Checkpoint(spent, steps, draw)


RACES = {"ours": race_ours, "ddpm_pytorch": race_ddpm_pytorch, "diffusers": race_diffusers}


# ----------------------------------------------------------------------------------------------------- report


def lr_label(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-")


def report(
    points: Sequence[Point], floor: float, args: argparse.Namespace, machine: str, command: str, warning: str | None
) -> str:
    """The RESULTS.md section; `warning` is the busy-machine warning taken when the run started."""
    lines = [
        *section_header(SECTION_HEADING, machine, command, warning),
        f"Each contender trains on the 4,000 mnist5k training digits (batch {BATCH_SIZE}; the peers at 32x32, ours "
        f"at its recipe's {RECIPE_SIZE}x{RECIPE_SIZE}, the digits unpadded) for each "
        f"wall-clock budget, then draws {args.n} samples with {DDIM_STEPS} DDIM steps from its EMA weights "
        f"(sampling time separate), scored by core.metrics.evaluate_samples against {args.n} held-out digits "
        f'of the "{SPLIT}" split (core.metrics.REFERENCE_SPLITS: these are reported numbers); '
        f"real-vs-real FD floor at n = {args.n}: {floor:.1f}. ours: a fresh TrainConfig-default run per "
        "budget (its lr decays over the budget); the peers (constant lr) continue one run across budgets. "
        "Tuning budget: ours, the recipe search (benchmarks/recipe_search.py, rounds 1 and 2: 34 runs of 60 s); "
        "each peer, its library's defaults at two learning rates (its documented default and 1e-3). diffusers "
        "samples with use_clipped_model_output=True. Configurations and fairness choices: see the module docstring. "
        f"Rows accumulate in {POINTS_FILE.name} (benchmarks/results/) across runs of this script: each run replaces "
        "the rows of the (contender, lr) pairs it ran (`python benchmarks/time_to_quality.py --contenders C --lrs LR` "
        "reruns those of contender C at lr LR); the machine and command above are the latest run's.",
        "",
        f"| contender | lr | budget s | training steps | images/s | FD | FD / floor | confident fraction "
        f"| entropy | sampling s ({args.n} samples) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        cells = [
            p.contender,
            lr_label(p.lr),
            f"{p.budget:g}",
            str(p.steps),
            f"{p.images_per_second:.0f}",
            f"{p.fd:.1f}",
            f"{p.fd / floor:.1f}" if floor > 0 else "n/a",
            f"{p.confident:.2f}",
            f"{p.entropy:.2f}",
            f"{p.sample_seconds:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    best = min(points, key=lambda p: p.fd)
    lines += ["", f"Best FD: {best.contender} at lr {lr_label(best.lr)} after {best.budget:g} s ({best.fd:.1f})."]
    return "\n".join(lines) + "\n"


def plot_fd(points: Sequence[Point], floor: float, path: Path) -> Path:
    """FD against training seconds, log y, one line per (contender, lr), the real floor dashed."""
    series: dict[str, list[tuple[float, float]]] = {}
    for p in points:
        series.setdefault(f"{p.contender} lr {lr_label(p.lr)}", []).append((p.train_seconds, p.fd))
    return line_chart(
        series,
        path,
        title="FD (log scale) vs training wall clock",
        x_label="training seconds",
        reference=("real floor", floor) if floor > 0 else None,
    )


# ------------------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--budgets", type=float, nargs="+", default=[60.0, 180.0, 600.0], help="training seconds (default 60 180 600)"
    )
    parser.add_argument(
        "--lrs", nargs="+", default=["default", "1e-3"], help="'default' (each contender's own) or numbers"
    )
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--n", type=int, default=500, help="samples scored per point (default 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="the markdown file to update")
    parser.add_argument(
        "--pictures", type=Path, default=RESULTS_DIR, help="folder for the grids and the FD plot (benchmarks/results)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only; pictures go to a temporary folder")
    args = parser.parse_args(argv)
    if args.n < 2:
        parser.error("--n must be >= 2")
    if any(not (0 < b < math.inf) for b in args.budgets):
        parser.error("--budgets must be positive")
    args.budgets = sorted(set(args.budgets))
    for lr in args.lrs:
        if lr != "default":
            try:
                float(lr)
            except ValueError:
                parser.error(f"--lrs: {lr!r} is neither 'default' nor a number")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    threads = available_cores()
    torch.set_num_threads(threads)
    versions = (
        f"diffusers {diffusers.__version__}, denoising-diffusion-pytorch "
        f"{importlib.metadata.version('denoising-diffusion-pytorch')}"
    )
    machine = machine_description(threads, versions)
    command = command_line(__file__, argv)
    print(machine, flush=True)
    warning = busy_warning()
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    out_dir = Path(tempfile.mkdtemp(prefix="race_")) if args.no_write else args.pictures
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_dataset("mnist5k", split="train", image_size=32)
    floor = real_floor(args.n, seed=args.seed, split=SPLIT)
    print(f"{len(data)} training digits; real-vs-real FD floor at n = {args.n}: {floor:.1f}", flush=True)
    earlier = [] if args.no_write else load_points(args.pictures / POINTS_FILE.name)
    if any(p.n != args.n for p in earlier):
        print(f"dropping the earlier points scored at another n than {args.n}", flush=True)
        earlier = [p for p in earlier if p.n == args.n]
    points: list[Point] = []
    for contender in dict.fromkeys(args.contenders):
        for lr in dict.fromkeys(DEFAULT_LR[contender] if lr == "default" else float(lr) for lr in args.lrs):
            for budget, checkpoint in zip(
                args.budgets, RACES[contender](data, lr, args.budgets, args.seed), strict=True
            ):
                start = time.perf_counter()
                samples = checkpoint.draw(args.n, args.seed).clamp(-1, 1)
                sample_seconds = time.perf_counter() - start
                metrics = evaluate_samples(samples, seed=args.seed, split=SPLIT)
                point = Point(
                    contender,
                    lr,
                    budget,
                    checkpoint.train_seconds,
                    checkpoint.steps,
                    metrics["fd"],
                    metrics["confident_fraction"],
                    metrics["class_entropy"],
                    sample_seconds,
                    args.n,
                )
                points.append(point)
                save_images(samples[:GRID_IMAGES], out_dir / f"race_{contender}_{lr_label(lr)}_{budget:g}s.png")
                print(
                    f"{contender} lr {lr_label(lr)} {budget:g} s: {point.steps} steps "
                    f"({point.images_per_second:.0f} images/s), FD {point.fd:.1f}, confident {point.confident:.2f}, "
                    f"entropy {point.entropy:.2f}, sampling {sample_seconds:.1f} s",
                    flush=True,
                )
                # after every point, so an interrupted race keeps what it measured
                every = merge_points(earlier, points)
                section = report(every, floor, args, machine, command, warning)
                plot = plot_fd(every, floor, out_dir / "race_fd.png")
                if not args.no_write:
                    (out_dir / POINTS_FILE.name).write_text(
                        json.dumps([dataclasses.asdict(p) for p in every], indent=1)
                    )
                    write_section(SECTION_HEADING, section, args.results)
    print()
    print(section)
    print(f"pictures in {out_dir} (FD plot: {plot})")
    if not args.no_write:
        print(f"written to {args.results}")


if __name__ == "__main__":
    main()
