"""Distances between two sets of feature vectors: the Fréchet distance of fitted Gaussians and k-NN precision/recall.

    frechet distance   ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)) between Gaussians fitted to two feature
                       sets (Heusel et al. 2017, arXiv:1706.08500), in float64; the trace of the matrix square root is
                       computed as Tr((S_1^(1/2) S_2 S_1^(1/2))^(1/2)) from the eigenvalues of a symmetric PSD matrix,
                       which is stable where scipy.linalg.sqrtm of S_1 S_2 is not
    precision, recall  Kynkäänniemi, Karras, Laine, Lehtinen & Aila 2019, "Improved Precision and Recall Metric for
                       Assessing Generative Models" (arXiv:1904.06991): each set's manifold is the union of balls
                       around its points, each ball reaching the point's k-th nearest neighbour in its own set
                       (k = 3, the paper's choice); precision is the share of generated points inside the real
                       manifold ("are the samples realistic?"), recall the share of real points inside the generated
                       manifold ("do the samples cover the data?")

Both are biased at small n (FD upward, precision and recall downward): compare values at equal n, next to the same
numbers for real data against real data at that n (core.metrics' floors).
"""

from __future__ import annotations

import torch
from torch import Tensor

PR_NEIGHBOURS = 3  # k of the k-NN manifolds (Kynkäänniemi et al. 2019, section 2)


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


def _check_pair(real: Tensor, fake: Tensor, k: int) -> tuple[Tensor, Tensor]:
    real, fake = torch.as_tensor(real).double(), torch.as_tensor(fake).double()
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"need feature sets [N, D] and [M, D], got {tuple(real.shape)} and {tuple(fake.shape)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"need more than k = {k} points in each set, got {len(real)} and {len(fake)}")
    return real, fake


def knn_radii(features: Tensor, k: int = PR_NEIGHBOURS) -> Tensor:
    """Distance [N] from each point of features [N, D] to its k-th nearest neighbour among the others."""
    distances = torch.cdist(features, features)  # (N, N), 0 on the diagonal
    return distances.kthvalue(k + 1, dim=1).values  # the 1st smallest is the point itself


def coverage_share(points: Tensor, manifold: Tensor, radii: Tensor) -> float:
    """Share of points [N, D] inside the union of balls around manifold [M, D] with radii [M]."""
    inside = (torch.cdist(points, manifold) <= radii[None, :]).any(1)  # (N,)
    return float(inside.double().mean())


def precision_recall(real: Tensor, fake: Tensor, k: int = PR_NEIGHBOURS) -> tuple[float, float]:
    """(precision, recall) of fake features [M, D] against real features [N, D] with k-NN manifolds
    (Kynkäänniemi et al. 2019, eqs. 1-3): precision = share of fake points within the k-NN ball of some real point,
    recall = share of real points within the k-NN ball of some fake point. Both in [0, 1], float64 maths."""
    real, fake = _check_pair(real, fake, k)
    precision = coverage_share(fake, real, knn_radii(real, k))
    recall = coverage_share(real, fake, knn_radii(fake, k))
    return precision, recall
