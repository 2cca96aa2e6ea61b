"""Train the reference digit classifier of core/classifier.py (assets/classifier/) or its FD feature network.

Trains `core.classifier.DigitClassifier` on mnist5k's training split only (4,000 digits, affine augmentation), with
a fixed seed, on the CPU, then reports its accuracy on the 1,000 held-out digits (never trained on) and writes
model.safetensors + config.json atomically (architecture, training settings, seed, held-out accuracy, package
version, file hash). Refuses to write weights below 98% held-out accuracy. Run once, from the project root:

    python assets/train_classifier.py

(`--out DIR` writes elsewhere; `--seed`, `--epochs` and `--threads` change the run; the shipped weights use the
defaults: seed 0, 30 epochs, 2 threads.) The same network trained without outlier exposure, whose features
core.metrics' Fréchet distance and precision/recall use, is written to assets/feature_net/ by

    python assets/train_classifier.py --features
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from core.classifier import CLASSIFIER_DIR, CLASSIFIER_KIND, FEATURE_NET_DIR, FEATURE_NET_KIND
from core.classifier_training import save_classifier, train_classifier

MIN_ACCURACY = 0.98


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--features",
        action="store_true",
        help=f"train without outlier exposure: the FD feature network (default --out {FEATURE_NET_DIR.name})",
    )
    parser.add_argument("--out", type=Path, default=None, help=f"default: {CLASSIFIER_DIR.name} (or feature_net)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (results depend on it, bit for bit)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    out = args.out or (FEATURE_NET_DIR if args.features else CLASSIFIER_DIR)
    outlier_weight = 0.0 if args.features else 0.5
    trained = train_classifier(epochs=args.epochs, seed=args.seed, device="cpu", outlier_weight=outlier_weight)
    trained.settings["threads"] = args.threads
    params = sum(p.numel() for p in trained.model.parameters())
    print(
        f"{params:,} parameters; held-out accuracy {trained.heldout_accuracy:.4f}, "
        f"training accuracy {trained.train_accuracy:.4f}, {trained.train_seconds:.0f} s"
    )
    if trained.heldout_accuracy < MIN_ACCURACY:
        print(f"error: held-out accuracy below {MIN_ACCURACY}; not writing {out}", file=sys.stderr)
        return 1
    out = save_classifier(trained, out, FEATURE_NET_KIND if args.features else CLASSIFIER_KIND)
    print(f"wrote {out}: " + ", ".join(f"{p.name} ({p.stat().st_size:,} bytes)" for p in sorted(out.iterdir())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
