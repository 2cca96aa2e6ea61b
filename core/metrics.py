"""Sample-quality metrics: for digits, on the features of core.classifier's reference classifier; for 2D points.

The metrics follow the Fréchet Inception Distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update
Rule Converge to a Local Nash Equilibrium", arXiv:1706.08500) and the Inception Score's two ingredients
(Salimans et al. 2016, arXiv:1606.03498: confident predictions per sample, a spread of classes over the batch),
with the small MNIST CNN of core.classifier in place of Inception (whose ImageNet features suit 32x32 digits poorly),
trained on mnist5k's training split only, with outlier exposure so that noise and blobs get no confident class. The
1,000 held-out digits are the real reference and are never trained on.

    frechet_distance    ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)) between Gaussians fitted to the
                        classifier's penultimate features of two image sets (float64; the trace of the matrix
                        square root is computed as Tr((S_1^(1/2) S_2 S_1^(1/2))^(1/2)) from the eigenvalues of a
                        symmetric PSD matrix, which is stable where scipy.linalg.sqrtm of S_1 S_2 is not)
    confident_fraction  share of samples whose top class probability is >= a threshold (is it a clear digit?)
    class_entropy       entropy, in nats, of the histogram of predicted classes (log 10 = all digits equally often)
    real_floor          the FD of real held-out digits against other real held-out digits at the same n

FD is biased upward at small n (Chong & Forsyth 2020, arXiv:1911.07023): compare values only at equal n, and
against `real_floor(n)`, the score of a perfect generator at that n. The floor itself varies with the draw (with the
shipped weights, n = 500: 8 to 19 over seeds 0-4; n = 1000: 5 to 10), so differences of that size are noise.

What the classifier sees as no digit at all (noise, blank images, blobs) it maps to nearly one point in feature space
(a side effect of outlier exposure), so FD saturates for such samples, near 1,680 with the shipped weights (blurred
digits: 580 at a blur of sigma 1 px, 1,400 at 1.5 px; real digits: 15, at n = 500). FD ranks models that draw
digit-like shapes; among failing ones, look at `confident_fraction` and the class histogram.

For 2D toy data, `sliced_wasserstein` is the sliced 2-Wasserstein distance (Rabin et al. 2011; Bonneel et al.
2015): the root mean square, over random directions, of the 1D 2-Wasserstein distance between the projections;
`evaluate_points` compares a model's points with the toy set's held-out points.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from core.classifier import IMAGE_SIZE, NUM_CLASSES, load_reference_classifier
from core.data import dataset_kind, fit_size, load_dataset

HELDOUT_SIZE = 1000  # mnist5k's held-out split
DIGIT_DATASETS: tuple[str, ...] = ("mnist5k", "mnist")  # what the reference classifier can judge
EVAL_BATCH = 500


# ---------------------------------------------------------------------------------------------------- features


def as_digit_images(samples: Tensor) -> Tensor:
    """Check a batch of samples [N, 1, H, W] (finite, H == W) and bring it to float32 [N, 1, 32, 32] in [-1, 1] on
    CPU (padding or resizing like core.data; values outside [-1, 1] are clipped, as when saving images)."""
    samples = torch.as_tensor(samples)
    if samples.ndim != 4 or samples.shape[1] != 1 or samples.shape[2] != samples.shape[3]:
        raise ValueError(f"samples must be square 1-channel images [N, 1, H, W], got shape {tuple(samples.shape)}")
    if samples.shape[0] == 0:
        raise ValueError("samples is empty")
    samples = samples.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(samples).all()):
        raise ValueError("samples contain NaN or inf (did the model diverge?)")
    return fit_size(samples.clamp(-1, 1), IMAGE_SIZE)


@torch.no_grad()
def _outputs(images: Tensor, classifier: nn.Module | None = None) -> tuple[Tensor, Tensor]:
    classifier = classifier if classifier is not None else load_reference_classifier()
    images = as_digit_images(images)
    features, logits = [], []
    for first in range(0, len(images), EVAL_BATCH):
        f = classifier.features(images[first : first + EVAL_BATCH])
        features.append(f)
        logits.append(classifier.head(f))
    return torch.cat(features).double(), torch.cat(logits).double()  # (N, feature_dim), (N, 10)


def classifier_features(images: Tensor, classifier: nn.Module | None = None) -> Tensor:
    """Penultimate features, float64 [N, feature_dim], of images [N, 1, H, W] in [-1, 1]."""
    return _outputs(images, classifier)[0]


def predict_logits(images: Tensor, classifier: nn.Module | None = None) -> Tensor:
    """Class logits, float64 [N, 10]."""
    return _outputs(images, classifier)[1]


@functools.lru_cache(maxsize=1)
def _heldout_outputs() -> tuple[Tensor, Tensor]:
    heldout = load_dataset("mnist5k", split="test", image_size=IMAGE_SIZE)
    return _outputs(heldout.images)


def _heldout_rows(count: int, seed: int) -> Tensor:
    """A seeded random subset of the held-out digits (the split is sorted by label: never take the first n)."""
    if not 1 <= count <= HELDOUT_SIZE:
        raise ValueError(f"n_reference must be in 1..{HELDOUT_SIZE}, got {count}")
    return torch.randperm(HELDOUT_SIZE, generator=torch.Generator().manual_seed(seed))[:count]


# ---------------------------------------------------------------------------------------------------- Fréchet


def fit_gaussian(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean [D] and covariance [D, D] (unbiased, like numpy.cov) of features [N, D], in float64."""
    features = torch.as_tensor(features).double()
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need features [N, D] with N >= 2, got shape {tuple(features.shape)}")
    mean = features.mean(0)
    centered = features - mean
    return mean, centered.T @ centered / (features.shape[0] - 1)


def _psd_sqrt(matrix: Tensor) -> Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix (tiny negative eigenvalues -> 0)."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def gaussian_frechet_distance(mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor) -> float:
    """Fréchet (2-Wasserstein squared) distance between N(mean1, cov1) and N(mean2, cov2), in float64:
    ||m1 - m2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1^(1/2) S2 S1^(1/2))^(1/2)), the last trace equal to Tr((S1 S2)^(1/2))
    (the two matrices are similar) but from the eigenvalues of a symmetric PSD matrix."""
    mean1, mean2, cov1, cov2 = (torch.as_tensor(v).double() for v in (mean1, mean2, cov1, cov2))
    dim = mean1.shape[0]
    if mean1.shape != (dim,) or mean2.shape != (dim,) or cov1.shape != (dim, dim) or cov2.shape != (dim, dim):
        raise ValueError(
            f"shapes do not match: means {tuple(mean1.shape)}, {tuple(mean2.shape)}; "
            f"covariances {tuple(cov1.shape)}, {tuple(cov2.shape)}"
        )
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    diff = mean1 - mean2
    distance = diff @ diff + torch.trace(cov1) + torch.trace(cov2) - 2 * trace_sqrt
    return max(float(distance), 0.0)  # rounding can leave -1e-12 for identical inputs


def feature_frechet_distance(features1: Tensor, features2: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N1, D] and [N2, D]."""
    return gaussian_frechet_distance(*fit_gaussian(features1), *fit_gaussian(features2))


def frechet_distance(samples: Tensor, reference: Tensor | None = None) -> float:
    """FD between the classifier's penultimate features of samples [N, 1, H, W] and of reference images
    (default: all 1,000 held-out mnist5k digits)."""
    reference_features = _heldout_outputs()[0] if reference is None else classifier_features(reference)
    return feature_frechet_distance(classifier_features(samples), reference_features)


def real_floor(n: int, seed: int = 0) -> float:
    """FD of n real held-out digits against n other real held-out digits: what a perfect generator scores at n.

    n <= 500: a seeded random permutation of the 1,000 held-out digits; its first n against its next n (disjoint).
    n > 500: two independent seeded bootstrap draws (with replacement) of n digits each from the 1,000 (too few
    held-out digits for two disjoint sets; the bootstrap mimics sampling the distribution twice).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    features = _heldout_outputs()[0]
    generator = torch.Generator().manual_seed(seed)
    if 2 * n <= HELDOUT_SIZE:
        order = torch.randperm(HELDOUT_SIZE, generator=generator)
        first, second = order[:n], order[n : 2 * n]
    else:
        first = torch.randint(HELDOUT_SIZE, (n,), generator=generator)
        second = torch.randint(HELDOUT_SIZE, (n,), generator=generator)
    return feature_frechet_distance(features[first], features[second])


# ---------------------------------------------------------------------------------------------------- classes


def _confident(logits: Tensor, threshold: float) -> float:
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    return float((logits.softmax(1).amax(1) >= threshold).double().mean())


def _histogram(logits: Tensor) -> Tensor:
    return torch.bincount(logits.argmax(1), minlength=NUM_CLASSES)


def _entropy(histogram: Tensor) -> float:
    p = histogram.double() / histogram.sum()
    p = p[p > 0]
    return float(-(p * p.log()).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def confident_fraction(samples: Tensor, threshold: float = 0.9) -> float:
    """Share of samples the classifier assigns to one digit with probability >= threshold."""
    return _confident(predict_logits(samples), threshold)


def class_entropy(samples: Tensor) -> float:
    """Entropy (nats) of the predicted-class histogram: log(10) = 2.303 when all ten digits are equally frequent,
    0 when every sample is the same digit."""
    return _entropy(_histogram(predict_logits(samples)))


def evaluate_samples(samples: Tensor, *, n_reference: int | None = None, seed: int = 0, threshold: float = 0.9) -> dict:
    """All image metrics of samples [N, 1, H, W] in [-1, 1], from one pass of the classifier.

    The FD reference is a seeded random subset of n_reference held-out digits (default min(N, 1000): the same
    count as the samples, so "fd" is comparable with `real_floor(N)`).
    Returns {"fd", "confident_fraction", "class_entropy", "class_histogram" (counts per digit 0-9), "n"}.
    """
    features, logits = _outputs(samples)
    n = len(features)
    if n < 2:
        raise ValueError("need at least 2 samples for a Fréchet distance")
    reference = _heldout_outputs()[0][_heldout_rows(n_reference or min(n, HELDOUT_SIZE), seed)]
    histogram = _histogram(logits)
    return {
        "fd": feature_frechet_distance(features, reference),
        "confident_fraction": _confident(logits, threshold),
        "class_entropy": _entropy(histogram),
        "class_histogram": [int(c) for c in histogram],
        "n": n,
    }


# ---------------------------------------------------------------------------------------------------- 2D points


def sliced_wasserstein(
    a: Tensor, b: Tensor, n_projections: int = 256, generator: torch.Generator | None = None
) -> float:
    """Sliced 2-Wasserstein distance between point sets a [N, 2] and b [M, 2] (any dimension D works):
    sqrt(mean over random unit directions u of W2^2(a.u, b.u)), in float64. The 1D W2 compares sorted
    projections; for N != M, both empirical quantile functions are read at max(N, M) evenly spaced levels.
    Two samples of one distribution give ~0 (O(1/sqrt(N))); shifting one by d gives ~|d| / sqrt(D)."""
    a, b = torch.as_tensor(a).double().cpu(), torch.as_tensor(b).double().cpu()
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) == 0 or len(b) == 0:
        raise ValueError(f"need point sets [N, D] and [M, D], got {tuple(a.shape)} and {tuple(b.shape)}")
    if not (bool(torch.isfinite(a).all()) and bool(torch.isfinite(b).all())):
        raise ValueError("point sets contain NaN or inf")
    if n_projections < 1:
        raise ValueError(f"n_projections must be >= 1, got {n_projections}")
    directions = torch.randn(a.shape[1], n_projections, generator=generator, dtype=torch.float64)
    directions = directions / directions.norm(dim=0, keepdim=True)  # (D, P) unit columns
    proj_a, proj_b = (a @ directions).sort(0).values, (b @ directions).sort(0).values  # (N, P), (M, P)
    if len(a) != len(b):
        levels = (torch.arange(max(len(a), len(b)), dtype=torch.float64) + 0.5) / max(len(a), len(b))
        proj_a = proj_a[(levels * len(a)).long()]
        proj_b = proj_b[(levels * len(b)).long()]
    return float(((proj_a - proj_b) ** 2).mean().sqrt())


def nearest_neighbour_distance(samples: Tensor, reference: Tensor) -> float:
    """Mean distance from each sample [N, D] to its nearest reference point [M, D] (float64): how far samples
    stray from the data. Sliced W2 compares 1D projections, so it barely notices points filling the gaps of a
    thin, wound shape (a spiral drawn as a disk); this does."""
    a, b = torch.as_tensor(samples).double().cpu(), torch.as_tensor(reference).double().cpu()
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) == 0 or len(b) == 0:
        raise ValueError(f"need point sets [N, D] and [M, D], got {tuple(a.shape)} and {tuple(b.shape)}")
    nearest = torch.cat([torch.cdist(chunk, b).min(1).values for chunk in a.split(4096)])
    return float(nearest.mean())


def evaluate_points(samples: Tensor, dataset: str, *, n_projections: int = 256, seed: int = 0) -> dict:
    """Distances of points [N, D] from a model of the toy set `dataset` to N of its held-out ("test") points,
    each with its floor at that N (the same distance from N other real test points, drawn with seed + 1):
    sliced W2 (the whole distribution; both with the same seeded projections) and the mean nearest-neighbour
    distance (do samples lie on the data?). Returns {"sliced_wasserstein", "sw_real_floor", "nn_distance",
    "nn_real_floor", "n"}."""
    if dataset_kind(dataset) != "points":
        raise ValueError(f"{dataset!r} is not a 2D toy dataset")
    points = torch.as_tensor(samples).detach().double().cpu()
    n = len(points)
    reference = load_dataset(dataset, split="test", n=n, seed=seed).tensor
    other = load_dataset(dataset, split="test", n=n, seed=seed + 1).tensor
    return {
        "sliced_wasserstein": sliced_wasserstein(points, reference, n_projections, torch.Generator().manual_seed(seed)),
        "sw_real_floor": sliced_wasserstein(other, reference, n_projections, torch.Generator().manual_seed(seed)),
        "nn_distance": nearest_neighbour_distance(points, reference),
        "nn_real_floor": nearest_neighbour_distance(other, reference),
        "n": n,
    }
