"""The race: which training setup reaches the best digit samples in a given wall-clock budget on this machine.

Every contender trains on the same 4,000 training digits (`load_dataset("mnist5k", split="train",
image_size=32)`: 28x28 padded to 32x32, values in [-1, 1]) at each learning rate (--lrs) for each wall-clock
training budget (--budgets, seconds of optimizer steps only: no data loading, no sampling, no evaluation).
After each budget it draws --n samples with 50 DDIM steps (eta = 0; timed separately) from a fixed seed and
scores them with `core.metrics.evaluate_samples` (Fréchet distance in our digit classifier's features, the
fraction of confidently classified digits, the entropy of the class histogram), next to the real-vs-real FD
floor `core.metrics.real_floor(n)` at the same n.

Contenders (all batch 64, gradient-norm clipping at 1.0, CPU, one thread per available core):

* ours: `core.training.Trainer` with the `TrainConfig` defaults (preset "tiny", x0 objective, cosine
  schedule, AdamW, 50 warm-up steps then cosine decay to 0.1 lr over the budget, EMA 0.995), with
  `time_budget=budget, steps=None`; "default" lr = TrainConfig().lr (2e-3), and 1e-3. Samples: the EMA model,
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
  samples with `DDIMScheduler` (50 steps, its default clip_sample=True) from the same config. Optimizer and EMA
  as examples/unconditional_image_generation/train_unconditional.py's defaults: AdamW(betas=(0.95, 0.999),
  weight_decay=1e-6, eps=1e-8), "default" lr 1e-4, clip 1.0, `EMAModel(decay=0.9999, use_ema_warmup=True,
  inv_gamma=1.0, power=3/4)`, sampling the EMA weights. Its cosine schedule with 500 warm-up steps is *not*
  used (a step count is not known in advance under a time budget): constant lr.

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
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from common import RESULTS_PATH, busy_warning, machine_description, section_header, write_section
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from core.data import load_dataset
from core.imaging import save_images
from core.metrics import evaluate_samples, real_floor
from core.samplers import draw_noise, make_sampler, sample
from core.training import TrainConfig, Trainer, available_cores

try:
    import denoising_diffusion_pytorch.denoising_diffusion_pytorch as ddp_module
    import diffusers
    from denoising_diffusion_pytorch import GaussianDiffusion, Unet
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
    from diffusers.training_utils import EMAModel
    from ema_pytorch import EMA
except ImportError as error:  # pragma: no cover - depends on the environment
    raise SystemExit("the race needs diffusers and denoising-diffusion-pytorch: pip install -e '.[test]'") from error

SECTION_HEADING = "## Time to quality (benchmarks/time_to_quality.py)"
RESULTS_DIR = RESULTS_PATH.parent / "results"
CONTENDERS = ("ours", "ddpm_pytorch", "diffusers")
DEFAULT_LR = {"ours": TrainConfig().lr, "ddpm_pytorch": 1e-4, "diffusers": 1e-4}
BATCH_SIZE = 64
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

    @property
    def images_per_second(self) -> float:
        return self.steps * BATCH_SIZE / self.train_seconds if self.train_seconds > 0 else 0.0


@dataclass
class Checkpoint:
    """What a contender's run yields at each budget: the training so far and a sampler of n images."""

    train_seconds: float
    steps: int
    draw: Callable[[int, int], Tensor]  # (n, seed) -> samples [n, 1, 32, 32] in [-1, 1]


def in_chunks(n: int, draw_chunk: Callable[[int], Tensor]) -> Tensor:
    return torch.cat([draw_chunk(min(SAMPLE_CHUNK, n - i)) for i in range(0, n, SAMPLE_CHUNK)])


# ------------------------------------------------------------------------------------------ the contenders


def race_ours(data, lr: float, budgets: Sequence[float], seed: int) -> Iterator[Checkpoint]:
    """A fresh Trainer per budget: the shipped recipe decays its lr over the budget it is given."""
    for budget in budgets:
        trainer = Trainer(TrainConfig(lr=lr, time_budget=budget, steps=None, seed=seed), dataset=data)
        elapsed = 0.0
        for record in trainer.run():
            elapsed = record.elapsed
        sampler = make_sampler("ddim", trainer.schedule, objective=trainer.config.objective, clip_x0=True)

        def draw(n: int, sample_seed: int, trainer: Trainer = trainer, sampler=sampler) -> Tensor:
            generator = torch.Generator().manual_seed(sample_seed)
            x_T = draw_noise((n, 1, 32, 32), generator, "cpu", torch.float32)
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
                x = ddim.step(model(x, t).sample, t, x, eta=0.0).prev_sample
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
        f"Each contender trains on the 4,000 mnist5k training digits (32x32, batch {BATCH_SIZE}) for each "
        f"wall-clock budget, then draws {args.n} samples with {DDIM_STEPS} DDIM steps from its EMA weights "
        f"(sampling time separate), scored by core.metrics.evaluate_samples against {args.n} held-out digits; "
        f"real-vs-real FD floor at n = {args.n}: {floor:.1f}. ours: a fresh TrainConfig-default run per "
        "budget (its lr decays over the budget); the peers (constant lr) continue one run across budgets. "
        "Configurations and fairness choices: see the module docstring.",
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


COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def plot_fd(points: Sequence[Point], floor: float, path: Path) -> Path:
    """FD against training seconds, log y, one line per (contender, lr), the real floor dashed; drawn with PIL."""
    width, height, left, right, top, bottom = 900, 560, 80, 230, 40, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    values = [p.fd for p in points if p.fd > 0] + ([floor] if floor > 0 else [])
    y_low = 10 ** math.floor(math.log10(min(values)))
    y_high = 10 ** math.ceil(math.log10(max(values)))
    if y_high <= y_low:
        y_high = y_low * 10
    x_high = max(p.train_seconds for p in points) * 1.05 or 1.0

    def to_xy(seconds: float, fd: float) -> tuple[float, float]:
        x = left + seconds / x_high * (width - left - right)
        fraction = (math.log10(max(fd, y_low)) - math.log10(y_low)) / (math.log10(y_high) - math.log10(y_low))
        return x, height - bottom - fraction * (height - top - bottom)

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    decade = y_low
    while decade <= y_high * 1.001:
        for multiple in range(1, 10):
            value = decade * multiple
            if value > y_high * 1.001:
                break
            _, y = to_xy(0, value)
            draw.line([left, y, width - right, y], fill=(225, 225, 225) if multiple > 1 else (170, 170, 170))
            if multiple in (1, 2, 5):
                draw.text((left - 8, y), f"{value:g}", fill="black", font=font, anchor="rm")
        decade *= 10
    for i in range(6):
        seconds = x_high * i / 5
        x, _ = to_xy(seconds, y_low)
        draw.line([x, height - bottom, x, height - bottom + 5], fill="black")
        draw.text((x, height - bottom + 8), f"{seconds:.0f}", fill="black", font=font, anchor="mt")
    draw.text(((left + width - right) / 2, height - 20), "training seconds", fill="black", font=font, anchor="mm")
    draw.text((left, 15), "FD (log scale) vs training wall clock", fill="black", font=font, anchor="lm")
    legend_y = top + 5
    if floor > 0:
        _, y = to_xy(0, floor)
        for x in range(left, width - right, 12):
            draw.line([x, y, x + 6, y], fill=(100, 100, 100), width=2)
        draw.line([width - right + 15, legend_y + 6, width - right + 40, legend_y + 6], fill=(100, 100, 100), width=2)
        draw.text((width - right + 48, legend_y + 6), "real floor", fill="black", font=font, anchor="lm")
        legend_y += 20
    series = list(dict.fromkeys((p.contender, p.lr) for p in points))
    for index, key in enumerate(series):
        color = COLORS[index % len(COLORS)]
        xy = [to_xy(p.train_seconds, p.fd) for p in points if (p.contender, p.lr) == key]
        if len(xy) > 1:
            draw.line(xy, fill=color, width=3)
        for x, y in xy:
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=color)
        draw.line([width - right + 15, legend_y + 6, width - right + 40, legend_y + 6], fill=color, width=3)
        label = f"{key[0]} lr {lr_label(key[1])}"
        draw.text((width - right + 48, legend_y + 6), label, fill="black", font=font, anchor="lm")
        legend_y += 20
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


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
    command = shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", __file__, *argv])
    print(machine, flush=True)
    warning = busy_warning()
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    out_dir = Path(tempfile.mkdtemp(prefix="race_")) if args.no_write else args.pictures
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_dataset("mnist5k", split="train", image_size=32)
    floor = real_floor(args.n, seed=args.seed)
    print(f"{len(data)} training digits; real-vs-real FD floor at n = {args.n}: {floor:.1f}", flush=True)
    points: list[Point] = []
    for contender in dict.fromkeys(args.contenders):
        for lr in dict.fromkeys(DEFAULT_LR[contender] if lr == "default" else float(lr) for lr in args.lrs):
            for budget, checkpoint in zip(
                args.budgets, RACES[contender](data, lr, args.budgets, args.seed), strict=True
            ):
                start = time.perf_counter()
                samples = checkpoint.draw(args.n, args.seed).clamp(-1, 1)
                sample_seconds = time.perf_counter() - start
                metrics = evaluate_samples(samples, seed=args.seed)
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
                )
                points.append(point)
                save_images(samples[:GRID_IMAGES], out_dir / f"race_{contender}_{lr_label(lr)}_{budget:g}s.png")
                print(
                    f"{contender} lr {lr_label(lr)} {budget:g} s: {point.steps} steps "
                    f"({point.images_per_second:.0f} images/s), FD {point.fd:.1f}, confident {point.confident:.2f}, "
                    f"entropy {point.entropy:.2f}, sampling {sample_seconds:.1f} s",
                    flush=True,
                )
    section = report(points, floor, args, machine, command, warning)
    plot = plot_fd(points, floor, out_dir / "race_fd.png")
    print()
    print(section)
    print(f"pictures in {out_dir} (FD plot: {plot})")
    if not args.no_write:
        write_section(SECTION_HEADING, section, args.results)
        print(f"written to {args.results}")


if __name__ == "__main__":
    main()
