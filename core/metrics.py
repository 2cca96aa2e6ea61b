"""Sample-quality metrics of digits, and `score_samples`, the one entry point for digits and 2D points.

Digits are judged with two small MNIST CNNs of core.classifier (in place of Inception, whose ImageNet features suit
32x32 digits poorly), both trained on mnist5k's training split only:

    frechet distance    (Heusel et al. 2017, arXiv:1706.08500; maths in core.distances) between Gaussians fitted to
                        the penultimate features of the feature network (assets/feature_net, trained without outlier
                        exposure) of the samples and of held-out digits
    precision, recall   k-NN manifolds with k = 3 on the same features (Kynkäänniemi et al. 2019,
                        arXiv:1904.06991): are the samples realistic (precision), do they cover the digits (recall)?
    confident_fraction  share of samples the reference classifier (assets/classifier, trained with outlier exposure
                        so that noise and blobs get no confident class) puts in one class with probability >= 0.9
    class_entropy       entropy, in nats, of its histogram of predicted classes (log 10 = all digits equally often)
    floors              the same numbers for real digits against real digits at the same n (`real_scores`)

Why two networks. The reference classifier was trained with outlier exposure (core.classifier), so everything it sees
as no digit collapses onto nearly one point of its feature space: on its features FD sat near 1,620-1,690 for
Gaussian noise, blank pictures, digits on grey and 2-px blur alike and could not rank early, failing models. Measured
before choosing (exploratory runs, n = 256 mnist5k training digits per rung against 256 held-out digits; real /
blur 1, 1.5, 2 px / grey digits / noise / blank / salt and pepper 5, 10, 20, 40%):

    reference classifier, penultimate (old) 33 / 597, 1407, 1640 / 1675 / 1675 / 1675 / 134, 349, 717, 1329
    reference classifier, pooled conv maps  0.11 / 6.4, 13, 17 / 60 / 36 / 19 / 2.3, 5.0, 9.2, 19 (grey > noise)
    11-class network ("no digit" class)     27 / 257, 816, 1303 / 3290 / 1891 / 1556 / 118, 277, 566, 1064 (grey>noise)
    network without outlier exposure        29 / 316, 806, 1123 / 1718 / 7432 / 1568 / 234, 594, 1451, 3270

Only the last, chosen, orders every rung as the ladder of core.calibration demands (it calls noise an "8", sure,
so it is no judge of "is it a digit": confident fraction and class entropy stay with the reference classifier,
which gives Gaussian noise 0% confident). With the shipped weights, on the report split, n = 256 (RESULTS.md
"Metric calibration"): real-vs-real floor 19; real digits 34; blurred 1, 1.5, 2 px 319, 816, 1,161; grey digits
1,679; blank 1,555; Gaussian noise 7,354; salt and pepper 5-40% 200, 539, 1,379, 3,188; the shipped digit models
at n = 500 1.5-2.5x their floor. `plain_reading` turns the scores into one sentence with thresholds calibrated on
that ladder.

Reference split (`REFERENCE_SPLITS`): mnist5k's 1,000 held-out digits (never trained on by the networks nor by the
diffusion models) are split once, per class, by a permutation seeded with SPLIT_SEED: 50 of each digit go to "tune"
(recipe search, model selection) and 50 to "report" (every number the project reports; the default). Samples are
compared with a seeded subset of min(N, 500) digits of the chosen split; the floors compare as many digits of the
other split with that same subset (n > 500: a seeded bootstrap draw of n from the other split's 500).

FD is biased upward and precision/recall downward at small n (Chong & Forsyth 2020, arXiv:1911.07023): compare
values only at equal n, and against the floors, the scores of a perfect generator at that n.
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
from torch import Tensor, nn

from core.classifier import IMAGE_SIZE, NUM_CLASSES, load_feature_network, load_reference_classifier
from core.data import dataset_kind, fit_size, load_dataset
from core.distances import PR_NEIGHBOURS, feature_frechet_distance, precision_recall
from core.point_metrics import evaluate_points, points_reading
from core.toy_data import TOY_DATASET_NAMES

HELDOUT_SIZE = 1000  # mnist5k's held-out split
SPLIT_SIZE = 500  # each of the two reference splits
REFERENCE_SPLITS: tuple[str, ...] = ("report", "tune")
ReferenceSplit = Literal["report", "tune"]
SPLIT_SEED = 13  # the seed of the one permutation per class that splits the held-out digits
DIGIT_DATASETS: tuple[str, ...] = ("mnist5k", "mnist")  # what the networks can judge
EVAL_BATCH = 500
CONFIDENCE = 0.9  # a confident class: top probability >= this


# ---------------------------------------------------------------------------------------------------- features


def as_digit_images(samples: Tensor) -> Tensor:
    """Check a batch of samples [N, 1, H, W] (finite, H == W, N >= 2) and bring it to float32 [N, 1, 32, 32] in
    [-1, 1] on CPU (padding or resizing like core.data; values outside [-1, 1] are clipped, as when saving images)."""
    samples = torch.as_tensor(samples)
    if samples.ndim != 4 or samples.shape[1] != 1 or samples.shape[2] != samples.shape[3]:
        raise ValueError(f"samples must be square 1-channel images [N, 1, H, W], got shape {tuple(samples.shape)}")
    if samples.shape[0] == 0:
        raise ValueError("samples is empty")
    if samples.shape[0] < 2:
        raise ValueError("need at least 2 samples to score (a Fréchet distance needs a covariance), got 1")
    samples = samples.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(samples).all()):
        raise ValueError("samples contain NaN or inf (did the model diverge?)")
    return fit_size(samples.clamp(-1, 1), IMAGE_SIZE)


@torch.no_grad()
def _run(network: nn.Module, images: Tensor, head: bool) -> Tensor:
    outputs = []
    for first in range(0, len(images), EVAL_BATCH):
        features = network.features(images[first : first + EVAL_BATCH])
        outputs.append(network.head(features) if head else features)
    return torch.cat(outputs).double()


def digit_features(images: Tensor, network: nn.Module | None = None) -> Tensor:
    """Features for FD and precision/recall, float64 [N, feature_dim], of images [N, 1, H, W] in [-1, 1]: the
    penultimate layer of the feature network (default: the shipped one)."""
    return _run(network or load_feature_network(), as_digit_images(images), head=False)


def classifier_features(images: Tensor, classifier: nn.Module | None = None) -> Tensor:
    """The reference classifier's penultimate features, float64 [N, feature_dim] (collapse for non-digits)."""
    return _run(classifier or load_reference_classifier(), as_digit_images(images), head=False)


def predict_logits(images: Tensor, classifier: nn.Module | None = None) -> Tensor:
    """The reference classifier's class logits, float64 [N, 10]."""
    return _run(classifier or load_reference_classifier(), as_digit_images(images), head=True)


# ---------------------------------------------------------------------------------------------------- references


def check_reference_split(split: str) -> None:
    if split not in REFERENCE_SPLITS:
        raise ValueError(f"unknown reference split {split!r}; choose one of {', '.join(REFERENCE_SPLITS)}")


@functools.lru_cache(maxsize=1)
def reference_split_rows() -> dict[str, Tensor]:
    """Rows of mnist5k's held-out split in each reference split: per class, a permutation seeded with SPLIT_SEED;
    its first half is "tune", its second "report" (500 rows each, 50 per digit, sorted)."""
    labels = load_dataset("mnist5k", split="test", image_size=IMAGE_SIZE).labels
    assert labels is not None
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    tune, report = [], []
    for digit in range(NUM_CLASSES):
        rows = torch.nonzero(labels == digit)[:, 0]
        rows = rows[torch.randperm(len(rows), generator=generator)]
        tune.append(rows[: len(rows) // 2])
        report.append(rows[len(rows) // 2 :])
    return {"tune": torch.cat(tune).sort().values, "report": torch.cat(report).sort().values}


def reference_images(split: ReferenceSplit = "report") -> Tensor:
    """The 500 held-out digits of a reference split, [500, 1, 32, 32] in [-1, 1]."""
    check_reference_split(split)
    heldout = load_dataset("mnist5k", split="test", image_size=IMAGE_SIZE)
    return heldout.images[reference_split_rows()[split]]


@functools.lru_cache(maxsize=2)
def reference_features(split: ReferenceSplit = "report") -> Tensor:
    """digit_features of a reference split's 500 digits, computed once (do not modify)."""
    return digit_features(reference_images(split))


def _reference_rows(count: int, seed: int) -> Tensor:
    """The reference subset: a seeded random choice of rows of a split (sorted by label: never take the first n)."""
    if not 2 <= count <= SPLIT_SIZE:
        raise ValueError(f"n_reference must be in 2..{SPLIT_SIZE}, got {count}")
    return torch.randperm(SPLIT_SIZE, generator=torch.Generator().manual_seed(seed))[:count]


def _neighbours(n: int, n_reference: int) -> int:
    return min(PR_NEIGHBOURS, n - 1, n_reference - 1)  # k = 3, fewer for 2 or 3 samples


@functools.lru_cache(maxsize=64)
def real_scores(n: int, seed: int = 0, split: ReferenceSplit = "report", n_reference: int | None = None) -> dict:
    """FD, precision and recall of n real digits of the other split against the reference subset that
    `evaluate_samples` uses for n samples with this seed and split: what a perfect generator scores at n.
    n <= 500: a seeded random choice of n of the other split's digits; n > 500: a seeded bootstrap draw (with
    replacement). Returns {"fd", "precision", "recall"} (cached; do not modify)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    check_reference_split(split)
    n_reference = n_reference or min(n, SPLIT_SIZE)
    reference = reference_features(split)[_reference_rows(n_reference, seed)]
    other = reference_features("tune" if split == "report" else "report")
    generator = torch.Generator().manual_seed(seed + 1)
    if n <= SPLIT_SIZE:
        rows = torch.randperm(SPLIT_SIZE, generator=generator)[:n]
    else:
        rows = torch.randint(SPLIT_SIZE, (n,), generator=generator)
    precision, recall = precision_recall(reference, other[rows], _neighbours(n, n_reference))
    return {"fd": feature_frechet_distance(other[rows], reference), "precision": precision, "recall": recall}


def real_floor(n: int, seed: int = 0, split: ReferenceSplit = "report") -> float:
    """FD of n real digits against the reference subset at n (see `real_scores`): a perfect generator's FD."""
    return real_scores(n, seed, split)["fd"]


# ---------------------------------------------------------------------------------------------------- scores


def _histogram(logits: Tensor) -> Tensor:
    return torch.bincount(logits.argmax(1), minlength=NUM_CLASSES)


def _entropy(histogram: Tensor) -> float:
    p = histogram.double() / histogram.sum()
    p = p[p > 0]
    return float(-(p * p.log()).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def _confident(logits: Tensor, threshold: float) -> float:
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    return float((logits.softmax(1).amax(1) >= threshold).double().mean())


def confident_fraction(samples: Tensor, threshold: float = CONFIDENCE) -> float:
    """Share of samples the reference classifier assigns to one digit with probability >= threshold."""
    return _confident(predict_logits(samples), threshold)


def class_entropy(samples: Tensor) -> float:
    """Entropy (nats) of the predicted-class histogram: log(10) = 2.303 when all ten digits are equally frequent,
    0 when every sample is the same digit."""
    return _entropy(_histogram(predict_logits(samples)))


def frechet_distance(samples: Tensor, reference: Tensor | None = None) -> float:
    """FD between the feature network's features of samples [N, 1, H, W] and of reference images (default: all
    500 digits of the "report" split)."""
    reference_set = reference_features("report") if reference is None else digit_features(reference)
    return feature_frechet_distance(digit_features(samples), reference_set)


def evaluate_samples(
    samples: Tensor,
    *,
    n_reference: int | None = None,
    seed: int = 0,
    threshold: float = CONFIDENCE,
    split: ReferenceSplit = "report",
) -> dict:
    """The digit metrics of samples [N, 1, H, W] in [-1, 1] (N >= 2, finite; else ValueError).

    The reference is a seeded random subset of n_reference digits of `split` (default min(N, 500): the same count
    as the samples, so the numbers compare with `real_scores(N, seed, split)`). Returns {"fd", "precision",
    "recall", "confident_fraction", "class_entropy", "class_histogram" (counts per digit 0-9), "n", "split"}."""
    check_reference_split(split)
    images = as_digit_images(samples)
    features = digit_features(images)
    logits = predict_logits(images)
    n, n_reference = len(images), n_reference or min(len(images), SPLIT_SIZE)
    reference = reference_features(split)[_reference_rows(n_reference, seed)]
    precision, recall = precision_recall(reference, features, _neighbours(n, n_reference))
    histogram = _histogram(logits)
    return {
        "fd": feature_frechet_distance(features, reference),
        "precision": precision,
        "recall": recall,
        "confident_fraction": _confident(logits, threshold),
        "class_entropy": _entropy(histogram),
        "class_histogram": [int(c) for c in histogram],
        "n": n,
        "split": split,
    }


# ---------------------------------------------------------------------------------------------------- readings

# Thresholds of the plain reading, calibrated on the ladder of benchmarks/RESULTS.md "Metric calibration" (n = 256,
# floor 19): real digits FD 34 (1.8x the floor; 0.7-1.8x over ladder seeds 0-4), 100% confident; the shipped models
# 1.5-2.5x at n = 500, >= 91% confident; blurred 1 px 319 and salt and pepper 5% 200, >= 85% confident; salt and
# pepper 20% 47% confident; blurred 1.5 and 2 px, grey digits, blank: < 1% confident, FD 800-1,700; Gaussian noise
# 7,350 and salt and pepper 40% 3,190. The FD of bad samples hardly depends on n, but the floor grows as n shrinks
# (FD's bias), so the bad end uses the FD's excess over its floor, the good end its ratio to the floor.
MIN_FINE_N = 100  # fewer samples: FD cannot tell slightly damaged digits from real ones
AS_REAL_RATIO = 3.0  # fd at most this x its floor ...
AS_REAL_CONFIDENT = 0.8  # ... and this share confident: "as good as real digits"
DAMAGED_EXCESS = 100.0  # fd - floor above this: visibly damaged digits
DIGIT_LIKE_CONFIDENT = 0.5  # below: most pictures are no clear digit
SOME_CONFIDENT = 0.1  # below: (almost) none is
NOISE_EXCESS = 2400.0  # fd - floor above this with (almost) no digit: noise
FEW_KINDS_ENTROPY = 1.8  # nats; log 10 = 2.30 for all ten digits equally often, 1.79 for six
LOW_RECALL = 0.5  # recall below this x its floor: the samples cover too little of the digits' variety


def plain_reading(scores: dict) -> str:
    """One plain sentence for `score_samples`' scores (digits or, with "kind": "points", 2D points); the app and
    `python -m core evaluate` show it. Digits: from the FD's excess over its floor and ratio to it, the confident
    fraction, the class entropy and the recall, with the thresholds above."""
    if scores.get("kind") == "points":
        return points_reading(scores)
    fd, floor, confident = scores["fd"], scores["fd_real_floor"], scores["confident_fraction"]
    if confident < SOME_CONFIDENT:
        if fd - floor > NOISE_EXCESS:
            return "mostly noise: no digits yet"
        return "blank, faint or blurry pictures: no readable digits yet"
    if confident < DIGIT_LIKE_CONFIDENT:
        return "some digits, but most pictures are unclear shapes"
    if scores["class_entropy"] < FEW_KINDS_ENTROPY:
        return "clear digits, but only a few kinds of them"
    if fd - floor > DAMAGED_EXCESS:
        return "digit-like but blurry or speckled"
    if scores["n"] < MIN_FINE_N:
        return f"mostly clear digits ({scores['n']} samples are too few to compare them finely with real ones)"
    if fd <= AS_REAL_RATIO * floor and confident >= AS_REAL_CONFIDENT:
        if scores["recall"] < LOW_RECALL * scores["recall_real_floor"]:
            return "realistic digits, but less varied than real ones"
        return "as good as real digits"
    return "close to real digits, slightly off"


def has_metric(dataset: str) -> bool:
    """Whether `score_samples` can score samples of `dataset`: the digits and the 2D toy sets (False for any other
    name, known or not)."""
    return dataset in DIGIT_DATASETS or dataset in TOY_DATASET_NAMES


def score_samples(samples: Tensor, dataset: str, *, seed: int = 0, split: ReferenceSplit = "report") -> dict:
    """Score a model's samples of `dataset`, with their real-vs-real floors and a plain reading (JSON-ready).

    Digits (dataset in DIGIT_DATASETS; samples [N, 1, H, W] in [-1, 1]): `evaluate_samples` plus "fd_real_floor",
    "precision_real_floor", "recall_real_floor" (`real_scores` at that N), "kind": "digits", "dataset" and
    "reading" (`plain_reading`). 2D toy sets (samples [N, 2]): core.point_metrics.evaluate_points ("sliced_wasserstein",
    "sw_real_floor", "nn_distance", "nn_real_floor", "n") plus "kind": "points", "dataset" and "reading".
    `split` (digits only) chooses the reference digits: "report" (default) or "tune". N >= 2 and finite values,
    else ValueError; other image sets are refused with a ValueError, as the networks only know digits."""
    kind = dataset_kind(dataset)  # a name core.data does not know: "unknown dataset ..."
    if not has_metric(dataset):
        raise ValueError(f"no quality metric for {dataset!r}: digits ({', '.join(DIGIT_DATASETS)}) or 2D toy sets")
    if kind == "points":
        scores = {**evaluate_points(samples, dataset, seed=seed), "kind": "points", "dataset": dataset}
        return {**scores, "reading": points_reading(scores)}
    scores = evaluate_samples(samples, seed=seed, split=split)
    floor = real_scores(scores["n"], seed, split)
    scores.update(
        fd_real_floor=floor["fd"],
        precision_real_floor=floor["precision"],
        recall_real_floor=floor["recall"],
        kind="digits",
        dataset=dataset,
    )
    return {**scores, "reading": plain_reading(scores)}
