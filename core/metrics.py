"""A reference digit classifier and sample-quality metrics built on it; a distance between 2D point sets.

The metrics follow the Fréchet Inception Distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update
Rule Converge to a Local Nash Equilibrium", arXiv:1706.08500) and the Inception Score's two ingredients
(Salimans et al. 2016, arXiv:1606.03498: confident predictions per sample, a spread of classes over the batch),
with a small MNIST CNN in place of Inception (whose ImageNet features suit 32x32 digits poorly). The classifier is
trained by this project on mnist5k's training split only (`assets/train_classifier.py`); the 1,000 held-out digits
are the real reference and are never trained on. It is also shown synthetic non-digits (noise, blobs) with a
uniform target, "outlier exposure" (Hendrycks, Mazeika & Dietterich 2019, arXiv:1812.04606): a plain MNIST
classifier calls Gaussian noise an "8" with probability > 0.9, which would make `confident_fraction` meaningless
for bad samples.

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
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from core.checkpoint import CONFIG_FILE, MODEL_FILE, named_weight_file, save_checkpoint
from core.data import ASSETS, dataset_kind, fit_size, load_dataset

log = logging.getLogger(__name__)

CLASSIFIER_DIR = ASSETS / "classifier"
CLASSIFIER_KIND = "reference-digit-classifier"
IMAGE_SIZE = 32
NUM_CLASSES = 10
HELDOUT_SIZE = 1000  # mnist5k's held-out split
DIGIT_DATASETS: tuple[str, ...] = ("mnist5k", "mnist")  # what the reference classifier can judge
EVAL_BATCH = 500


class DigitClassifier(nn.Module):
    """A small VGG-style CNN for 1x32x32 digits in [-1, 1].

    (conv3x3-BN-ReLU) x c0, pool -> x2 at c1, pool -> x2 at c2, pool -> flatten (c2 x 4 x 4)
    -> linear -> ReLU = features (feature_dim) -> dropout -> linear -> 10 logits
    """

    def __init__(self, channels: tuple[int, int, int] = (16, 32, 64), feature_dim: int = 64, dropout: float = 0.2):
        super().__init__()
        c0, c1, c2 = channels
        self.channels = (c0, c1, c2)
        self.feature_dim = feature_dim
        self.dropout = dropout

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.body = nn.Sequential(
            *block(1, c0),
            nn.MaxPool2d(2),  # (B, c0, 16, 16)
            *block(c0, c1),
            *block(c1, c1),
            nn.MaxPool2d(2),  # (B, c1, 8, 8)
            *block(c1, c2),
            *block(c2, c2),
            nn.MaxPool2d(2),  # (B, c2, 4, 4)
            nn.Flatten(),
            nn.Linear(c2 * 16, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, NUM_CLASSES))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (B, feature_dim) of images (B, 1, 32, 32) in [-1, 1]."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (B, 10)."""
        return self.head(self.body(x))

    @property
    def config(self) -> dict:
        """A JSON-ready dict that rebuilds this model with `DigitClassifier.from_config`."""
        return {
            "type": "digit_classifier",
            "channels": list(self.channels),
            "feature_dim": self.feature_dim,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config(cls, config: dict) -> DigitClassifier:
        if config.get("type") != "digit_classifier":
            raise ValueError(f"not a digit_classifier config: type {config.get('type')!r}")
        return cls(tuple(config["channels"]), int(config["feature_dim"]), float(config["dropout"]))


# ---------------------------------------------------------------------------------------------------- training


@dataclass
class ClassifierTraining:
    """What `train_classifier` returns: the model (eval mode, on CPU) and how it was made."""

    model: DigitClassifier
    heldout_accuracy: float  # on mnist5k's 1,000 held-out digits, never used for training or model selection
    train_accuracy: float  # on the (unaugmented) training split
    train_seconds: float
    settings: dict = field(default_factory=dict)  # seed, epochs, optimizer and augmentation settings


def augment(images: Tensor, generator: torch.Generator, max_shift: float = 2.0, max_degrees: float = 10.0) -> Tensor:
    """Random affine jitter per image: shift by up to +-max_shift pixels, rotate by up to +-max_degrees, scale
    by 0.9..1.1; the background (-1) fills what moves in. All randomness from `generator` (a CPU generator)."""
    batch, size = images.shape[0], images.shape[-1]

    def uniform(low: float, high: float) -> Tensor:
        return (low + (high - low) * torch.rand(batch, generator=generator, dtype=torch.float64)).float()

    angle = uniform(-max_degrees, max_degrees) * (math.pi / 180)
    scale = uniform(0.9, 1.1)
    shift = torch.stack([uniform(-max_shift, max_shift), uniform(-max_shift, max_shift)], 1) * (2 / size)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)  # (B, 2, 2)
    theta = torch.cat([theta, shift[:, :, None]], 2).to(images.device)  # (B, 2, 3): output -> input coordinates
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


def synthetic_outliers(count: int, generator: torch.Generator, size: int = IMAGE_SIZE) -> Tensor:
    """Images that are no digit, for outlier exposure: in equal shares, Gaussian noise (random mean and std),
    uniform noise, and smooth random blobs (4x4 or 8x8 noise upsampled and squashed, like the blurry shapes of an
    undertrained diffusion model). [count, 1, size, size] in [-1, 1]."""

    def rand(*shape: int) -> Tensor:
        return torch.rand(shape, generator=generator)

    gaussian = (
        -rand(count, 1, 1, 1)
        + (0.2 + 0.8 * rand(count, 1, 1, 1)) * torch.randn((count, 1, size, size), generator=generator)
    ).clamp(-1, 1)
    uniform = 2 * rand(count, 1, size, size) - 1
    blobs = []
    for resolution in (4, 8):
        low = torch.randn((count, 1, resolution, resolution), generator=generator)
        smooth = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
        blobs.append(torch.tanh((1 + 2 * rand(count, 1, 1, 1)) * (smooth - 1.5 * rand(count, 1, 1, 1))))
    kind = torch.randint(4, (count, 1, 1, 1), generator=generator)
    choices = torch.stack([gaussian, uniform, *blobs])  # (4, count, 1, size, size)
    return choices.gather(0, kind[None].expand(1, count, 1, size, size))[0]


@torch.no_grad()
def accuracy(classifier: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Share of images whose top predicted class equals the label."""
    predictions = predict_logits(images, classifier).argmax(1)
    return float((predictions == labels.cpu()).double().mean())


def train_classifier(
    *,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 5e-4,
    seed: int = 0,
    device: str | torch.device = "cpu",
    limit: int | None = None,
    augmentation: bool = True,
    outlier_weight: float = 0.5,
) -> ClassifierTraining:
    """Train a `DigitClassifier` on mnist5k's training split (4,000 digits; `limit` keeps a seeded random
    subset, for quick tests) with AdamW, one-cycle learning rate and affine augmentation, plus outlier exposure
    (Hendrycks et al. 2019): each batch also holds half as many `synthetic_outliers`, trained towards the uniform
    class distribution with weight `outlier_weight`, so that noise and blobs are not classified confidently (a
    plain classifier calls Gaussian noise an "8" with probability > 0.9). Seeded: the same seed,
    device and thread count give the same weights. The held-out split is only used to report the accuracy at the
    end (there is no early stopping or model selection on it)."""
    device = torch.device(device)
    train = load_dataset("mnist5k", split="train", image_size=IMAGE_SIZE)
    generator = torch.Generator().manual_seed(seed)
    images, labels = train.images, train.labels
    assert labels is not None
    if limit is not None:
        keep = torch.randperm(len(train), generator=generator)[:limit]
        images, labels = images[keep], labels[keep]
    settings = {
        "dataset": "mnist5k",
        "split": "train",
        "n_train": len(images),
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer": "AdamW",
        "lr": lr,
        "lr_schedule": "one-cycle (cosine)",
        "weight_decay": weight_decay,
        "augmentation": "affine: shift +-2 px, rotation +-10 deg, scale 0.9-1.1" if augmentation else "none",
        "outlier_exposure": f"synthetic_outliers, half a batch, uniform target, weight {outlier_weight}",
        "seed": seed,
        "device": str(device),
        "torch_version": torch.__version__,
    }
    start = time.perf_counter()
    # the module initialisation and dropout draw from the global RNG: seed it in a fork, leaving the caller's alone
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        model = DigitClassifier().to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        steps_per_epoch = -(-len(images) // batch_size)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.2
        )
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(len(images), generator=generator)
            total = 0.0
            for first in range(0, len(images), batch_size):
                rows = order[first : first + batch_size]
                x = augment(images[rows], generator) if augmentation else images[rows]
                if outlier_weight > 0:
                    x = torch.cat([x, synthetic_outliers(max(len(rows) // 2, 1), generator)])
                logits = model(x.to(device))
                loss = F.cross_entropy(logits[: len(rows)], labels[rows].to(device))
                if outlier_weight > 0:  # cross-entropy against the uniform distribution (>= log 10)
                    loss = loss + outlier_weight * -logits[len(rows) :].log_softmax(1).mean(1).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += float(loss.detach()) * len(rows)
            log.info("epoch %d/%d: loss %.4f", epoch + 1, epochs, total / len(images))
    seconds = time.perf_counter() - start
    model = model.cpu().eval().requires_grad_(False)
    heldout = load_dataset("mnist5k", split="test", image_size=IMAGE_SIZE)
    assert heldout.labels is not None
    return ClassifierTraining(
        model,
        heldout_accuracy=accuracy(model, heldout.images, heldout.labels),
        train_accuracy=accuracy(model, images, labels),
        train_seconds=seconds,
        settings=settings,
    )


def save_classifier(trained: ClassifierTraining, directory: str | Path = CLASSIFIER_DIR) -> Path:
    """Write the weights + config.json atomically (core.checkpoint.save_checkpoint): the architecture,
    the training settings, the held-out accuracy and the package version."""
    config = {
        "kind": CLASSIFIER_KIND,
        "heldout_accuracy": trained.heldout_accuracy,
        "train_accuracy": trained.train_accuracy,
        "train_seconds": round(trained.train_seconds, 1),
        "training": trained.settings,
    }
    return save_checkpoint(directory, trained.model, config)


def load_classifier(directory: str | Path = CLASSIFIER_DIR) -> DigitClassifier:
    """A classifier saved by `save_classifier`, checked against its recorded hash, in eval mode on CPU."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    name = named_weight_file(config, MODEL_FILE) if "files" in config else None
    weights_path = directory / (name or MODEL_FILE)
    if name is None or not weights_path.is_file():
        raise FileNotFoundError(
            f"no classifier in {directory}; train it with python assets/train_classifier.py (needs "
            f"{CONFIG_FILE} and the model weights it names)"
        )
    if config.get("kind") != CLASSIFIER_KIND:
        raise ValueError(f"{config_path} is not a {CLASSIFIER_KIND} config")
    if hashlib.sha256(weights_path.read_bytes()).hexdigest() != config["files"][name]:
        raise ValueError(f"{weights_path} does not match {config_path} (a different or damaged file)")
    model = DigitClassifier.from_config(config["model"])
    model.load_state_dict(load_file(str(weights_path)))
    return model.eval().requires_grad_(False)


@functools.lru_cache(maxsize=1)
def load_reference_classifier() -> DigitClassifier:
    """The shipped classifier (assets/classifier), loaded once and shared: do not modify it."""
    return load_classifier(CLASSIFIER_DIR)


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
