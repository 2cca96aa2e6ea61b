"""GPU check: what a GPU machine owes the project, in one command: the core's results on the device against the CPU,
the speed options the runtime will use there, training throughput and sampling latency beside diffusers'
UNet2DModel, DDP on every GPU present, and the time the Train tab's default needs to reach the race's goal.

Meant for a lent GPU machine (never needed for CI):

    python benchmarks/gpu_check.py           # ~10 min; writes its tables to benchmarks/RESULTS.md and its speed
                                             # verdict for this GPU to assets/speed_choices.json
    python benchmarks/gpu_check.py --device cpu --threads 1 --seconds 0.3 --batch-size 8 --presets tiny \\
        --sample-steps 10 --skip-peer --goal-budgets 2 --goal-n 64 --no-compile --no-write   # CPU smoke, ~1 min

1. Correctness on the device (each prints PASS or FAIL with its numbers):
   a. one DDPM and one DDIM step (eta 0.5, injected noise) on the device equal the same step in float64 on the CPU;
   b. DDIM-50 with the exact noise predictor of N(0.3, 0.5^2) data gives samples with that mean and std;
   c. 100 training steps of "tiny" (with the device's speed options) lower the loss by 30% and stay finite;
   d. a checkpoint saved from the device loads on the CPU with the same outputs (to float32 tolerance);
   e. sampling and training on the device match the CPU within core/device_agreement.py's stated tolerances.
2. Speed options (core/accelerators.py): training steps of the Train tab's default model (TrainConfig(): "tiny",
   28x28 digits, batch 64) in float32, then with bf16 autocast, channels_last and torch.compile added in turn, each
   kept when at least 5% faster; the verdict and the images/s are recorded for this device in
   assets/speed_choices.json (unless --no-write), which training then reads.
3. Throughput: training images/s at 32x32 (batch --batch-size) and the seconds of 16 pictures x DDIM --sample-steps,
   for our presets and diffusers' UNet2DModel at the closest configuration (benchmarks/train_throughput.py's
   contenders, and denoising-diffusion-pytorch's Unet(dim=32) when installed), in float32, bf16,
   bf16+channels_last and bf16+channels_last+compile (unless --no-compile), after warm-up, over --seconds each.
4. DDP: `python -m core train ...` on one GPU and `torchrun --nproc-per-node N -m core train ...` (as `python -m
   torch.distributed.run`, benchmarks/ddp_scaling.py's runs) on all N GPUs present, at --ddp-batch images per GPU:
   images/s and the speed-up; "skipped: <reason>" with fewer than 2 GPUs or when a command fails.
5. Time to the race's goal (benchmarks/time_to_quality.py; RESULTS.md "Where the 60-second goal stands": FD within
   3x the real-vs-real floor, >= 80% confident digits, all ten present, --goal-n samples of DDIM-50 eta 0): the Train
   tab's default trained for each of --goal-budgets seconds (a fresh run each: its learning rate decays over the
   budget it is given), until one meets the goal.
"""

from __future__ import annotations

import argparse
import datetime
import math
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from common import command_line, machine_description, section_header, write_section
from ddp_scaling import one_run
from torch import Tensor, nn
from train_throughput import IMAGE_SIZE, ours, theirs

from core.accelerators import SpeedChoices, decide, device_key, record_choice, speed_choices
from core.checkpoint import load_checkpoint
from core.classic_samplers import DDIMSampler, DDPMSampler
from core.data import load_dataset
from core.device import available_cores, describe_device
from core.device_agreement import SAMPLING_TOLERANCE, agreement
from core.diffusion import training_loss
from core.metrics import AS_REAL_CONFIDENT, AS_REAL_RATIO, evaluate_samples, real_floor
from core.sampler_base import draw_noise
from core.samplers import make_sampler, sample, sample_as_default
from core.schedules import make_schedule
from core.training import TrainConfig, Trainer, make_denoiser

SECTION_HEADING = "## GPU check (benchmarks/gpu_check.py)"
WARMUP_STEPS = 3
GOAL_SAMPLER_STEPS = 50  # the race's DDIM-50, eta 0
SAMPLE_CHUNK = 250


class ExactGaussianEps(nn.Module):
    """E[eps | x_t] for data ~ N(mu, sigma^2): sqrt(1 - a) (x_t - sqrt(a) mu) / (a sigma^2 + 1 - a)."""

    def __init__(self, alphas_cumprod: Tensor, mu: float, sigma: float):
        super().__init__()
        self.register_buffer("a", alphas_cumprod.float())
        self.mu, self.sigma = mu, sigma
        self.unused = nn.Parameter(torch.zeros(()))  # gives the model a dtype and device

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        a = self.a[t].view(-1, *([1] * (x.ndim - 1)))
        return (1 - a).sqrt() * (x - a.sqrt() * self.mu) / (a * self.sigma**2 + 1 - a)


def check(name: str, ok: bool, detail: str) -> tuple[str, bool, str]:
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)
    return name, ok, detail


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------------ 1. correctness


def correctness(device: torch.device, threads: int) -> list[tuple[str, bool, str]]:
    results = []
    schedule = make_schedule("linear")
    g = torch.Generator().manual_seed(0)
    x, out, noise = (torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64) for _ in range(3))
    for sampler in (DDPMSampler(schedule), DDIMSampler(schedule, eta=0.5)):
        reference, _ = sampler.step(x, 487, 467, out, noise=noise)
        on_device, _ = sampler.step(
            x.float().to(device), 487, 467, out.float().to(device), noise=noise.float().to(device)
        )
        error = (on_device.double().cpu() - reference).abs().max().item()
        results.append(check(f"{sampler.name} step vs float64 CPU", error < 1e-5, f"max error {error:.2e}"))

    n = 20_000
    exact = ExactGaussianEps(schedule.alphas_cumprod, 0.3, 0.5).to(device)
    x_T = torch.randn(n, 1, 1, 1, generator=torch.Generator().manual_seed(1)).to(device)
    samples = sample(exact, DDIMSampler(schedule), x_T, 50).float().cpu()
    mean, std = samples.mean().item(), samples.std().item()
    # 5 standard errors plus DDIM-50's measured discretisation bias (std about 5.5% low; tests/test_samplers_exact.py)
    ok = abs(mean - 0.3) < 5 * 0.5 / math.sqrt(n) + 0.005 and abs(std - 0.5) < 5 * 0.5 / math.sqrt(2 * n) + 0.035
    results.append(
        check("DDIM-50 with the exact Gaussian predictor", ok, f"mean {mean:.4f} (0.3), std {std:.4f} (0.5)")
    )

    digits = load_dataset("mnist5k", split="train", image_size=IMAGE_SIZE).subset(512)
    config = TrainConfig(steps=100, batch_size=64, device=str(device), warmup_steps=10, num_threads=threads)
    trainer = Trainer(config, dataset=digits)
    losses = [r.loss for r in trainer.run()]
    first, last = sum(losses[:10]) / 10, sum(losses[-20:]) / 20
    ok = all(math.isfinite(v) for v in losses) and last < 0.7 * first
    detail = f"loss {first:.4f} -> {last:.4f} on {trainer.device} with {trainer.speed.describe()}"
    results.append(check("100 training steps of tiny", ok, detail))

    with tempfile.TemporaryDirectory() as folder:
        trainer.save(folder)
        loaded = load_checkpoint(folder, device="cpu")
        probe = torch.randn(2, 1, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(2))
        t = torch.tensor([10, 900])
        with torch.no_grad():
            on_device = trainer.model.eval()(probe.to(trainer.device), t.to(trainer.device)).float().cpu()
            on_cpu = loaded.model.eval()(probe, t)
        error = (on_device - on_cpu).abs().max().item()
        results.append(check("checkpoint from the device loads on the CPU", error < 1e-3, f"max error {error:.2e}"))

    same = agreement(device)
    detail = f"max pixel difference {same.sampling_error:.2e} (tolerance {SAMPLING_TOLERANCE:g})"
    results.append(check("sampling matches the CPU (DDIM-20, float32)", same.sampling_ok, detail))
    detail = (
        f"losses within {same.loss_error:.2e} relative, weights {same.weight_error:.2e} at most, "
        f"{same.moved_fraction:.1e} of them beyond 1e-4"
    )
    results.append(check("training matches the CPU (5 AdamW steps, float32)", same.training_ok, detail))
    return results


# --------------------------------------------------------------------------------------------- 2. speed options


def train_tab_rate(device: torch.device, choice: SpeedChoices, seconds: float) -> float:
    """Images/s of training steps of the Train tab's default model and data with these speed options."""
    config = TrainConfig(device=str(device))
    data = load_dataset(config.dataset, split="train", image_size=config.image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = choice.prepare(make_denoiser(config, data).to(device))
    network = choice.network(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    images = data.tensor.to(device)
    generator = torch.Generator().manual_seed(0)
    schedule = config.noise_schedule()

    def step() -> None:
        index = torch.randint(len(images), (config.batch_size,), generator=generator).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=choice.bf16):
            loss = training_loss(network, schedule, images[index], objective=config.objective, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.loss.backward()
        optimizer.step()

    return timed_rate(step, device, seconds, config.batch_size)[0]


def timed_rate(step: Callable[[], None], device: torch.device, seconds: float, batch: int) -> tuple[float, float]:
    """(images/s over a window of `seconds` after WARMUP_STEPS steps, the warm-up's seconds)."""
    start = time.perf_counter()
    for _ in range(WARMUP_STEPS):  # warm-up (and compilation)
        step()
    synchronize(device)
    warmup = time.perf_counter() - start
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or steps < 3:
        step()
        steps += 1
    synchronize(device)
    return steps * batch / (time.perf_counter() - start), warmup


def speed_options(device: torch.device, args: argparse.Namespace) -> tuple[SpeedChoices, dict]:
    choice, rates = decide(lambda c: train_tab_rate(device, c, args.seconds), allow_compile=not args.no_compile)
    for label, rate in rates.items():
        print(f"Train tab default with {label}: {rate:,.0f} images/s", flush=True)
    return choice, rates


# ----------------------------------------------------------------------------------------------- 3. throughput


def peer_ddpm_pytorch() -> tuple[str, nn.Module, Callable[[Tensor], Tensor], None] | None:
    """denoising-diffusion-pytorch's Unet(dim=32, dim_mults=(1, 2, 4)) in its GaussianDiffusion, when installed."""
    try:
        from denoising_diffusion_pytorch import GaussianDiffusion, Unet
    except ImportError:
        return None
    unet = Unet(dim=32, dim_mults=(1, 2, 4), channels=1)
    diffusion = GaussianDiffusion(unet, image_size=IMAGE_SIZE, timesteps=1000, auto_normalize=False)
    return "ddpm-pytorch Unet(dim=32)", diffusion, diffusion, None  # GaussianDiffusion(x0) returns the loss


MODES = [  # (label, bf16, channels_last, compile)
    ("fp32", False, False, False),
    ("bf16", True, False, False),
    ("bf16+channels_last", True, True, False),
    ("bf16+channels_last+compile", True, True, True),
]


def throughput(device: torch.device, args: argparse.Namespace) -> list[list[str]]:
    schedule = make_schedule("linear")
    contenders = []
    for preset in args.presets:
        for make in (ours, theirs):
            c = make(preset, schedule)
            contenders.append((c.name, c.model, c.loss, c.sample))
    peer = None if args.skip_peer else peer_ddpm_pytorch()
    if peer:
        contenders.append(peer)
    modes = [mode for mode in MODES if not (mode[3] and args.no_compile)]
    x_T = torch.randn(16, 1, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0)).to(device)
    rows = []
    for name, model, loss_fn, sampler in contenders:
        for mode, bf16, channels_last, compiled in modes:
            layout = torch.channels_last if channels_last else torch.contiguous_format
            model = model.to(device).to(memory_format=layout)
            loss = torch.compile(loss_fn) if compiled else loss_fn
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            x0 = torch.rand(args.batch_size, 1, IMAGE_SIZE, IMAGE_SIZE, device=device) * 2 - 1
            x0 = x0.contiguous(memory_format=layout)
            autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

            def step(loss=loss, x0=x0, optimizer=optimizer, autocast=autocast) -> None:
                with autocast:
                    value = loss(x0)
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()

            try:
                rate, warmup = timed_rate(step, device, args.seconds, args.batch_size)
                latency = sampling_seconds(model, sampler, x_T, args.sample_steps, autocast, device)
                rows.append([name, mode, f"{rate:,.0f}", f"{warmup:.1f}", latency])
            except Exception as error:  # a mode a peer does not support is reported, not fatal
                rows.append([name, mode, f"failed: {type(error).__name__}: {str(error)[:80]}", "-", "-"])
            print(" | ".join(rows[-1]), flush=True)
    return rows


def sampling_seconds(model: nn.Module, sampler, x_T: Tensor, steps: int, autocast, device: torch.device) -> str:
    """Seconds of 16 pictures x DDIM `steps` (the better of two runs after one warm-up), or "-" for a peer whose
    sampling is not measured here."""
    if sampler is None:
        return "-"
    model.eval()
    times = []
    with torch.no_grad(), autocast:
        for _ in range(3):
            start = time.perf_counter()
            sampler(x_T, steps)
            synchronize(device)
            times.append(time.perf_counter() - start)
    model.train()
    return f"{min(times[1:]):.3f}"


# ------------------------------------------------------------------------------------------------------ 4. DDP


def ddp(device: torch.device, args: argparse.Namespace) -> list[list[str]]:
    """Images/s of `python -m core train` on 1 GPU and under torchrun on every GPU (benchmarks/ddp_scaling.py's
    runs), at --ddp-batch images per GPU."""
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if gpus < 2:
        return [["-", "-", "-", f"skipped: {gpus} GPU{'' if gpus == 1 else 's'} here; DDP needs at least 2"]]
    rows, single = [], None
    for processes in (1, gpus):
        batch = args.ddp_batch * processes
        print(f"training on {processes} GPU(s), global batch {batch} ...", flush=True)
        try:
            images, _ = one_run(processes, "tiny", args.ddp_steps, batch)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            last = (str(error).strip().splitlines() or ["no output"])[-1][:160]
            rows.append([str(processes), str(batch), "-", f"skipped: the command failed ({last})"])
            continue
        single = images if processes == 1 else single
        speedup = f"{images / single:.2f}x" if single else "-"
        rows.append([str(processes), str(batch), f"{images:,.0f}", speedup])
    return rows


# ------------------------------------------------------------------------------------------------ 5. race's goal


def time_to_goal(device: torch.device, args: argparse.Namespace) -> tuple[list[list[str]], str]:
    """Train the Train tab's default for each budget (fresh runs) until its samples meet the race's goal."""
    config = TrainConfig(device=str(device))
    data = load_dataset(config.dataset, split="train", image_size=config.image_size)
    floor = real_floor(args.goal_n)
    rows, verdict = [], f"not reached within {max(args.goal_budgets):g} s"
    for budget in args.goal_budgets:
        run = TrainConfig(device=str(device), time_budget=budget, steps=None, num_threads=args.threads)
        trainer = Trainer(run, dataset=data)
        records = list(trainer.run())
        record = records[-1] if records else None
        sampler = make_sampler("ddim", trainer.schedule, objective=config.objective, clip_x0=True)
        generator = torch.Generator().manual_seed(0)
        chunks = []
        for start in range(0, args.goal_n, SAMPLE_CHUNK):
            count = min(SAMPLE_CHUNK, args.goal_n - start)
            x_T = draw_noise((count, *data.tensor.shape[1:]), generator, device, torch.float32)
            with torch.no_grad():
                model = trainer.ema_model  # (class-conditional: each class in turn, the default guidance)
                chunks.append(sample_as_default(model, sampler, x_T, GOAL_SAMPLER_STEPS, generator=generator).cpu())
        scores = evaluate_samples(torch.cat(chunks).float())
        present = sum(count > 0 for count in scores["class_histogram"])
        met = scores["fd"] <= AS_REAL_RATIO * floor and scores["confident_fraction"] >= AS_REAL_CONFIDENT
        met = met and present == 10
        rows.append(
            [
                f"{budget:g}",
                f"{trainer.step:,}",
                f"{record.images_per_second:,.0f}" if record else "-",
                f"{scores['fd']:.1f} ({scores['fd'] / floor:.1f}x)",
                f"{scores['confident_fraction']:.0%}",
                str(present),
                "met" if met else "not yet",
            ]
        )
        print(" | ".join(rows[-1]), flush=True)
        if met:
            verdict = f"reached after {budget:g} s of training ({trainer.step:,} steps)"
            break
    return rows, f"{verdict}; floor {floor:.1f} at n = {args.goal_n}"


# ------------------------------------------------------------------------------------------------------- main


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}", *[f"| {' | '.join(row)} |" for row in rows]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed window per contender and mode")
    parser.add_argument("--batch-size", type=int, default=256, help="training batch of the throughput table")
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--sample-steps", type=int, default=50, help="DDIM steps of the sampling latency")
    parser.add_argument("--ddp-steps", type=int, default=300, help="optimizer steps of each DDP run")
    parser.add_argument("--ddp-batch", type=int, default=256, help="images per GPU and step in the DDP runs")
    parser.add_argument("--goal-budgets", type=float, nargs="+", default=[5, 10, 20, 40, 80])
    parser.add_argument("--goal-n", type=int, default=500, help="samples scored for the race's goal (its n)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: one per available core)")
    parser.add_argument("--skip-peer", action="store_true", help="leave denoising-diffusion-pytorch out of the table")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only: RESULTS.md and the speed record stay")
    args = parser.parse_args(argv)
    args.threads = args.threads or available_cores()
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    machine = machine_description(args.threads, f"device {describe_device(device)}")
    print(machine, flush=True)
    choice, rates = speed_options(device, args)
    if not args.no_write:
        record_choice(device_key(device), choice, rates, datetime.date.today().isoformat())
    checks = correctness(device, args.threads)  # with the options just recorded (the defaults under --no-write)
    rows = throughput(device, args)
    ddp_rows = ddp(device, args)
    goal_rows, goal = time_to_goal(device, args)
    lines = [
        *section_header(SECTION_HEADING, machine, command_line(__file__, argv)),
        *table(
            ["correctness check on the device", "result", "detail"],
            [[n, "pass" if ok else "FAIL", d] for n, ok, d in checks],
        ),
        "",
        f"Speed options for the Train tab's default (core/accelerators.py; {args.seconds:g} s windows): "
        f"**{speed_choices(device).describe() if not args.no_write else choice.describe()}**.",
        "",
        *table(["options", "images/s"], [[label, f"{rate:,.0f}"] for label, rate in rates.items()]),
        "",
        f"Training throughput at 32x32, batch {args.batch_size}, after {WARMUP_STEPS} warm-up steps, "
        f"{args.seconds:g} s window; sampling: 16 pictures x DDIM-{args.sample_steps}, the better of two runs:",
        "",
        *table(["model", "mode", "train images/s", "warm-up s", "sample s"], rows),
        "",
        f"DDP: `python -m core train --dataset mnist5k --preset tiny --steps {args.ddp_steps}` on 1 GPU, under "
        f"`torchrun --nproc-per-node N` on all N; {args.ddp_batch} images per GPU (benchmarks/ddp_scaling.py's runs):",
        "",
        *table(["processes", "global batch", "images/s", "speed-up"], ddp_rows),
        "",
        f"Time for the Train tab's default to reach the race's goal (FD <= {AS_REAL_RATIO:g}x the floor, "
        f">= {AS_REAL_CONFIDENT:.0%} confident, all ten digits; {args.goal_n} samples, DDIM-{GOAL_SAMPLER_STEPS}): "
        f"**{goal}**.",
        "",
        *table(["budget s", "steps", "images/s", "FD (x floor)", "confident", "digits", "goal"], goal_rows),
    ]
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_write:
        write_section(SECTION_HEADING, section)


if __name__ == "__main__":
    main()
