"""The Sample tab's figures of a sampling run: where on the alpha-bar curve the sampler called the network
(`visited_timesteps_figure`, and `shared_visited_timesteps_figure`, built once for everyone who needs the same one)
and the paths of 2D samples from noise to the data (`paths_figure`). Pure functions of core objects, styled like
every figure of the app (explorer.figures.styled)."""

from __future__ import annotations

import functools

import numpy as np
import plotly.graph_objects as go

from core.noise_levels import schedule_sigmas
from explorer.figures import PALETTE, line_trace, styled, timestep_values
from explorer.trajectory import format_t


def alpha_bar_at(schedule, timesteps) -> np.ndarray:
    """alpha-bar at each timestep, whole or fractional: a fractional t (Karras sigmas) lies between two timesteps
    the way core.noise_levels.sigma_to_timestep puts it there, linearly in log sigma."""
    t = np.asarray(timesteps, dtype=np.float64)
    alpha_bar = schedule.alphas_cumprod.numpy().astype(np.float64)
    whole = np.clip(np.round(t), 0, len(alpha_bar) - 1).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):  # sigma is infinite at zero terminal SNR's last t
        log_sigma = np.interp(t, np.arange(len(alpha_bar)), np.log(schedule_sigmas(schedule)))
        between = 1.0 / (1.0 + np.exp(2.0 * log_sigma))
    return np.where(t == whole, alpha_bar[whole], between)


class _Identity:
    """A cache key for an unhashable object (a NoiseSchedule): equal only to itself; the cache keeps it alive."""

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.obj is self.obj


@functools.lru_cache(maxsize=64)
def _visited_figure(schedule: _Identity, visited: tuple, current: float | None) -> go.Figure:
    return visited_timesteps_figure(schedule.obj, visited, current)


def shared_visited_timesteps_figure(schedule, visited, current: float | None = None) -> go.Figure:
    """`visited_timesteps_figure`, built once for the same schedule, timesteps and step on show and then shared
    (read-only): a class of 30 sampling with the same settings gets one figure, not 30 (15 ms each on 2 cores)."""
    return _visited_figure(_Identity(schedule), tuple(float(t) for t in visited), current)


def visited_timesteps_figure(schedule, visited, current: float | None = None) -> go.Figure:
    """alpha-bar_t with a dot at every timestep the network was called at (and a large one at the call on show)."""
    visited = np.asarray(visited, dtype=np.float64)
    alpha_bar = schedule.alphas_cumprod.numpy()
    fig = go.Figure(
        line_trace(timestep_values(schedule), alpha_bar, "alpha-bar_t", {"color": "#999", "width": 2}, "%{y:.4g}")
    )
    fig.add_trace(
        go.Scatter(
            x=visited,
            y=alpha_bar_at(schedule, visited),
            mode="markers",
            name=f"visited ({len(visited)} network calls)",
            marker={"color": PALETTE[0], "size": 7},
            hovertemplate="t = %{x:.1~f}: alpha-bar %{y:.4g}<extra></extra>",
        )
    )
    if current is not None:
        fig.add_trace(
            go.Scatter(
                x=[current],
                y=alpha_bar_at(schedule, [current]),
                mode="markers",
                name=f"on show: t = {format_t(current)}",
                marker={"color": PALETTE[3], "size": 16, "symbol": "diamond"},
                hovertemplate="t = %{x:.1~f}<extra>on show</extra>",
            )
        )
    fig = styled(fig, "Where the sampler stepped on the alpha-bar curve", "timestep t", "alpha-bar_t", height=380)
    fig.update_layout(hovermode="closest")
    return fig


def paths_figure(paths, reference=None, max_paths: int = 40) -> go.Figure:
    """2D samples as paths through the plane from x_T (hollow circle) to the sample (dot), over the true data."""
    paths = np.asarray(paths, dtype=np.float64)[:max_paths]  # (points, states, 2)
    fig = go.Figure()
    if reference is not None:
        ref = np.asarray(reference, dtype=np.float64)
        fig.add_trace(
            go.Scattergl(
                x=ref[:, 0],
                y=ref[:, 1],
                mode="markers",
                name="true data",
                marker={"color": "#ccc", "size": 4},
                hoverinfo="skip",
            )
        )
    xs = np.concatenate([np.append(p[:, 0], np.nan) for p in paths]) if len(paths) else []
    ys = np.concatenate([np.append(p[:, 1], np.nan) for p in paths]) if len(paths) else []
    fig.add_trace(
        go.Scatter(x=xs, y=ys, mode="lines", name="paths", line={"color": PALETTE[0], "width": 1}, hoverinfo="skip")
    )
    fig.add_trace(
        go.Scatter(
            x=paths[:, 0, 0],
            y=paths[:, 0, 1],
            mode="markers",
            name="start x_T",
            marker={"color": "white", "size": 7, "line": {"color": PALETTE[0], "width": 1.5}},
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=paths[:, -1, 0],
            y=paths[:, -1, 1],
            mode="markers",
            name="sample",
            marker={"color": PALETTE[3], "size": 7},
            hoverinfo="skip",
        )
    )
    fig = styled(fig, f"Paths of {len(paths)} samples from noise to data", "x", "y", height=520)
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    fig.update_layout(hovermode="closest")
    return fig
