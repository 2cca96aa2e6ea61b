"""Extract the bundled example photos (assets/examples/*) from the scikit-image wheel on PyPI.

scikit-image ships a few public-domain and CC0 photos in `skimage/data/` (the source and license of each are in
the docstring of its loader, `skimage.data.<name>()`, in `skimage/data/_fetchers.py`). This script downloads the
wheel with pip (no install; scikit-image is not a dependency), reads the photos named in NAMES from the zip,
prints each loader's docstring for the provenance table in assets/README.md, and writes each photo downscaled to
at most 256 pixels on its long side (Lanczos, through the app's own `explorer.images.load_image`) as
`assets/examples/<name>.png`, or `.jpg` (quality 90) when that is less than half the PNG's size.
Run once, from the project root, with the project installed (`pip install -e .`):

    python assets/extract_examples.py
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from PIL import Image

from explorer.images import EXAMPLES_DIR, load_image

WHEEL = "scikit-image==0.26.0"
NAMES = ("astronaut", "rocket", "camera", "chelsea", "coffee")
MAX_SIDE = 256
FETCHERS = "skimage/data/_fetchers.py"


def encode(image: Image.Image) -> tuple[str, bytes]:
    """The smaller sensible encoding: PNG (lossless) unless a quality-90 JPEG is less than half its size."""
    png, jpg = io.BytesIO(), io.BytesIO()
    image.save(png, format="PNG", optimize=True)
    image.save(jpg, format="JPEG", quality=90, optimize=True)
    if jpg.tell() * 2 < png.tell():
        return ".jpg", jpg.getvalue()
    return ".png", png.getvalue()


def loader_docstrings(source: str) -> dict[str, str]:
    """`name -> docstring` of the top-level functions in skimage's _fetchers.py."""
    tree = ast.parse(source)
    return {
        node.name: ast.get_docstring(node) or ""
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name in NAMES
    }


def extract(wheel: Path, target: Path = EXAMPLES_DIR) -> None:
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        members = zf.namelist()
        docs = loader_docstrings(zf.read(FETCHERS).decode()) if FETCHERS in members else {}
        total = 0
        for name in NAMES:
            pattern = re.compile(rf"skimage/data/{name}\.(png|jpe?g)$")
            member = next((m for m in members if pattern.fullmatch(m)), None)
            if member is None:
                raise SystemExit(f"{name}: no skimage/data/{name}.png|jpg in {wheel.name}")
            original = zf.read(member)
            image = load_image(original, max_side=MAX_SIDE)
            suffix, data = encode(image)
            for old in target.glob(f"{name}.*"):
                old.unlink()
            path = target / f"{name}{suffix}"
            path.write_bytes(data)
            total += len(data)
            with Image.open(io.BytesIO(original)) as source:
                before = f"{source.format} {source.mode} {source.size[0]}x{source.size[1]}"
            print(
                f"{path.relative_to(target.parent.parent)}: {len(data):,} bytes, {image.mode} "
                f"{image.size[0]}x{image.size[1]}, from {member} ({before}, {len(original):,} bytes)"
            )
            if name in docs:
                print("    " + docs[name].replace("\n", "\n    "))
    print(f"total {total:,} bytes in {target}, from {wheel.name}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", WHEEL, "-d", tmp],
            check=True,
        )
        extract(next(Path(tmp).glob("scikit[-_]image-*.whl")))


if __name__ == "__main__":
    main()
