"""Calibration of the digit metrics (core.metrics): the ladder of damaged digits, the scoring time, the shipped models.

1. The ladder (core.calibration.calibration_ladder): n of mnist5k's training digits (not in the metrics' reference
   splits), blurred, put on grey, salted, and pictures with no digit (Gaussian noise, blank), each scored by
   core.metrics.score_samples against the "report" split, next to the real-vs-real floors at that n and to the
   FD of the old metric (the reference classifier's own features, which collapse for non-digits). The orders the
   ladder demands (core.calibration.ladder_violations) are checked for the ladder seeds 0-4.
2. Timing: score_samples on n digits with warm caches (what the app's "Score these samples" runs), median of runs.
3. The shipped digit checkpoints on the report split at --n-models samples with their recorded sampler settings
   (a conditional model is asked for the labels 0..9 in turn, guidance 1).

Writes its section into benchmarks/RESULTS.md ("## Metric calibration").

    python benchmarks/metric_calibration.py                  # about 1-2 minutes on 2 cores
    python benchmarks/metric_calibration.py --no-models --no-write
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from common import (
    RESULTS_PATH,
    busy_warning,
    command_line,
    machine_description,
    section_header,
    time_calls,
    write_section,
)

from core.calibration import calibration_ladder, ladder_violations
from core.checkpoint import load_checkpoint
from core.classifier import load_reference_classifier
from core.device import available_cores
from core.distances import feature_frechet_distance
from core.metrics import SPLIT_SEED, classifier_features, reference_images, score_samples
from core.sampler_base import draw_noise
from core.samplers import make_sampler, sample

SECTION_HEADING = "## Metric calibration (benchmarks/metric_calibration.py)"
CHECKPOINTS_DIR = Path(__file__).resolve().parents[1] / "assets" / "checkpoints"
MODELS = ("mnist_uncond", "mnist_cond")
LADDER_SEEDS = range(5)


def old_fd(images: torch.Tensor, reference: torch.Tensor) -> float:
    """The FD before issue 13: on the reference classifier's penultimate features."""
    return feature_frechet_distance(classifier_features(images), classifier_features(reference))


def ladder_table(n: int) -> tuple[list[str], dict[str, float]]:
    rungs = calibration_ladder(n, seed=0)
    reference = reference_images("report")[torch.randperm(500, generator=torch.Generator().manual_seed(0))[:n]]
    lines = [
        "| rung | FD | FD / floor | precision | recall | confident | class entropy | reading | old FD |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    fd = {}
    for name, images in rungs.items():
        s = score_samples(images, "mnist5k")
        fd[name] = s["fd"]
        lines.append(
            f"| {name} | {s['fd']:.1f} | {s['fd'] / s['fd_real_floor']:.2f} | {s['precision']:.3f} | "
            f"{s['recall']:.3f} | {s['confident_fraction']:.3f} | {s['class_entropy']:.2f} | {s['reading']} | "
            f"{old_fd(images, reference):.0f} |"
        )
        print(lines[-1], flush=True)
    floor = {k: s[k] for k in ("fd_real_floor", "precision_real_floor", "recall_real_floor")}
    lines.insert(
        2,
        f"| *floor: real digits of the tune split* | {floor['fd_real_floor']:.1f} | 1.00 | "
        f"{floor['precision_real_floor']:.3f} | {floor['recall_real_floor']:.3f} | | | | |",
    )
    return lines, fd


def seeds_summary(n: int) -> list[str]:
    lines = []
    for seed in LADDER_SEEDS:
        fd = {
            name: score_samples(images, "mnist5k", seed=seed)["fd"]
            for name, images in calibration_ladder(n, seed).items()
        }
        broken = ladder_violations(fd)
        holds = "; ".join(broken) or "every order holds"
        lines.append(f"- ladder seed {seed} (and reference subset seed {seed}): {holds}")
        print(lines[-1], flush=True)
    return lines


def timing(n: int) -> tuple[str, list[float]]:
    digits = calibration_ladder(n, seed=1)["real digits"]
    score_samples(digits, "mnist5k")  # warm: networks loaded, reference features and floors cached
    durations = time_calls(lambda: score_samples(digits, "mnist5k"), warmup=2, min_calls=15)
    return f"{statistics.median(durations) * 1000:.0f} ms", durations


def model_rows(n: int) -> list[str]:
    lines = [
        "| checkpoint | sampler | FD | floor | FD / floor | precision (floor) | recall (floor) | confident | "
        "class entropy | reading |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in MODELS:
        checkpoint = load_checkpoint(CHECKPOINTS_DIR / name)
        settings = checkpoint.sampling_defaults
        model = checkpoint.sampling_model.eval()
        sampler = make_sampler(
            settings.sampler, checkpoint.schedule, eta=settings.eta, objective=checkpoint.objective, clip_x0=True
        )
        x_T = draw_noise((n, *checkpoint.sample_shape), torch.Generator().manual_seed(0), "cpu", torch.float32)
        classes = getattr(model, "num_classes", None)
        labels = torch.arange(n) % classes if classes else None
        with torch.no_grad():
            samples = sample(model, sampler, x_T, settings.steps, y=labels, generator=torch.Generator().manual_seed(1))
        s = score_samples(samples, "mnist5k")
        lines.append(
            f"| {name} | {settings.sampler.upper()}-{settings.steps}, eta {settings.eta:g} | {s['fd']:.1f} | "
            f"{s['fd_real_floor']:.1f} | {s['fd'] / s['fd_real_floor']:.2f} | {s['precision']:.3f} "
            f"({s['precision_real_floor']:.3f}) | {s['recall']:.3f} ({s['recall_real_floor']:.3f}) | "
            f"{s['confident_fraction']:.3f} | {s['class_entropy']:.2f} | {s['reading']} |"
        )
        print(lines[-1], flush=True)
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=256, help="images per ladder rung and for the timing (default 256)")
    parser.add_argument("--n-models", type=int, default=500, help="samples per shipped model (default 500)")
    parser.add_argument("--no-models", action="store_true", help="skip the shipped models")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    threads = available_cores()
    torch.set_num_threads(threads)
    load_reference_classifier()
    machine, warning = machine_description(threads), busy_warning()
    lines = section_header(SECTION_HEADING, machine, command_line(__file__, argv), warning)
    lines += [
        "**The digit metric changed here (issue 13).** FD, precision and recall are now computed on the features of "
        "a feature network trained without outlier exposure (assets/feature_net), against the 500 held-out digits "
        f'of the "report" split (split seed {SPLIT_SEED}); the FD values in the sections above were measured with '
        "the old metric (the reference classifier's features, against all 1,000 held-out digits), stay as they "
        "were as a record, and do not compare with these. Confident fraction and class entropy still come from "
        "the reference classifier.",
        "",
        f"### The ladder (n = {args.n} per rung, ladder seed 0)",
        "",
        f"Each rung: {args.n} of mnist5k's training digits, damaged as named, scored by core.metrics.score_samples "
        f"against {args.n} digits of the report split; the floor row is {args.n} real digits of the tune split "
        "against the same reference. Old FD: the reference classifier's penultimate features, same images.",
        "",
    ]
    table, fd = ladder_table(args.n)
    broken = ladder_violations(fd)
    lines += [*table, "", f"Ladder orders (core.calibration.ladder_violations): {'; '.join(broken) or 'all hold'}.", ""]
    lines += ["Other seeds of the ladder:", "", *seeds_summary(args.n), ""]
    median, durations = timing(args.n)
    lines += [
        "### Scoring time",
        "",
        f"score_samples on {args.n} digit samples (FD, precision/recall, confident fraction, class histogram, floors "
        f"and reading; networks loaded and reference features cached), {threads} threads: median **{median}** "
        f"over {len(durations)} runs (min {min(durations) * 1000:.0f} ms, max {max(durations) * 1000:.0f} ms).",
        "",
    ]
    if not args.no_models:
        lines += [
            f"### Shipped digit models on the report split (n = {args.n_models})",
            "",
            "Each checkpoint's recorded sampler settings from one fixed x_T (seed 0); mnist_cond is asked for the "
            "labels 0..9 in turn at guidance 1.",
            "",
            *model_rows(args.n_models),
            "",
        ]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        write_section(SECTION_HEADING, section, args.results)
        print(f"written to {args.results}", file=sys.stderr)


if __name__ == "__main__":
    main()
