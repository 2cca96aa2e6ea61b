"""`unet_diagram`: the U-Net of a config drawn as a U, with the resolution and width of every level.

Encoder levels go down the left, the middle block sits at the bottom, decoder levels come back up the right, and
each encoder level hands its features across to its decoder twin by a dashed skip connection (concatenation).
The output is labelled with what the network is trained to predict (its objective: noise, clean picture or v).
The numbers come from `core.summary.level_shapes`, so the drawing is exactly the network `core.unet.UNet` builds.
Drawn with plotly shapes and annotations on hidden axes; large fonts for a projector.
"""

from __future__ import annotations

import plotly.graph_objects as go

from core.diffusion import check_objective
from core.summary import as_unet_config, level_shapes
from core.unet import UNetConfig
from explorer.figures import FONT_SIZE, PALETTE, styled
from explorer.theme import PAPER_PLOT as PAPER_PLOT  # the CSS class of the gr.Plot that shows it
from explorer.theme import on_paper

ENCODER, DECODER, MIDDLE, ATTENTION, INK = PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[3], PALETTE[7]
BOX_WIDTH = 3.8  # data units; the x axis spans X_RANGE
BOX_HEIGHT = 0.66  # data units; one level per unit of y
END_BOX_WIDTH = BOX_WIDTH + 0.8  # input and output: room for "predicted clean picture x0", widened towards the middle
X_RANGE = (-0.6, 14.6)
INDENT = 0.4  # each deeper level steps this far towards the middle, so the columns draw a U
ROW_PIXELS = 118
SKIP_NAME = "skip"
OUTPUT_LABELS: dict[str, str] = {  # what the output is, by training objective (core.diffusion.OBJECTIVES)
    "eps": "predicted noise ε",
    "x0": "predicted clean picture x<sub>0</sub>",
    "v": "predicted v",
}


def _fill(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _box(
    fig: go.Figure,
    x: float,
    y: float,
    text: str,
    colour: str,
    *,
    width: float = BOX_WIDTH,
    attention: bool = False,
    name: str = "",
) -> None:
    """A rounded-looking labelled box centred at (x, y); a thick vermillion border marks self-attention."""
    fig.add_shape(
        type="rect",
        x0=x - width / 2,
        x1=x + width / 2,
        y0=y - BOX_HEIGHT / 2,
        y1=y + BOX_HEIGHT / 2,
        fillcolor=_fill(colour, 0.16),
        line={"color": ATTENTION if attention else colour, "width": 4 if attention else 2},
        layer="below",
        name=name,
    )
    fig.add_annotation(x=x, y=y, text=text, showarrow=False, font={"size": FONT_SIZE + 1, "color": INK})


def _arrow(
    fig: go.Figure, start: tuple[float, float], end: tuple[float, float], label: str = "", side: str = "left"
) -> None:
    """An arrow from start to end (data coordinates), with an optional label beside its midpoint."""
    fig.add_annotation(
        x=end[0],
        y=end[1],
        ax=start[0],
        ay=start[1],
        xref="x",
        yref="y",
        axref="x",
        ayref="y",
        text="",
        showarrow=True,
        arrowhead=2,
        arrowsize=1.3,
        arrowwidth=2,
        arrowcolor=INK,
    )
    if label:
        fig.add_annotation(
            x=(start[0] + end[0]) / 2,
            y=(start[1] + end[1]) / 2,
            text=label,
            showarrow=False,
            xanchor="right" if side == "left" else "left",
            xshift=-10 if side == "left" else 10,
            font={"size": FONT_SIZE - 1, "color": "#444444"},
        )


def _blocks(n: int) -> str:
    return f"{n} res block{'s' if n != 1 else ''}"


def unet_diagram(
    config: dict | UNetConfig, image_size: int, *, title: str | None = None, objective: str = "eps"
) -> go.Figure:
    """The U-Net of `config` (a `UNetConfig`, `UNet.config` or a preset dict) for a square `image_size` input.

    One box per encoder level (left, going down), the middle block (bottom), one box per decoder level (right,
    going up), input and output at the top; each labelled "<res>x<res> · <channels> ch", "+ attention" where the
    config has it, the output with what a network trained for `objective` ("eps", "x0" or "v") predicts
    (OUTPUT_LABELS). Skip connections are dashed horizontal shapes named "skip", one per level.
    Raises ValueError (the U-Net's message) when image_size is not divisible by 2^(levels-1), or for an unknown
    objective.
    """
    check_objective(objective)
    cfg = as_unet_config(config)
    levels = level_shapes(cfg, image_size)
    n = len(levels)
    out_channels = cfg.out_channels or cfg.in_channels
    blocks = _blocks(cfg.num_res_blocks)
    fig = go.Figure()

    def enc_x(i: int) -> float:
        return X_RANGE[0] + 0.25 + BOX_WIDTH / 2 + INDENT * i

    def dec_x(i: int) -> float:
        return X_RANGE[1] - 0.25 - BOX_WIDTH / 2 - INDENT * i

    top, bottom = BOX_HEIGHT / 2, -BOX_HEIGHT / 2
    # input and output, one row above level 0
    widen = (END_BOX_WIDTH - BOX_WIDTH) / 2  # their outer edges line up with the levels' boxes
    _box(
        fig,
        enc_x(0) + widen,
        1.0,
        f"<b>input</b> x<sub>t</sub> · {image_size}x{image_size} · {cfg.in_channels} ch<br>a noisy picture",
        "#777777",
        width=END_BOX_WIDTH,
        name="input",
    )
    _box(
        fig,
        dec_x(0) - widen,
        1.0,
        f"<b>output</b> · {image_size}x{image_size} · {out_channels} ch<br>{OUTPUT_LABELS[objective]}",
        "#777777",
        width=END_BOX_WIDTH,
        name="output",
    )
    p = cfg.patch_size  # > 1: each p x p block of pixels enters as p^2 channels at one position
    into = f"cut into {p}x{p} patches<br>({p * p * cfg.in_channels} ch), " if p > 1 else ""
    out_of = ",<br>patches back to pixels" if p > 1 else ""
    _arrow(fig, (enc_x(0), 1.0 + bottom), (enc_x(0), top), f"{into}3x3 conv", side="right")
    _arrow(fig, (dec_x(0), top), (dec_x(0), 1.0 + bottom), f"norm, SiLU, 3x3 conv{out_of}", side="left")

    for level, resolution, channels in levels:
        y = -float(level)
        attention = level in cfg.attention_levels
        note = f"<br><span style='color:{ATTENTION}'><b>+ attention</b></span>" if attention else ""
        size = f"{resolution}x{resolution} · {channels} ch"
        _box(
            fig,
            enc_x(level),
            y,
            f"<b>down {level}</b> · {blocks}<br>{size}{note}",
            ENCODER,
            attention=attention,
            name=f"down {level}",
        )
        _box(
            fig,
            dec_x(level),
            y,
            f"<b>up {level}</b> · {blocks}<br>{size}{note}",
            DECODER,
            attention=attention,
            name=f"up {level}",
        )
        # the skip: encoder output concatenated to the decoder input at the same resolution
        x0, x1 = enc_x(level) + BOX_WIDTH / 2, dec_x(level) - BOX_WIDTH / 2
        fig.add_shape(
            type="line", x0=x0, x1=x1, y0=y, y1=y, name=SKIP_NAME, line={"color": INK, "width": 2, "dash": "dash"}
        )
        _arrow(fig, (x1 - 0.3, y), (x1, y))  # its head, at the decoder
        fig.add_annotation(
            x=(x0 + x1) / 2,
            y=y,
            text="skip (concat)",
            showarrow=False,
            yshift=14,
            font={"size": FONT_SIZE - 1, "color": INK},
            bgcolor="white",
        )
        if level < n - 1:
            half = f"{resolution // 2}x{resolution // 2}"
            _arrow(
                fig,
                (enc_x(level), y + bottom),
                (enc_x(level + 1), y - 1 + top),
                f"stride-2 conv → {half}",
                side="right",
            )
            _arrow(
                fig,
                (dec_x(level + 1), y - 1 + top),
                (dec_x(level), y + bottom),
                f"upsample x2 + conv → {resolution}x{resolution}",
                side="left",
            )

    # the middle block, one row below the deepest level
    deepest = levels[-1]
    y_mid = -float(n)
    attention = " → attention → " if cfg.mid_attention else " → "
    _box(
        fig,
        (X_RANGE[0] + X_RANGE[1]) / 2,
        y_mid,
        f"<b>middle</b>: res block{attention}res block<br>"
        f"{deepest.resolution}x{deepest.resolution} · {deepest.channels} ch",
        MIDDLE,
        width=2 * BOX_WIDTH,
        attention=cfg.mid_attention,
        name="middle",
    )
    mid_left, mid_right = (X_RANGE[0] + X_RANGE[1]) / 2 - BOX_WIDTH, (X_RANGE[0] + X_RANGE[1]) / 2 + BOX_WIDTH
    _arrow(fig, (enc_x(n - 1), y_mid + 1 + bottom), (mid_left + 0.4, y_mid + top))
    _arrow(fig, (mid_right - 0.4, y_mid + top), (dec_x(n - 1), y_mid + 1 + bottom))
    fig.add_annotation(
        x=(X_RANGE[0] + X_RANGE[1]) / 2,
        y=y_mid - 0.72,
        showarrow=False,
        font={"size": FONT_SIZE, "color": INK},
        text=f"time step t → sinusoidal embedding ({cfg.time_emb_dim}) → MLP → added inside <b>every</b> res block",
    )

    fig = styled(
        fig,
        title or f"U-Net: {n} level{'s' if n != 1 else ''}, {image_size}x{image_size} input",
        height=int(ROW_PIXELS * (n + 2.3)) + 90,
    )
    fig.update_xaxes(visible=False, range=list(X_RANGE), fixedrange=True)
    fig.update_yaxes(visible=False, range=[y_mid - 1.0, 1.0 + BOX_HEIGHT / 2 + 0.1], fixedrange=True)
    fig.update_layout(hovermode=False, dragmode=False, showlegend=False, margin={"l": 10, "r": 10, "t": 60, "b": 10})
    return on_paper(fig)  # black arrows and captions between the boxes: white paper in the dark theme too
