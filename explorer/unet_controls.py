"""The U-Net tab's size controls and the `UNetConfig` they describe: a preset's values for the controls, and the
controls' values checked (each `gr.Error` says what to change) and turned back into a config."""

from __future__ import annotations

from dataclasses import asdict

import gradio as gr

from core.summary import level_shapes
from core.unet import PRESETS, UNetConfig
from explorer.widgets import whole_number

PRESET_CHOICES = ("tiny", "small", "seed", "custom")
MAX_LEVELS = 5
BASE_CHANNELS_RANGE = (8, 256)
MULT_RANGE = (1, 8)
RES_BLOCKS_RANGE = (1, 4)
TIME_EMB_CHOICES = (16, 32, 64, 128, 256, 512)
PATCH_CHOICES = (1, 2, 4)  # pixels per side of the blocks the network sees as one position
IMAGE_SIZE_RANGE = (16, 128)
IN_CHANNEL_CHOICES = (1, 3)
MAX_MULTS_TEXT = 40  # characters


def parse_channel_mults(text: object) -> tuple[int, ...]:
    """ "1,2,4" -> (1, 2, 4): one multiplier per level, 1 to MAX_LEVELS of them, each in MULT_RANGE."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_MULTS_TEXT:
        raise gr.Error(
            f"channel multipliers: write one whole number per level separated by commas, like 1,2,4; got {text!r}"
        )
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts):
        raise gr.Error(f"channel multipliers must be whole numbers separated by commas, like 1,2,4; got {text!r}")
    mults = tuple(int(part) for part in parts)
    if not 1 <= len(mults) <= MAX_LEVELS:
        raise gr.Error(f"channel multipliers: give 1 to {MAX_LEVELS} levels, got {len(mults)} ({text!r})")
    low, high = MULT_RANGE
    if not all(low <= m <= high for m in mults):
        raise gr.Error(f"each channel multiplier must be from {low} to {high}; got {text!r}")
    return mults


def preset_controls(preset: str) -> tuple[int, str, int, list[int], bool, int, int]:
    """A named preset's control values: base channels, multipliers, blocks, attention, middle attention, time width,
    patch size."""
    cfg = UNetConfig(**PRESETS[preset])
    return (
        cfg.base_channels,
        ",".join(str(m) for m in cfg.channel_mults),
        cfg.num_res_blocks,
        list(cfg.attention_levels),
        cfg.mid_attention,
        cfg.time_emb_dim,
        cfg.patch_size,
    )


CONTROL_COUNT = len(preset_controls(PRESET_CHOICES[0]))  # the controls a preset fills, in build_config's order


def fill_preset(preset: str) -> tuple:
    """Callback: choosing a preset fills the controls with its values; "custom" leaves them as they are."""
    if preset not in PRESET_CHOICES:
        raise gr.Error(f"unknown preset {preset!r}; choose one of {', '.join(PRESET_CHOICES)}")
    if preset == "custom":
        return tuple(gr.skip() for _ in range(CONTROL_COUNT))
    return preset_controls(preset)


def mark_custom() -> str:
    """Callback: editing a control by hand turns the preset dropdown to "custom"."""
    return "custom"


def build_config(
    base_channels: object,
    channel_mults_text: object,
    num_res_blocks: object,
    attention_levels: object,
    mid_attention: object,
    time_emb_dim: object,
    patch_size: object,
    image_size: object,
    in_channels: object,
) -> tuple[UNetConfig, int]:
    """The validated U-Net config and input size of the controls, or a gr.Error that says what to change."""
    mults = parse_channel_mults(channel_mults_text)
    base = whole_number("base channels", base_channels, *BASE_CHANNELS_RANGE)
    blocks = whole_number("residual blocks per level", num_res_blocks, *RES_BLOCKS_RANGE)
    temb = whole_number("time embedding width", time_emb_dim, min(TIME_EMB_CHOICES), max(TIME_EMB_CHOICES))
    size = whole_number("input size", image_size, *IMAGE_SIZE_RANGE)
    channels = whole_number("input channels", in_channels, 1, 3)
    patch = whole_number("patch size", patch_size, min(PATCH_CHOICES), max(PATCH_CHOICES))
    if patch not in PATCH_CHOICES:
        raise gr.Error(f"patch size must be one of {', '.join(map(str, PATCH_CHOICES))}, got {patch_size!r}")
    if channels not in IN_CHANNEL_CHOICES:
        raise gr.Error(f"input channels must be 1 (grey) or 3 (colour), got {in_channels!r}")
    if attention_levels is None:
        attention_levels = []
    if not isinstance(attention_levels, (list, tuple)):
        raise gr.Error(f"attention levels must be a list of level numbers, got {attention_levels!r}")
    levels = len(mults)
    attention = tuple(
        sorted({whole_number(f"attention level (with {levels} levels)", a, 0, levels - 1) for a in attention_levels})
    )
    cfg = UNetConfig(
        in_channels=channels,
        base_channels=base,
        channel_mults=mults,
        num_res_blocks=blocks,
        time_emb_dim=temb,
        attention_levels=attention,
        mid_attention=bool(mid_attention),
        patch_size=patch,
    )
    try:
        level_shapes(cfg, size)  # the U-Net's own message for a size it cannot halve enough times
    except ValueError as error:
        raise gr.Error(str(error)) from None
    return cfg, size


def preset_name(cfg: UNetConfig) -> str | None:
    """The preset this config is (ignoring input channels), or None."""
    for name, values in PRESETS.items():
        if asdict(UNetConfig(**values, in_channels=cfg.in_channels)) == asdict(cfg):
            return name
    return None
