"""The reference digit classifier behind the image metrics of core.metrics: its model and its loading.

A small MNIST CNN stands in for Inception (whose ImageNet features suit 32x32 digits poorly). It is trained by this
project on mnist5k's training split only (core.classifier_training, run by `assets/train_classifier.py`); the 1,000
held-out digits are the real reference and are never trained on. It is also shown synthetic non-digits (noise,
blobs) with a uniform target, "outlier exposure" (Hendrycks, Mazeika & Dietterich 2019, arXiv:1812.04606): a plain
MNIST classifier calls Gaussian noise an "8" with probability > 0.9, which would make core.metrics'
`confident_fraction` meaningless for bad samples.

The same architecture trained without outlier exposure is the feature network of core.metrics' Fréchet distance and
precision/recall: outlier exposure maps every non-digit onto nearly one feature point, so the reference classifier's
features cannot rank noise, blank pictures, digits on grey and heavy blur (FD near 1,680 for all of them); the plain
network's features keep them apart (core.metrics' docstring has the measurements).

The shipped weights live in assets/classifier and assets/feature_net (safetensors + config.json with the kind, the
architecture, the training settings and the SHA-256 of the weights); `load_reference_classifier()` and
`load_feature_network()` load them once, checked against that hash.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from safetensors.torch import load_file
from torch import Tensor, nn

from core.checkpoint import CONFIG_FILE, MODEL_FILE, named_weight_file
from core.data import ASSETS

CLASSIFIER_DIR = ASSETS / "classifier"
CLASSIFIER_KIND = "reference-digit-classifier"  # with outlier exposure: "is it a digit, and which?"
FEATURE_NET_DIR = ASSETS / "feature_net"
FEATURE_NET_KIND = "digit-feature-network"  # without outlier exposure: features for the Fréchet distance
CLASSIFIER_KINDS = (CLASSIFIER_KIND, FEATURE_NET_KIND)
IMAGE_SIZE = 32  # the classifier sees 1x32x32 digits in [-1, 1]
NUM_CLASSES = 10


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


def load_classifier(directory: str | Path = CLASSIFIER_DIR, kind: str = CLASSIFIER_KIND) -> DigitClassifier:
    """A classifier of `kind` saved by core.classifier_training.save_classifier, checked against its recorded hash,
    in eval mode on CPU."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    name = named_weight_file(config, MODEL_FILE) if "files" in config else None
    weights_path = directory / (name or MODEL_FILE)
    if name is None or not weights_path.is_file():
        raise FileNotFoundError(
            f"no classifier in {directory}; train it with python assets/train_classifier.py"
            f"{' --features' if kind == FEATURE_NET_KIND else ''} (needs "
            f"{CONFIG_FILE} and the model weights it names)"
        )
    if config.get("kind") != kind:
        raise ValueError(f"{config_path} is not a {kind} config (kind {config.get('kind')!r})")
    if hashlib.sha256(weights_path.read_bytes()).hexdigest() != config["files"][name]:
        raise ValueError(f"{weights_path} does not match {config_path} (a different or damaged file)")
    model = DigitClassifier.from_config(config["model"])
    model.load_state_dict(load_file(str(weights_path)))
    return model.eval().requires_grad_(False)


@functools.lru_cache(maxsize=1)
def load_reference_classifier() -> DigitClassifier:
    """The shipped classifier (assets/classifier), loaded once and shared: do not modify it."""
    return load_classifier(CLASSIFIER_DIR)


@functools.lru_cache(maxsize=1)
def load_feature_network() -> DigitClassifier:
    """The shipped FD feature network (assets/feature_net), loaded once and shared: do not modify it."""
    return load_classifier(FEATURE_NET_DIR, FEATURE_NET_KIND)
