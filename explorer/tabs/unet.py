"""The U-Net tab: pick a preset or your own sizes and see the network's shape, its layers and what it costs.

Layout in `build_tab`; callbacks are plain functions (`fill_preset`, `describe_unet`), validated with `gr.Error`,
so they behave the same from the page, from `gradio_client` and from tests. Every configuration is first built on
the meta device (no memory, no compute) to check it against the budget below, so a stranger on a shared Space
cannot tie up the machine; only then is a real copy built to time one forward pass.
"""

from __future__ import annotations

import functools

import gradio as gr
import plotly.graph_objects as go
import torch

from core.device import pick_device
from core.summary import ModelSummary, level_shapes, measure_forward_time, meta_unet, summarize
from core.unet import PRESETS, UNet, UNetConfig
from explorer.unet_controls import (
    BASE_CHANNELS_RANGE,
    IMAGE_SIZE_RANGE,
    IN_CHANNEL_CHOICES,
    MAX_LEVELS,
    MAX_MULTS_TEXT,
    PATCH_CHOICES,
    PRESET_CHOICES,
    RES_BLOCKS_RANGE,
    TIME_EMB_CHOICES,
    build_config,
    fill_preset,
    mark_custom,
    preset_controls,
    preset_name,
)
from explorer.unet_diagram import OUTPUT_LABELS, PAPER_PLOT, unet_diagram
from explorer.widgets import explanation

DEFAULT_PRESET = "seed"
DEFAULT_IMAGE_SIZE = 32
OBJECTIVE_CHOICES = [("the noise ε (eps)", "eps"), ("the clean picture x0 (x0)", "x0"), ("v, a mix of both (v)", "v")]
DEFAULT_OBJECTIVE = "eps"  # the formula in INTRO, and the classic "seed" U-Net's
# the budget: the seed preset at 128x128 (7.1 M parameters, 14 G MACs) fits; a single click costs a few seconds
MAX_PARAMETERS = 50_000_000
MAX_MACS = 20_000_000_000
MAX_ATTENTION_POSITIONS = 64 * 64  # attention's memory grows with positions squared
TIMING_REPEATS = 5
TIMING_MAX_SECONDS = 0.5  # timed passes stop once they add up to this (at least one runs)

TABLE_HEADERS = ["layer", "type", "output shape", "parameters", "multiply-accumulates"]
INTRO = r"""### The U-Net: the network that does the denoising
Given a noisy image $x_t$ and its step $t$, the U-Net guesses the noise $\epsilon$ that was mixed into the clean image:

$$\epsilon_\theta(x_t, t) \approx \epsilon, \quad x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$$

Others are trained to output the clean picture $x_0$ instead (the app's digit models are), or
$v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1-\bar\alpha_t}\,x_0$: the same network, only what its output means changes.
It shrinks the picture level by level to see the big shapes, grows it back, and skip connections carry the fine
details straight across. The step $t$ becomes a vector (the time embedding) that is added inside **every** residual
block, so one network can clean up every noise level.
"""


def check_budget(cfg: UNetConfig, image_size: int, *, trusted: bool = False) -> ModelSummary:
    """The summary of cfg at batch 1, computed on the meta device, or a gr.Error when it is over the budget.
    trusted (the app's own default, known to fit): computed on a real CPU copy instead; the same numbers, without
    the meta device's first-use import of PyTorch's reference ops and dynamo (1.1 s of the app's start)."""
    shapes = level_shapes(cfg, image_size)
    attended = [shapes[a].resolution for a in cfg.attention_levels]
    if cfg.mid_attention:
        attended.append(shapes[-1].resolution)
    if attended and max(attended) ** 2 > MAX_ATTENTION_POSITIONS:
        side = int(MAX_ATTENTION_POSITIONS**0.5)
        raise gr.Error(
            f"self-attention at {max(attended)}x{max(attended)} compares every pixel with every other one, "
            f"too much for this explorer (at most {side}x{side}). Move attention to a smaller level or "
            f"use a smaller input."
        )
    net = UNet(cfg) if trusted else meta_unet(cfg)
    parameters = sum(p.numel() for p in net.parameters())
    if parameters > MAX_PARAMETERS:
        raise gr.Error(
            f"this network would have {parameters / 1e6:.1f} M parameters; this explorer builds at most "
            f"{MAX_PARAMETERS / 1e6:.0f} M. Use fewer base channels, smaller multipliers or fewer blocks."
        )
    summary = summarize(net, (1, cfg.in_channels, image_size, image_size))
    if summary.macs > MAX_MACS:
        raise gr.Error(
            f"one forward pass would take {summary.macs / 1e9:.1f} G multiply-accumulates; this explorer "
            f"runs at most {MAX_MACS / 1e9:.0f} G. Use a smaller input, fewer channels or less attention."
        )
    return summary


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'' if threads == 1 else 's'})"
    return device.type


def time_forward(cfg: UNetConfig, image_size: int) -> tuple[float, torch.device]:
    """Median seconds of one forward pass at batch 1 on the explorer's device, and that device."""
    device = pick_device("auto")
    with torch.random.fork_rng(devices=[]):  # building the model must not move anyone's global RNG
        net = UNet(cfg)
    net = net.to(device)
    seconds = measure_forward_time(
        net,
        (1, cfg.in_channels, image_size, image_size),
        repeats=TIMING_REPEATS,
        warmup=1,
        max_seconds=TIMING_MAX_SECONDS,
    )
    return seconds, device


def _shape_text(shape: tuple[int, ...]) -> str:
    return " × ".join(str(n) for n in shape)


def _macs_text(macs: int) -> str:
    if macs >= 1e9:
        return f"{macs / 1e9:.2f} G"
    if macs >= 1e6:
        return f"{macs / 1e6:.1f} M"
    return f"{macs / 1e3:.1f} k" if macs >= 1e3 else str(macs)


def diagram_label(name: str, levels: int) -> str:
    """A table row's module name with the diagram's name for it: the decoder's modules are built deepest first,
    so `up_levels.0` is the diagram's "up 2" in a three-level U-Net."""
    kind, _, index = name.partition(".")
    if not index.isdigit():
        return name
    i = int(index)
    label = {
        "down_levels": f"down {i}",
        "downsamples": f"down {i} → {i + 1}",
        "up_levels": f"up {levels - 1 - i}",
        "upsamples": f"up {levels - 1 - i} → {levels - 2 - i}",
    }.get(kind)
    return f"{name} ({label})" if label else name


def table_rows(summary: ModelSummary, levels: int) -> list[list]:
    """The layer table: layer (with its diagram name), type, output shape, parameters, multiply-accumulates."""
    return [
        [diagram_label(r.name, levels), r.type, _shape_text(r.output_shape), r.parameters, _macs_text(r.macs)]
        for r in summary.rows
    ]


def report(
    cfg: UNetConfig,
    image_size: int,
    *,
    label: str,
    objective: str = DEFAULT_OBJECTIVE,
    measure: bool = True,
    trusted: bool = False,
) -> tuple[go.Figure, list[list], str]:
    """Diagram (its output labelled for `objective`), layer table and one-line summary of a validated config
    (timed on the device when `measure`; `trusted`: see check_budget)."""
    summary = check_budget(cfg, image_size, trusted=trusted)
    title = f"{label}: {image_size}x{image_size} input, batch 1"
    figure = unet_diagram(cfg, image_size, title=title, objective=objective)
    line = (
        f"**{summary.total_parameters:,} parameters** ({summary.total_parameters * 4 / 2**20:.1f} MiB in float32) · "
        f"**{_macs_text(summary.macs)} multiply-accumulates** per forward pass"
    )
    if measure:
        seconds, device = time_forward(cfg, image_size)
        line += f" · one forward pass takes **{seconds * 1e3:.1f} ms** on {device_label(device)}, batch 1"
    else:
        line += " · press **Show the network** to time a forward pass on this machine"
    return figure, table_rows(summary, len(cfg.channel_mults)), line


def describe_unet(
    preset: str,
    base_channels: float,
    channel_mults_text: str,
    num_res_blocks: float,
    attention_levels: list[int] | None,
    mid_attention: bool,
    time_emb_dim: float,
    patch_size: float,
    image_size: float,
    in_channels: float,
    objective: str = DEFAULT_OBJECTIVE,
) -> tuple[go.Figure, list[list], str]:
    """Callback: (diagram, layer table rows, Markdown line with parameters, MACs and measured forward time); the
    diagram's output says what a network trained for `objective` predicts."""
    if preset not in PRESET_CHOICES:
        raise gr.Error(f"unknown preset {preset!r}; choose one of {', '.join(PRESET_CHOICES)}")
    if objective not in OUTPUT_LABELS:
        raise gr.Error(f"unknown objective {objective!r}; choose one of {', '.join(OUTPUT_LABELS)}")
    cfg, size = build_config(
        base_channels,
        channel_mults_text,
        num_res_blocks,
        attention_levels,
        mid_attention,
        time_emb_dim,
        patch_size,
        image_size,
        in_channels,
    )
    name = preset_name(cfg)
    if name is not None:
        label = f"the {name} preset"
    elif preset != "custom":
        label = f"custom U-Net (edited from {preset})"
    else:
        label = "custom U-Net"
    return report(cfg, size, label=label, objective=objective)


@functools.lru_cache(maxsize=1)
def default_report() -> tuple:
    """The default preset's (figure, rows, summary line), computed once."""
    return report(
        UNetConfig(**PRESETS[DEFAULT_PRESET]),
        DEFAULT_IMAGE_SIZE,
        label=f"the {DEFAULT_PRESET} preset",
        measure=False,
        trusted=True,
    )


def build_tab() -> tuple[list, list]:
    """The tab's layout and events (called inside `with gr.Tab("U-Net"):`). Returns the report's inputs (the preset
    first, its six controls next) and outputs, for a shared link that sets the preset (explorer/view_links.py)."""
    base, mults, blocks, attention, mid, temb, patch = preset_controls(DEFAULT_PRESET)
    explanation(INTRO)
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            preset = gr.Dropdown(
                list(PRESET_CHOICES),
                value=DEFAULT_PRESET,
                label="Preset",
                info="Ready-made sizes: tiny trains live on a CPU, small is the shipped checkpoints, seed is the "
                "classic 64-128-256 U-Net.",
            )
            base_channels = gr.Slider(
                *BASE_CHANNELS_RANGE,
                value=base,
                step=8,
                label="Base channels",
                info="Feature maps at full resolution; more channels means more capacity and more compute.",
            )
            channel_mults = gr.Textbox(
                value=mults,
                label="Channel multipliers, one per level",
                max_length=MAX_MULTS_TEXT,
                info="Level i has base × multiplier channels; 1,2,4 means 3 levels, each half the size of the last.",
            )
            num_res_blocks = gr.Slider(
                *RES_BLOCKS_RANGE,
                value=blocks,
                step=1,
                label="Residual blocks per level",
                info="How many residual blocks each level has, on the way down and on the way up.",
            )
            attention_levels = gr.CheckboxGroup(
                [(f"{i} ({'full size' if i == 0 else f'1/{2**i}'})", i) for i in range(MAX_LEVELS)],
                value=attention,
                label="Self-attention at levels",
                info="Every pixel also looks at every other pixel there; costly at large sizes (0 = full size).",
            )
            mid_attention = gr.Checkbox(
                value=mid,
                label="Self-attention in the middle block",
                info="Attention between the two residual blocks at the bottom of the U.",
            )
            time_emb_dim = gr.Dropdown(
                list(TIME_EMB_CHOICES),
                value=temb,
                label="Time embedding width",
                info="Length of the vector that tells every residual block which step t it is at.",
            )
            patch_size = gr.Radio(
                list(PATCH_CHOICES),
                value=patch,
                label="Patch size (pixels)",
                info="2: each 2x2 block of pixels enters as 4 channels at one position, so the network works at "
                "half the size with wider, faster layers.",
            )
            image_size = gr.Slider(
                *IMAGE_SIZE_RANGE,
                value=DEFAULT_IMAGE_SIZE,
                step=1,
                label="Input size (pixels)",
                info="Height and width; must halve evenly at each level: a multiple of patch x 2^(levels-1).",
            )
            in_channels = gr.Radio(
                list(IN_CHANNEL_CHOICES),
                value=1,
                label="Input channels",
                info="1 for grey pictures such as MNIST digits, 3 for colour.",
            )
            objective = gr.Radio(
                OBJECTIVE_CHOICES,
                value=DEFAULT_OBJECTIVE,
                label="The network is trained to predict",
                info="What its output means; the network is the same. The app's digit models predict x0, the 2D "
                "toys the noise.",
            )
            show = gr.Button("Show the network", variant="primary")
        with gr.Column(scale=2):
            figure, rows, line = default_report()
            plot = gr.Plot(value=figure, label="The network's shape", elem_classes=[PAPER_PLOT])
            summary = gr.Markdown(line, label="Size and speed")
    table = gr.Dataframe(
        value=rows,
        headers=TABLE_HEADERS,
        label="Layers in the order they run (module names as in core/unet.py, with the diagram's name in brackets)",
        interactive=False,
        max_height=520,
    )

    controls = [base_channels, channel_mults, num_res_blocks, attention_levels, mid_attention, time_emb_dim, patch_size]
    inputs = [preset, *controls, image_size, in_channels, objective]
    outputs = [plot, table, summary]
    gr.on(
        [control.input for control in controls],
        mark_custom,
        None,
        preset,
        api_name="unet_mark_custom",
        api_visibility="private",
        show_progress="hidden",
    )
    preset.input(fill_preset, preset, controls, api_name="unet_preset").then(
        describe_unet,
        inputs,
        outputs,
        api_name="unet_preset_summary",
        api_visibility="private",
        concurrency_limit=1,
        concurrency_id="unet_summary",
    )
    show.click(
        describe_unet, inputs, outputs, api_name="unet_summary", concurrency_limit=1, concurrency_id="unet_summary"
    )
    objective.input(  # the diagram's output label follows the choice
        describe_unet,
        inputs,
        outputs,
        api_name="unet_objective_summary",
        api_visibility="private",
        concurrency_limit=1,
        concurrency_id="unet_summary",
    )
    return inputs, outputs
