"""`build_app()`: assembles the explorer's tabs into one Gradio Blocks app; `LAUNCH_OPTIONS` are its server limits.

Tabs, in lesson order: Schedules, Forward process, Time embedding, U-Net. Each lives in explorer/tabs/ with its
layout and callbacks; this file only arranges them and sets the queue.
"""

from __future__ import annotations

import socket

import gradio as gr

from core import __version__
from explorer.tabs import embedding, forward, schedules, unet

TITLE = "DDPM Explorer"
HEADER = f"""# {TITLE}
See every part of a denoising diffusion model move: how a schedule drowns a picture in noise, how the model is told
the time, and the U-Net that learns to undo it. Every control has a one-line explanation under it.
<span style="color:#888">core {__version__}</span>
"""
QUEUE_MAX_SIZE = 64  # waiting requests beyond this are told the app is busy
CONCURRENCY_LIMIT = 2  # callbacks of one kind that run at once (2 cores)
LAUNCH_OPTIONS: dict = {
    "max_file_size": "20mb",  # uploads over this are refused by Gradio before any of our code runs
    "show_error": True,  # gr.Error messages reach the user
    "footer_links": ["api"],
}
CSS = """
.gradio-container {max-width: 1400px !important}
.prose p, .prose li {font-size: 1.05rem}
"""


def build_app() -> gr.Blocks:
    """The whole app as a Blocks object (launched by app.py with LAUNCH_OPTIONS, mounted by tests)."""
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(HEADER)
        with gr.Tab("Schedules"):
            schedules.build_tab()
        with gr.Tab("Forward process"):
            forward.build_tab()
        with gr.Tab("Time embedding"):
            embedding.build_tab()
        with gr.Tab("U-Net"):
            unet.build_tab()
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=CONCURRENCY_LIMIT)
    return demo


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_locally() -> tuple[gr.Blocks, str]:
    """Build the app and serve it on 127.0.0.1 at a free port, with app.py's options, without blocking
    (tests, benchmarks and the README screenshot). Returns (demo, url); call demo.close() when done."""
    demo = build_app()
    port = free_port()
    demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, css=CSS, **LAUNCH_OPTIONS
    )
    return demo, f"http://127.0.0.1:{port}/"
