"""The figure of a 2D denoiser's field (explorer.denoiser_field): an arrow at every grid point towards the clean
point the network guesses from there, drawn under the samples, over the true data in grey. Pure: arrays in, a
plotly Figure out, styled like every figure of the app (explorer.figures.styled).

An arrow's direction is exact; its drawn length grows with the square root of its true length, scaled so the
longest of that t fills ARROW_FILL of a grid cell: true lengths differ a lot (up to ~3 far out, near 0 on the data),
and on a linear scale the arrows that show where the data lies would shrink to dots. The legend gives the longest
true length. Each arrow is a line segment with a two-stroke head, all in one trace (None between arrows), so 441 arrows
cost one trace, not 441 annotations.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from explorer.figures import PALETTE, styled
from explorer.trajectory import format_t

ARROW_FILL = 0.9  # the longest arrow's drawn length, in grid cells
HEAD_SHARE = 0.35  # a head's strokes, as a share of the drawn arrow's length
HEAD_ANGLE = np.deg2rad(28.0)  # between a head's stroke and the shaft
MAX_SHOWN = 300  # samples drawn (of each kind); the rest would only hide the arrows
FIELD_HEIGHT = 640
ARROW_COLOUR = "#5b8db8"  # light blue: the field is the background the samples move over
EXPLANATION = "Each arrow points from a place x to the clean point the denoiser guesses from there: pred_x0 - x."


def arrow_segments(points: np.ndarray, drawn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x and y of every arrow as line pieces separated by NaN: the shaft from each point to point + drawn, then the
    head's two strokes back from the tip (arrows of length 0 are left out)."""
    length = np.linalg.norm(drawn, axis=1)
    keep = length > 1e-12
    start, vector, length = points[keep], drawn[keep], length[keep]
    tip = start + vector
    back = -vector / length[:, None] * (HEAD_SHARE * length)[:, None]
    cos, sin = np.cos(HEAD_ANGLE), np.sin(HEAD_ANGLE)
    left = tip + np.stack([cos * back[:, 0] - sin * back[:, 1], sin * back[:, 0] + cos * back[:, 1]], axis=1)
    right = tip + np.stack([cos * back[:, 0] + sin * back[:, 1], -sin * back[:, 0] + cos * back[:, 1]], axis=1)
    gap = np.full_like(start, np.nan)
    pieces = np.stack([start, tip, gap, left, tip, right, gap], axis=1).reshape(-1, 2)  # (7 per arrow, 2)
    return pieces[:, 0], pieces[:, 1]


def drawn_arrows(arrows: np.ndarray, cell: float) -> np.ndarray:
    """The arrows as drawn: each one's direction, at a length of ARROW_FILL cells times the square root of its
    length over the longest one's (all zero stay zero)."""
    length = np.linalg.norm(arrows, axis=1)
    longest = float(length.max()) if len(arrows) else 0.0
    if longest <= 1e-12:
        return np.zeros_like(arrows)
    drawn_length = ARROW_FILL * cell * np.sqrt(length / longest)
    return arrows * (drawn_length / np.maximum(length, 1e-300))[:, None]


def _points_trace(points: np.ndarray, name: str, marker: dict) -> go.Scatter:
    shown = np.asarray(points, dtype=np.float64)[:MAX_SHOWN]
    return go.Scatter(x=shown[:, 0], y=shown[:, 1], mode="markers", name=name, marker=marker, hoverinfo="skip")


def denoiser_field_figure(
    points: np.ndarray,
    arrows: np.ndarray,
    t: float,
    alpha_bar: float,
    extent: float,
    *,
    before: np.ndarray | None = None,
    after: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    condition: str = "",
) -> go.Figure:
    """The field at timestep t (alpha-bar_t given): `arrows` (pred_x0 - x) at grid `points` over [-extent,
    extent]^2, with the true data (`reference`, grey) under them and the samples over them: `before` (hollow, the
    points the network was given at this step) and `after` (filled, where the step moved them). `condition`: e.g.
    ", class 1, guidance 2" for the title."""
    points, arrows = np.asarray(points, dtype=np.float64), np.asarray(arrows, dtype=np.float64)
    side = max(round(np.sqrt(len(points))), 2)
    longest = float(np.linalg.norm(arrows, axis=1).max()) if len(arrows) else 0.0
    fig = go.Figure()
    if reference is not None:
        fig.add_trace(_points_trace(reference, "true data", {"color": "#d0d0d0", "size": 4}))
    x, y = arrow_segments(points, drawn_arrows(arrows, 2 * extent / (side - 1)))
    name = f"pred_x0 - x (longest {longest:.2f})"
    line = {"color": ARROW_COLOUR, "width": 1.6}
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name, line=line, hoverinfo="skip", connectgaps=False))
    if before is not None:
        hollow = {"color": "rgba(0,0,0,0)", "size": 6, "line": {"color": PALETTE[0], "width": 1}}
        fig.add_trace(_points_trace(before, "given to the network", hollow))
    if after is not None:
        fig.add_trace(_points_trace(after, "after the step", {"color": PALETTE[3], "size": 4, "opacity": 0.8}))
    title = f"The denoiser's arrows at t = {format_t(t)} (alpha-bar {alpha_bar:.3g}){condition}"
    fig = styled(fig, title, "x", "y", height=FIELD_HEIGHT)
    fig.update_xaxes(range=[-extent, extent], zeroline=False, constrain="domain")
    fig.update_yaxes(range=[-extent, extent], scaleanchor="x", scaleratio=1, zeroline=False)
    fig.update_layout(hovermode=False)
    return fig
