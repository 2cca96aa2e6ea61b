"""Sample-quality metrics of 2D toy points: the sliced 2-Wasserstein distance and the nearest-neighbour distance to
the toy set's held-out points, each next to its real-vs-real floor, and their one-line plain reading.

`sliced_wasserstein` is the sliced 2-Wasserstein distance (Rabin et al. 2011; Bonneel et al. 2015): the root mean
square, over random directions, of the 1D 2-Wasserstein distance between the projections. `nearest_neighbour_distance`
is the mean distance from each sample to its nearest reference point (sliced W2 barely notices points filling the
gaps of a thin, wound shape; this does). `evaluate_points` compares a model's points with the toy set's held-out
points; `points_reading` turns the ratios to the floors into a sentence (thresholds in POINT_READINGS).
"""

from __future__ import annotations

import torch
from torch import Tensor

from core.data import dataset_kind, load_dataset

# Thresholds on the ratios to the real-vs-real floors at the same n. A shipped toy model sits at 0.7-1.3x the
# nearest-neighbour floor and 1-3.5x the sliced W2 floor (eight_gaussians' mode weights make W2 noisy; RESULTS.md
# "Sampler quality"); 2D Gaussian noise is far off both (the ladder in tests/test_metric_calibration.py).
ON_SHAPE_NN = 1.5  # nn_distance / floor at most this: the points lie on the data's shape
NEAR_SHAPE_NN = 3.0  # ... at most this: near it, blurred around it
EVEN_SW = 4.0  # sliced_wasserstein / floor at most this: spread over the shape like the data


def as_points(samples: Tensor) -> Tensor:
    """Check a batch of points [N, D] (finite, N >= 2) and bring it to float64 on CPU."""
    points = torch.as_tensor(samples)
    if points.ndim != 2 or points.shape[1] < 1:
        raise ValueError(f"points must be a [N, D] array, got shape {tuple(points.shape)}")
    if points.shape[0] < 2:
        raise ValueError(f"need at least 2 points to score, got {points.shape[0]}")
    points = points.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(points).all()):
        raise ValueError("points contain NaN or inf (did the model diverge?)")
    return points


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
    points = as_points(samples)
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


def points_reading(scores: dict) -> str:
    """One plain sentence for `evaluate_points`' scores, from their ratios to the real floors (ON_SHAPE_NN,
    NEAR_SHAPE_NN, EVEN_SW)."""
    nn = scores["nn_distance"] / max(scores["nn_real_floor"], 1e-12)
    sw = scores["sliced_wasserstein"] / max(scores["sw_real_floor"], 1e-12)
    if nn <= ON_SHAPE_NN:
        if sw <= EVEN_SW:
            return "as good as real points: on the shape and spread over it like the data"
        return "on the shape, but spread unevenly over it (some parts too full, others too empty)"
    if nn <= NEAR_SHAPE_NN:
        return "near the shape, but blurred around it"
    return "mostly noise: points scattered away from the shape"
