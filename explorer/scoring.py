"""The Sample tab's "Score these samples": core.metrics.score_samples on the last run's finished samples, shown as
one plain sentence, a table of every number beside what real data scores at the same count (its floor), and, for
digits, the histogram of the digits the reference classifier reads.

The numbers (core/metrics.py's module docstring has their definitions and calibration):
- digits: the Fréchet distance (FD) of the feature network's features against real held-out digits, with the
  real-vs-real FD at the same n as its floor; precision (the share of samples that look like some real digit) and
  recall (the share of real digits' variety the samples cover), Kynkäänniemi et al. 2019, with their floors; the
  share of samples the classifier reads as one digit with confidence; the class histogram;
- 2D toy sets: the nearest-neighbour distance to held-out points and the sliced 2-Wasserstein distance, each with
  the same distance between two real draws as its floor.
"""

from __future__ import annotations

from torch import Tensor

from core.metrics import has_metric, score_samples

NOT_SCORABLE = "Only the digit models and the 2D toy sets can be scored (the metric's networks know only digits)."


def score(samples: Tensor, dataset: str) -> dict:
    """score_samples on the CPU, with a message a student understands for data sets without a metric."""
    if not has_metric(dataset):
        raise ValueError(f"{NOT_SCORABLE} This model was trained on {repr(dataset) if dataset else 'data of its own'}.")
    return score_samples(samples.detach().float().cpu(), dataset)


def _row(name: str, meaning: str, value: float, floor: float | None, digits: int = 2) -> str:
    floor_cell = "" if floor is None else f"{floor:.{digits}f}"
    return f"| {name} | {value:.{digits}f} | {floor_cell} | {meaning} |"


def score_markdown(scores: dict) -> str:
    """The reading in bold, then a table: each number, its real-vs-real floor at the same n, what it means."""
    lines = [
        f"**{scores['reading'][0].upper() + scores['reading'][1:]}.** ({scores['n']} samples of {scores['dataset']})",
        "",
        "| measure | these samples | real data (floor) | what it tells |",
        "|---|---:|---:|---|",
    ]
    if scores["kind"] == "points":
        lines += [
            _row(
                "nearest-neighbour distance",
                "how far points sit from the data: lower is better",
                scores["nn_distance"],
                scores["nn_real_floor"],
                3,
            ),
            _row(
                "sliced W2",
                "how differently the points are spread: lower is better",
                scores["sliced_wasserstein"],
                scores["sw_real_floor"],
                3,
            ),
        ]
        return "\n".join(lines)
    lines += [
        _row("FD", "how far from real digits, all in all: lower is better", scores["fd"], scores["fd_real_floor"], 1),
        _row(
            "precision",
            "share of samples that look like some real digit",
            scores["precision"],
            scores["precision_real_floor"],
        ),
        _row(
            "recall", "share of real digits' variety the samples cover", scores["recall"], scores["recall_real_floor"]
        ),
        _row("confident", "share read as one digit with confidence", scores["confident_fraction"], None),
        _row("class entropy", "how evenly the ten digits appear (2.30 = all equally)", scores["class_entropy"], None),
    ]
    return "\n".join(lines)
