"""GPU check: the core's maths and training on CUDA, then training throughput with bf16 autocast, channels_last
and torch.compile, ours beside diffusers' UNet2DModel and denoising-diffusion-pytorch, in one short command.

Meant for a lent GPU machine (never needed for CI):

    python benchmarks/gpu_check.py                     # a few minutes; writes its tables to benchmarks/RESULTS.md
    python benchmarks/gpu_check.py --device cpu --seconds 1 --batch-size 8 --no-compile --no-write   # smoke run

Correctness on the device (each prints PASS or FAIL with its numbers):
  1. one DDPM and one DDIM step (eta 0.5, injected noise) on the device equal the same step in float64 on the CPU;
  2. DDIM-50 with the exact noise predictor of N(0.3, 0.5^2) data gives samples with that mean and std;
  3. 100 training steps of "tiny" (bf16 autocast on CUDA) lower the loss by 30% and stay finite;
  4. a checkpoint saved from the device loads on the CPU with the same outputs (to float32 tolerance).
Throughput: training images/s at 32x32 (batch --batch-size) for each contender in float32, bf16 autocast,
bf16 + channels_last, and bf16 + channels_last + torch.compile (unless --no-compile), after warm-up, over a
--seconds window each.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from common import command_line, machine_description, section_header, write_section
from torch import Tensor, nn
from train_throughput import IMAGE_SIZE, ours, theirs

from core.checkpoint import load_checkpoint
from core.classic_samplers import DDIMSampler, DDPMSampler
from core.data import load_dataset
from core.samplers import sample
from core.schedules import make_schedule
from core.training import TrainConfig, Trainer

SECTION_HEADING = "## GPU check (benchmarks/gpu_check.py)"


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


def correctness(device: torch.device) -> list[tuple[str, bool, str]]:
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

    digits = load_dataset("mnist5k", split="train").subset(512)
    trainer = Trainer(TrainConfig(steps=100, batch_size=64, device=str(device), warmup_steps=10), dataset=digits)
    losses = [r.loss for r in trainer.run()]
    first, last = sum(losses[:10]) / 10, sum(losses[-20:]) / 20
    ok = all(math.isfinite(v) for v in losses) and last < 0.7 * first
    results.append(check("100 training steps of tiny", ok, f"loss {first:.4f} -> {last:.4f} on {trainer.device}"))

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
    return results


def peer_ddpm_pytorch() -> tuple[str, nn.Module, Callable[[Tensor], Tensor]] | None:
    """denoising-diffusion-pytorch's Unet(dim=32, dim_mults=(1, 2, 4)) in its GaussianDiffusion, when installed."""
    try:
        from denoising_diffusion_pytorch import GaussianDiffusion, Unet
    except ImportError:
        return None
    unet = Unet(dim=32, dim_mults=(1, 2, 4), channels=1)
    diffusion = GaussianDiffusion(unet, image_size=IMAGE_SIZE, timesteps=1000, auto_normalize=False)
    return "ddpm-pytorch Unet(dim=32)", diffusion, diffusion  # GaussianDiffusion(x0) returns the loss


def throughput(device: torch.device, args: argparse.Namespace) -> list[list]:
    schedule = make_schedule("linear")
    contenders = []
    for preset in args.presets:
        for make in (ours, theirs):
            c = make(preset, schedule)
            contenders.append((c.name, c.model, c.loss))
    peer = peer_ddpm_pytorch()
    if peer:
        contenders.append(peer)
    modes = [("fp32", False, False, False), ("bf16", True, False, False), ("bf16+channels_last", True, True, False)]
    if not args.no_compile:
        modes.append(("bf16+channels_last+compile", True, True, True))
    rows = []
    for name, model, loss_fn in contenders:
        for mode, bf16, channels_last, compiled in modes:
            model = model.to(device)
            model = (
                model.to(memory_format=torch.channels_last)
                if channels_last
                else model.to(memory_format=torch.contiguous_format)
            )
            loss = torch.compile(loss_fn) if compiled else loss_fn
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            x0 = torch.rand(args.batch_size, 1, IMAGE_SIZE, IMAGE_SIZE, device=device) * 2 - 1
            if channels_last:
                x0 = x0.contiguous(memory_format=torch.channels_last)
            autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

            def step(loss=loss, x0=x0, optimizer=optimizer, autocast=autocast) -> None:
                with autocast:
                    value = loss(x0)
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()

            try:
                start = time.perf_counter()
                for _ in range(3):  # warm-up (and compilation)
                    step()
                synchronize(device)
                warmup = time.perf_counter() - start
                steps, start = 0, time.perf_counter()
                while time.perf_counter() - start < args.seconds or steps < 3:
                    step()
                    steps += 1
                synchronize(device)
                rate = steps * args.batch_size / (time.perf_counter() - start)
                rows.append([name, mode, f"{rate:,.0f}", f"{warmup:.1f}"])
            except Exception as error:  # a mode a peer does not support is reported, not fatal
                rows.append([name, mode, f"failed: {type(error).__name__}: {str(error)[:80]}", "-"])
            print(" | ".join(rows[-1]), flush=True)
    return rows


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed window per contender and mode")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    machine = machine_description(torch.get_num_threads(), f"device {device} ({name})")
    print(machine, flush=True)
    checks = correctness(device)
    rows = throughput(device, args)
    lines = [
        *section_header(SECTION_HEADING, machine, command_line(__file__)),
        "| correctness check on the device | result | detail |",
        "|---|---|---|",
    ]
    lines += [f"| {n} | {'pass' if ok else 'FAIL'} | {d} |" for n, ok, d in checks]
    lines += [
        "",
        f"Training throughput at 32x32, batch {args.batch_size}, after 3 warm-up steps, {args.seconds:g} s window:",
        "",
        "| model | mode | images/s | warm-up s |",
        "|---|---|---|---|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_write:
        write_section(SECTION_HEADING, section)


if __name__ == "__main__":
    main()
