"""`build_app()`: assembles the explorer's tabs into one Gradio Blocks app; `LAUNCH_OPTIONS` are its server limits.

Tabs, in lesson order: Lesson (a guided lesson whose chapters open the others), Schedules, Forward process, Time
embedding, U-Net, Train, Sample, Experiments. Each lives in explorer/tabs/ with its layout and callbacks; this file
only arranges them, puts "Copy link to this view" above them (explorer/view_links.py: the view lives in the URL),
gives Train, Sample, Experiments and the Forward process tab's SDEdit section the app's one `SessionRegistry`
(every user's runs, models and files; explorer/sessions.py), frees a user's session when they leave, and sets the queue.
"""

from __future__ import annotations

import socket

import gradio as gr
import torch

from core import __version__
from core.accelerators import speed_choices
from core.device import describe_device, pick_device
from explorer.compute_worker import single_thread_elsewhere
from explorer.gradio_cache import make_picture_cache_atomic
from explorer.keyboard import KEYBOARD_HEAD
from explorer.sessions import SessionRegistry
from explorer.tabs import (
    compare,
    embedding,
    experiments,
    forward,
    lesson,
    quality,
    sample,
    schedules,
    sdedit,
    train,
    unet,
)
from explorer.theme import THEME_CSS
from explorer.view_links import LinkBar
from explorer.widgets import session_key
from explorer.zero_gpu import configure, zero_gpu_active

TITLE = "DDPM Explorer"
HEADER = f"""# {TITLE}
See every part of a denoising diffusion model move: how a schedule drowns a picture in noise, how the model is told
the time, the U-Net that learns to undo it, a model trained live before your eyes, and sampling step by step.
Every control has a one-line explanation under it.
"""
TAB_IDS = {  # label -> id (gr.Tabs(selected=id) switches to a tab; a link's `tab=` names it)
    "Lesson": "lesson",
    "Schedules": "schedules",
    "Forward process": "forward",
    "Time embedding": "embedding",
    "U-Net": "unet",
    "Train": "train",
    "Sample": "sample",
    "Experiments": "experiments",
}
QUEUE_MAX_SIZE = 128  # waiting requests beyond this are told the app is busy (a class of 30 is ~60 requests)
CONCURRENCY_LIMIT = 2  # callbacks of one kind that run at once (2 cores)
DELETE_CACHE = (1800, 3600)  # every 30 min, delete Gradio's cached files older than an hour
LAUNCH_OPTIONS: dict = {
    "max_file_size": "20mb",  # uploads over this are refused by Gradio before any of our code runs
    "show_error": True,  # gr.Error messages reach the user
    "footer_links": ["api"],
    # threads for callbacks: every heavy run holds one while it waits for its place or its merged network call
    # (up to explorer.sessions.HEAVY_CONCURRENCY of them), and the light requests need some beside them
    "max_threads": 128,
    "head": KEYBOARD_HEAD,  # dropdown lists out of the Tab order (explorer/keyboard.py)
}
CSS = """
.gradio-container {max-width: 1400px !important}
.prose p, .prose li {font-size: 1.05rem}
.pixelated img {image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain}
/* the one-line caption under a picture (explorer.widgets.pixel_picture) */
.picture-caption .prose p {font-size: 0.9rem; margin: 0; color: var(--body-text-color-subdued)}
/* a dropdown's text stops before its arrow (Gradio lets it run underneath) and ends in "…" if it is too long */
.wrap-inner input[role="combobox"] {padding-right: 24px; text-overflow: ellipsis}
"""
CSS += THEME_CSS  # the plots follow Gradio's dark theme (explorer/theme.py)


def carry_schedule(*values: object) -> tuple:
    """Callback of the Schedules tab's "Train with this schedule": the Train tab's schedule controls
    (schedules.train_settings), its Advanced group opened, and the Train tab selected."""
    return (*schedules.train_settings(*values), gr.Accordion(open=True), gr.Tabs(selected=TAB_IDS["Train"]))


def device_line(device: torch.device | None = None) -> str:
    """The header's last line: where the heavy runs compute, and with which speed options ("Running on cuda:
    NVIDIA H200 (150 GB), bf16 autocast (the defaults ...)"), or ZeroGPU's lent GPUs; and the core's version."""
    if zero_gpu_active():
        where = "ZeroGPU: each training and sampling run is lent a GPU for its length (queued with other Spaces' users)"
    else:
        device = device if device is not None else pick_device("auto")
        where = f"Running on {describe_device(device)}"
        if device.type == "cuda":
            where += f"; training with {speed_choices(device).describe()}"
    return f'<span style="color:var(--body-text-color-subdued)">{where} · core {__version__}</span>'


def build_app(registry: SessionRegistry | None = None) -> gr.Blocks:
    """The whole app as a Blocks object (launched by app.py with LAUNCH_OPTIONS, mounted by tests). `registry`
    holds the users' sessions (a fresh one by default)."""
    configure()  # on ZeroGPU: `spaces` before CUDA, and the app's state on the CPU (explorer/zero_gpu.py)
    registry = registry if registry is not None else SessionRegistry()
    single_thread_elsewhere()  # only the registry's compute worker computes with every core
    make_picture_cache_atomic()  # users who get the same picture must not truncate each other's downloads
    with gr.Blocks(title=TITLE, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(HEADER + device_line())
        link_bar = LinkBar()
        with gr.Tabs() as tabs:
            with gr.Tab("Lesson", id=TAB_IDS["Lesson"]) as lesson_page:
                lesson_tab = lesson.build_tab()
            with gr.Tab("Schedules", id=TAB_IDS["Schedules"]) as schedules_tab_page:
                schedules_page = schedules.build_tab()
            with gr.Tab("Forward process", id=TAB_IDS["Forward process"]) as forward_page:
                sdedit_section = sdedit.build_section(registry, forward.build_tab())
            with gr.Tab("Time embedding", id=TAB_IDS["Time embedding"]) as embedding_page:
                embedding.build_tab()
            with gr.Tab("U-Net", id=TAB_IDS["U-Net"]) as unet_page:
                unet_report = unet.build_tab()
            with gr.Tab("Train", id=TAB_IDS["Train"]) as train_page:
                train_tab = train.build_tab(registry)
            with gr.Tab("Sample", id=TAB_IDS["Sample"]) as sample_page:
                sample_tab = sample.build_tab(registry)
                compare.build_section(sample_tab)
                quality.build_section(sample_tab)
            with gr.Tab("Experiments", id=TAB_IDS["Experiments"]) as experiments_page:
                experiments_tab = experiments.build_tab(registry)
        # "Train with this schedule": the Schedules tab's choice fills the Train tab's controls, opens its
        # Advanced group (where T and the betas are) and switches to it
        carried = [train_tab.schedule_controls[name] for name in schedules.TRAIN_SETTINGS]
        schedules_page.train_button.click(
            carry_schedule,
            [*schedules_page.train_inputs, train_tab.schedule_controls["objective"]],
            [*carried, train_tab.advanced, tabs],
            api_name=False,
        )
        # a model trained (or stopped) in the Train tab appears in the Sample tab's menu, its run in Experiments'
        train_tab.start_event.then(sample_tab.model_menu, sample_tab.model, sample_tab.model, api_name=False)
        runs = (experiments_tab.run_choices, experiments_tab.chooser, experiments_tab.chooser)
        train_tab.start_event.then(*runs, api_name=False)
        experiments_page.select(*runs, api_name="list_runs")
        # the SDEdit section's menu of picture models, with the user's own, when the Forward process tab opens
        forward_page.select(sdedit_section.model_menu, sdedit_section.model, sdedit_section.model, api_name=False)
        sample_page.select(sample_tab.model_menu, sample_tab.model, sample_tab.model, api_name=False).then(
            sample_tab.count_range, sample_tab.model, sample_tab.count, api_name=False
        )

        pages = [lesson_page, schedules_tab_page, forward_page, embedding_page, unet_page, train_page, sample_page]
        pages = dict(zip(TAB_IDS.values(), [*pages, experiments_page], strict=True))
        leaders = {
            "sample": (sample_tab.model, sample_tab.described),
            "train": (train_tab.dataset, train_tab.dataset_event),
        }
        link_bar.wire(demo, tabs, pages, leaders, unet_report, lesson_tab)

        def leave(request: gr.Request) -> None:
            registry.close(session_key(request))

        demo.unload(leave)
    demo.registry = registry
    demo.link_bar = link_bar
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=CONCURRENCY_LIMIT)
    return demo


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_locally(registry: SessionRegistry | None = None) -> tuple[gr.Blocks, str]:
    """Build the app (with `registry`, else a fresh one) and serve it on 127.0.0.1 at a free port, with app.py's
    options, without blocking (tests, benchmarks and the README screenshot). Returns (demo, url); call
    demo.close() when done."""
    demo = build_app(registry)
    port = free_port()
    demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, css=CSS, **LAUNCH_OPTIONS
    )
    return demo, f"http://127.0.0.1:{port}/"
