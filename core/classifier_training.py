"""Training of the reference digit classifier (core.classifier.DigitClassifier), run by assets/train_classifier.py.

AdamW with a one-cycle learning rate on mnist5k's 4,000 training digits, random affine jitter (`augment`), and
outlier exposure (Hendrycks, Mazeika & Dietterich 2019, arXiv:1812.04606): every batch also holds
`synthetic_outliers` (noise, smooth blobs) trained towards the uniform class distribution. Seeded: the same seed,
device and thread count give the same weights. `save_classifier` writes what `core.classifier.load_classifier`
reads.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.checkpoint import save_checkpoint
from core.classifier import CLASSIFIER_DIR, CLASSIFIER_KIND, CLASSIFIER_KINDS, IMAGE_SIZE, DigitClassifier
from core.data import load_dataset
from core.metrics import predict_logits

log = logging.getLogger(__name__)


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
        "outlier_exposure": (
            f"synthetic_outliers, half a batch, uniform target, weight {outlier_weight}"
            if outlier_weight > 0
            else "none"
        ),
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


def save_classifier(
    trained: ClassifierTraining, directory: str | Path = CLASSIFIER_DIR, kind: str = CLASSIFIER_KIND
) -> Path:
    """Write the weights + config.json atomically (core.checkpoint.save_checkpoint): the kind (the reference
    classifier or the FD feature network, core.classifier.CLASSIFIER_KINDS), the architecture, the training
    settings, the held-out accuracy and the package version."""
    if kind not in CLASSIFIER_KINDS:
        raise ValueError(f"kind must be one of {', '.join(CLASSIFIER_KINDS)}, got {kind!r}")
    config = {
        "kind": kind,
        "heldout_accuracy": trained.heldout_accuracy,
        "train_accuracy": trained.train_accuracy,
        "train_seconds": round(trained.train_seconds, 1),
        "training": trained.settings,
    }
    return save_checkpoint(directory, trained.model, config)
