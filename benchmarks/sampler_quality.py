"""Sample quality against the number of network evaluations (NFE), for the shipped pretrained checkpoints.

For each checkpoint (default: every folder in assets/checkpoints/) it draws --n samples from one fixed x_T with
DDPM (T steps) and DDIM with 100, 50, 20 and 10 steps at eta = 0 (deterministic) and eta = 1 (DDPM-like noise),
times each run (wall clock, this machine's threads), and scores it:

* digits (mnist_uncond, mnist_cond): `core.metrics.evaluate_samples` (FD of the feature network's features to
  as many held-out digits of the report split; before issue 13, of the reference classifier's features to all
  held-out digits; the fraction classified with confidence >= 0.9, the entropy of the class histogram), next to
  the real-vs-real FD floor at the same n. A class-conditional model is asked for the labels 0..9 in turn
  (n/10 of each) at guidance 1 (plain conditional), and additionally with DDIM-50 at guidance 1, 2, 3 and 5,
  where the table also gives the reference classifier's accuracy on the requested label;
* 2D toy sets (toy_<name>): the sliced Wasserstein distance to held-out points and the mean distance from each
  sample to its nearest held-out point, each with its real-vs-real floor (`core.metrics.evaluate_points`).

Writes the tables into benchmarks/RESULTS.md ("## Sampler quality"), a plot of FD against NFE (log-log, one line
per checkpoint and eta) as benchmarks/results/sampler_fd.png, and a grid of the first 64 DDIM-50 samples of each
digit model as benchmarks/results/sampler_<checkpoint>.png.

    python benchmarks/sampler_quality.py                                     # all shipped checkpoints, ~15 min
    python benchmarks/sampler_quality.py --checkpoints assets/checkpoints/mnist_uncond --n 100 --no-write
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
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
from core.checkpoint import Checkpoint, load_checkpoint
from core.device import available_cores
from core.imaging import save_images
from core.metrics import evaluate_points, evaluate_samples, predict_logits, real_floor
from core.samplers import draw_noise, make_sampler, sample

SECTION_HEADING = "## Sampler quality (benchmarks/sampler_quality.py)"
CHECKPOINTS_DIR = Path(__file__).resolve().parents[1] / "assets" / "checkpoints"
RESULTS_DIR = RESULTS_PATH.parent / "results"
DDIM_STEPS = (100, 50, 20, 10)
ETAS = (0.0, 1.0)
GUIDANCE_SCALES = (1.0, 2.0, 3.0, 5.0)
GUIDANCE_STEPS = 50
GRID_IMAGES = 64


@dataclass
class Row:
    sampler: str  # "DDPM" or "DDIM"
    steps: int
    eta: float | None  # None for DDPM
    guidance: float | None  # None for an unconditional model
    seconds: float
    metrics: dict

    @property
    def nfe(self) -> int:
        """Network evaluations per sample (classifier-free guidance batches two per step into one call)."""
        return self.steps


def requested_labels(checkpoint: Checkpoint, n: int) -> Tensor | None:
    """Labels 0, 1, ..., 9, 0, 1, ... for a class-conditional model; None for an unconditional one."""
    num_classes = getattr(checkpoint.sampling_model, "num_classes", None)
    return torch.arange(n) % num_classes if num_classes else None


def draw(
    checkpoint: Checkpoint,
    x_T: Tensor,
    kind: str,
    steps: int,
    eta: float,
    labels: Tensor | None,
    guidance: float,
    seed: int,
) -> tuple[Tensor, float]:
    sampler = make_sampler(kind, checkpoint.schedule, eta=eta, objective=checkpoint.objective, clip_x0=True)
    generator = torch.Generator().manual_seed(seed + 1)
    start = time.perf_counter()
    with torch.no_grad():
        samples = sample(
            checkpoint.sampling_model.eval(),
            sampler,
            x_T,
            steps,
            y=labels,
            guidance_scale=guidance,
            generator=generator,
        )
    return samples, time.perf_counter() - start


def score(checkpoint: Checkpoint, samples: Tensor, labels: Tensor | None, seed: int) -> dict:
    dataset = checkpoint.config.get("dataset", {})
    if dataset.get("kind") == "points":
        return evaluate_points(samples, dataset["name"], seed=seed)
    metrics = evaluate_samples(samples, seed=seed)
    if labels is not None:
        metrics["label_accuracy"] = float((predict_logits(samples).argmax(1) == labels).float().mean())
    return metrics


def measure(checkpoint: Checkpoint, n: int, seed: int, pictures: Path) -> list[Row]:
    directory = checkpoint.directory
    x_T = draw_noise((n, *checkpoint.sample_shape), torch.Generator().manual_seed(seed), "cpu", torch.float32)
    labels = requested_labels(checkpoint, n)
    plain_guidance = 1.0 if labels is not None else None
    plan = [("ddpm", checkpoint.schedule.num_timesteps, 1.0, plain_guidance)]
    plan += [("ddim", steps, eta, plain_guidance) for eta in ETAS for steps in DDIM_STEPS]
    if labels is not None:
        plan += [("ddim", GUIDANCE_STEPS, 0.0, g) for g in GUIDANCE_SCALES if g != 1.0]
    rows = []
    for kind, steps, eta, guidance in plan:
        samples, seconds = draw(checkpoint, x_T, kind, steps, eta, labels, guidance or 1.0, seed)
        metrics = score(checkpoint, samples, labels, seed)
        row = Row(kind.upper(), steps, None if kind == "ddpm" else eta, guidance, seconds, metrics)
        rows.append(row)
        print(f"{directory.name}: {describe(row)}", flush=True)
        if kind == "ddim" and steps == GUIDANCE_STEPS and eta == 0.0 and guidance in (None, 1.0) and samples.ndim == 4:
            save_images(samples[:GRID_IMAGES], pictures / f"sampler_{directory.name}.png")
    return rows


def describe(row: Row) -> str:
    parts = [f"{row.sampler}-{row.steps}"]
    if row.eta is not None:
        parts.append(f"eta {row.eta:g}")
    if row.guidance is not None:
        parts.append(f"guidance {row.guidance:g}")
    values = ", ".join(f"{k} {v:.3g}" for k, v in row.metrics.items() if isinstance(v, float))
    return f"{' '.join(parts)}: {row.seconds:.1f} s, {values}"


def digit_table(rows: Sequence[Row], floor: float, n: int) -> list[str]:
    conditional = rows[0].guidance is not None
    columns = ["sampler", "steps (NFE)", "eta", *(["guidance"] if conditional else []), f"wall s ({n} samples)"]
    columns += ["FD", "FD / floor", "confident", "entropy", *(["label accuracy"] if conditional else [])]
    lines = ["| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
    for row in rows:
        m = row.metrics
        cells = [row.sampler, str(row.nfe), "-" if row.eta is None else f"{row.eta:g}"]
        cells += [f"{row.guidance:g}"] if conditional else []
        cells += [f"{row.seconds:.1f}", f"{m['fd']:.1f}", f"{m['fd'] / floor:.2f}"]
        cells += [f"{m['confident_fraction']:.2f}", f"{m['class_entropy']:.2f}"]
        cells += [f"{m['label_accuracy']:.3f}"] if conditional else []
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def points_table(rows: Sequence[Row], n: int) -> list[str]:
    lines = [
        f"| sampler | steps (NFE) | eta | wall s ({n} samples) | sliced W2 | real floor | ratio "
        "| nearest-neighbour distance | real floor | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        m = row.metrics
        eta = "-" if row.eta is None else f"{row.eta:g}"
        lines.append(
            f"| {row.sampler} | {row.nfe} | {eta} | {row.seconds:.2f} | {m['sliced_wasserstein']:.4f} | "
            f"{m['sw_real_floor']:.4f} | {m['sliced_wasserstein'] / m['sw_real_floor']:.2f} | "
            f"{m['nn_distance']:.4f} | {m['nn_real_floor']:.4f} | {m['nn_distance'] / m['nn_real_floor']:.2f} |"
        )
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", nargs="+", type=Path, default=None, help="default: assets/checkpoints/*")
    parser.add_argument("--n", type=int, default=500, help="samples per row (default 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=RESULTS_PATH)
    parser.add_argument("--pictures", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-write", action="store_true", help="print only; pictures go to a temporary folder")
    args = parser.parse_args(argv)
    if args.n < 10:
        parser.error("--n must be at least 10")
    if args.checkpoints is None:
        args.checkpoints = sorted(p.parent for p in CHECKPOINTS_DIR.glob("*/config.json"))
        if not args.checkpoints:
            parser.error(f"no checkpoints in {CHECKPOINTS_DIR}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    threads = available_cores()
    torch.set_num_threads(threads)
    machine = machine_description(threads)
    warning = busy_warning()
    pictures = Path(tempfile.mkdtemp(prefix="samplers_")) if args.no_write else args.pictures
    pictures.mkdir(parents=True, exist_ok=True)
    floor = real_floor(args.n, seed=args.seed)
    lines = section_header(SECTION_HEADING, machine, command_line(__file__, argv), warning)
    lines += [
        f"Each row: {args.n} samples from one fixed x_T (seed {args.seed}), x0 clipped to [-1, 1], the EMA weights "
        "of the shipped checkpoint; wall seconds for all of them on this machine. Digits are scored by "
        f"core.metrics.evaluate_samples against {args.n} held-out digits (real-vs-real FD floor at n = {args.n}: "
        f"{floor:.1f}); a class-conditional model is asked for the labels 0..9 in turn, and its label accuracy is "
        "the reference classifier's agreement with the requested label. Toy sets: sliced Wasserstein-2 distance to "
        "held-out points and the mean distance from each sample to its nearest held-out point, each with its "
        "real-vs-real floor at the same n.",
        "",
    ]
    series: dict[str, list[tuple[float, float]]] = {}
    for directory in args.checkpoints:
        checkpoint = load_checkpoint(directory)  # once per checkpoint
        rows = measure(checkpoint, args.n, args.seed, pictures)
        digits = "fd" in rows[0].metrics
        config = checkpoint.config
        lines += [
            f"### {Path(directory).name}",
            "",
            f"Trained for {config.get('step')} steps ({config['training'].get('preset')}, objective "
            f"{config.get('objective')}, schedule {config['schedule'].get('name')}).",
            "",
        ]
        lines += digit_table(rows, floor, args.n) if digits else points_table(rows, args.n)
        lines.append("")
        if digits:
            for eta in ETAS:
                label = f"{Path(directory).name}, DDIM eta {eta:g}"
                chosen = [r for r in rows if r.eta == eta and r.guidance in (None, 1.0)]
                ddpm = [r for r in rows if r.sampler == "DDPM"]
                series[label] = sorted([(r.nfe, r.metrics["fd"]) for r in chosen + ddpm])
    if series:
        plot = line_chart(
            series,
            pictures / "sampler_fd.png",
            title="FD (log scale) vs network evaluations per sample (log scale); the DDPM point ends each line",
            x_label="steps (NFE)",
            log_x=True,
            reference=("real floor", floor),
        )
        lines += [f"![FD against NFE](results/{plot.name})", ""]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        write_section(SECTION_HEADING, section, args.results)
        print(f"written to {args.results}", file=sys.stderr)


if __name__ == "__main__":
    main()
