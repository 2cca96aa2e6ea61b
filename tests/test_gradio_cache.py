"""explorer/gradio_cache.py: pictures reach Gradio's cache at the same path with the same bytes as Gradio writes
them, but atomically: while other users write the same picture again and again, a reader never sees a partial
file (Gradio's own write truncates first; two users sampling with the same seed broke each other's downloads)."""

import threading

import numpy as np
from gradio import processing_utils
from PIL import Image

from explorer.app import build_app
from explorer.gradio_cache import save_pil_to_cache_atomically


def picture() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8))


def test_same_path_and_bytes_as_gradio(tmp_path):
    image = picture()
    data = processing_utils.encode_pil_to_bytes(image, "webp")
    path = save_pil_to_cache_atomically(image, str(tmp_path))
    assert path == str((tmp_path / processing_utils.hash_bytes(data) / "image.webp").resolve())
    with open(path, "rb") as f:
        assert f.read() == data
    assert [p.name for p in (tmp_path / processing_utils.hash_bytes(data)).iterdir()] == ["image.webp"]


def test_a_reader_never_sees_a_partial_picture_while_others_rewrite_it(tmp_path):
    image = picture()
    size = len(processing_utils.encode_pil_to_bytes(image, "webp"))
    path = save_pil_to_cache_atomically(image, str(tmp_path))
    done = threading.Event()

    def rewrite():
        for _ in range(100):
            save_pil_to_cache_atomically(image, str(tmp_path))

    writers = [threading.Thread(target=rewrite) for _ in range(3)]
    for writer in writers:
        writer.start()
    threading.Thread(target=lambda: ([w.join() for w in writers], done.set())).start()
    reads = []
    while not done.is_set():
        with open(path, "rb") as f:
            reads.append(len(f.read()))
    assert len(reads) > 10 and set(reads) == {size}


def test_the_app_routes_every_cached_picture_through_it():
    build_app()
    assert processing_utils.save_pil_to_cache is save_pil_to_cache_atomically
