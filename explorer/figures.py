"""Plotly figure builders: pure functions of core objects, no Gradio. Large fonts, readable on a projector.

Every builder returns a `plotly.graph_objects.Figure` whose traces hold exactly the values computed by `core`,
so tests can compare what is plotted with what the model uses.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

FONT_SIZE = 16
FIGURE_HEIGHT = 460
TITLE_OFFSET_PX = 38
# a colour-blind-safe palette (Okabe & Ito), one colour per schedule or series
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def styled(fig: go.Figure, title: str, x_title: str = "", y_title: str = "", height: int = FIGURE_HEIGHT) -> go.Figure:
    """Apply the explorer's common layout: title, axis titles, large fonts, white background, unified hover."""
    fig.update_layout(
        # the title sits below the Gradio label chip that overlays the figure's top-left corner
        title={
            "text": title,
            "x": 0.01,
            "xanchor": "left",
            "y": 1 - TITLE_OFFSET_PX / height,
            "yanchor": "top",
            "yref": "container",
        },
        font={"size": FONT_SIZE},
        height=height,
        margin={"l": 70, "r": 20, "t": 115, "b": 60},
        template="plotly_white",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.01, "xanchor": "left", "x": 0},
        hovermode="x unified",
    )
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    return fig


def _line(x, y, name: str, line: dict, hovertemplate: str) -> go.Scatter:
    """One curve of a line plot (every line figure here draws its traces the same way)."""
    return go.Scatter(x=x, y=y, name=name, mode="lines", line=line, hovertemplate=hovertemplate)


# ---- schedules -------------------------------------------------------------------------------------------------


def _timesteps(schedule) -> list[int]:
    return np.arange(schedule.num_timesteps)


def half_signal_step(schedule) -> int | None:
    """The first t where alpha-bar_t < 0.5 (half the signal power is gone), or None if it never happens."""
    below = (schedule.alphas_cumprod < 0.5).nonzero()
    return int(below[0]) if len(below) else None


def alpha_bar_figure(schedules: dict) -> go.Figure:
    """alpha-bar_t of each schedule, with a marker where it crosses 0.5."""
    fig = go.Figure()
    for i, (label, schedule) in enumerate(schedules.items()):
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(
            _line(
                _timesteps(schedule), schedule.alphas_cumprod.numpy(), label, {"color": color, "width": 3}, "%{y:.6g}"
            )
        )
        t_half = half_signal_step(schedule)
        if t_half is not None:
            fig.add_trace(
                go.Scatter(
                    x=[t_half],
                    y=[float(schedule.alphas_cumprod[t_half])],
                    mode="markers",
                    marker={"color": color, "size": 12, "symbol": "diamond"},
                    name=f"{label}: half signal at t={t_half}",
                    showlegend=False,
                    hovertemplate=f"alpha-bar < 0.5 from t = {t_half}<extra>{label}</extra>",
                )
            )
    fig.add_hline(y=0.5, line={"dash": "dot", "color": "#888"})
    return styled(fig, "alpha-bar_t: how much of the image is left", "timestep t", "alpha-bar_t")


def beta_figure(schedules: dict, log_y: bool = False) -> go.Figure:
    """beta_t of each schedule (the noise added at each single step), optionally on a log axis."""
    fig = go.Figure()
    for i, (label, schedule) in enumerate(schedules.items()):
        fig.add_trace(
            _line(
                _timesteps(schedule),
                schedule.betas.numpy(),
                label,
                {"color": PALETTE[i % len(PALETTE)], "width": 3},
                "%{y:.6g}",
            )
        )
    fig = styled(fig, "beta_t: noise added at each step", "timestep t", "beta_t")
    fig.update_yaxes(type="log" if log_y else "linear")
    return fig


def amplitude_figure(schedules: dict) -> go.Figure:
    """Signal amplitude sqrt(alpha-bar_t) (solid) and noise amplitude sqrt(1 - alpha-bar_t) (dashed)."""
    fig = go.Figure()
    for i, (label, schedule) in enumerate(schedules.items()):
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(
            _line(
                _timesteps(schedule),
                schedule.sqrt_alphas_cumprod.numpy(),
                f"{label}: signal",
                {"color": color, "width": 3},
                "%{y:.4f}",
            )
        )
        fig.add_trace(
            _line(
                _timesteps(schedule),
                schedule.sqrt_one_minus_alphas_cumprod.numpy(),
                f"{label}: noise",
                {"color": color, "width": 3, "dash": "dash"},
                "%{y:.4f}",
            )
        )
    return styled(fig, "Signal (solid) vs noise (dashed)", "timestep t", "amplitude")


def log_snr_figure(schedules: dict) -> go.Figure:
    """log SNR_t = log(alpha-bar_t / (1 - alpha-bar_t)); -inf at the end of a zero-terminal-SNR schedule is cut."""
    fig = go.Figure()
    for i, (label, schedule) in enumerate(schedules.items()):
        log_snr = np.where(np.isfinite(schedule.log_snr.numpy()), schedule.log_snr.numpy(), np.nan)  # log 0: a gap
        fig.add_trace(
            _line(_timesteps(schedule), log_snr, label, {"color": PALETTE[i % len(PALETTE)], "width": 3}, "%{y:.3f}")
        )
    fig.add_hline(y=0.0, line={"dash": "dot", "color": "#888"})
    return styled(fig, "log SNR (0 = equal parts)", "timestep t", "log(SNR)")


# ---- forward process -------------------------------------------------------------------------------------------


def histogram_figure(values, bins: int = 60) -> go.Figure:
    """Histogram (as a density) of x_t's pixel values against the standard normal density N(0, 1)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    low, high = min(values.min(), -4.0), max(values.max(), 4.0)
    density, edges = np.histogram(values, bins=bins, range=(low, high), density=True)
    centers = (edges[:-1] + edges[1:]) / 2
    grid = np.linspace(low, high, 200)
    normal = np.exp(-(grid**2) / 2) / np.sqrt(2 * np.pi)
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=centers,
            y=density,
            name="pixels of x_t",
            marker_color=PALETTE[0],
            width=float(edges[1] - edges[0]),
            hovertemplate="%{x:.2f}: %{y:.3f}",
        )
    )
    fig.add_trace(_line(grid, normal, "N(0, 1)", {"color": PALETTE[3], "width": 3}, "%{y:.3f}"))
    fig = styled(fig, "Pixel values of x_t vs pure noise N(0, 1)", "pixel value", "density", height=380)
    fig.update_layout(hovermode="closest", bargap=0)
    return fig


# ---- time embedding --------------------------------------------------------------------------------------------


def _heatmap(
    z,
    x,
    y,
    colorscale: str,
    colorbar: str,
    hover: str,
    title: str,
    x_title: str,
    y_title: str,
    zmin: float = -1.0,
    zmax: float = 1.0,
) -> go.Figure:
    fig = go.Figure(
        go.Heatmap(
            z=np.asarray(z),
            x=np.asarray(x),
            y=np.asarray(y),
            colorscale=colorscale,
            zmin=zmin,
            zmax=zmax,
            colorbar={"title": colorbar},
            hovertemplate=hover + "<extra></extra>",
        )
    )
    fig = styled(fig, title, x_title, y_title, height=520)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(hovermode="closest")
    return fig


def embedding_heatmap(embedding, timesteps) -> go.Figure:
    """The embedding as an image: one row per timestep t, one column per dimension (sin half, then cos half)."""
    return _heatmap(
        embedding,
        range(embedding.shape[1]),
        timesteps,
        "RdBu",
        "value",
        "t=%{y}, dim %{x}: %{z:.3f}",
        "Sinusoidal embedding: each row is one timestep",
        "dimension (sin | cos)",
        "timestep t",
    )


def embedding_curves(embedding, timesteps, dims: list[int]) -> go.Figure:
    """A few embedding dimensions as curves over t: low dimensions wiggle fast, high ones slowly."""
    fig = go.Figure()
    for i, dim in enumerate(dims):
        fig.add_trace(
            _line(
                np.asarray(timesteps),
                np.asarray(embedding[:, dim]),
                f"dim {dim}",
                {"color": PALETTE[i % len(PALETTE)], "width": 3},
                "%{y:.3f}",
            )
        )
    return styled(fig, "Selected dimensions over t", "timestep t", "value")


def similarity_heatmap(similarity, timesteps) -> go.Figure:
    """Cosine similarity between the embeddings of every pair of timesteps."""
    fig = _heatmap(
        similarity,
        timesteps,
        timesteps,
        "Viridis",
        "cos sim",
        "t=%{y} vs t=%{x}: %{z:.3f}",
        "Cosine similarity of embeddings: nearby timesteps look alike",
        "timestep t",
        "timestep t",
    )
    fig.update_yaxes(scaleanchor="x")
    return fig


# ---- training ----------------------------------------------------------------------------------------------------

TRAINING_HEIGHT = 340


def loss_figure(steps, losses, smoothed) -> go.Figure:
    """The training loss per step (thin, faint) and its running average (thick), on a log axis."""
    fig = go.Figure()
    fig.add_trace(_line(steps, losses, "loss per step", {"color": PALETTE[5], "width": 1}, "%{y:.4g}"))
    fig.add_trace(_line(steps, smoothed, "smoothed", {"color": PALETTE[0], "width": 3}, "%{y:.4g}"))
    fig = styled(fig, "Training loss (lower is better)", "optimizer step", "loss", height=TRAINING_HEIGHT)
    fig.update_yaxes(type="log")
    return fig


def bucket_loss_figure(bucket_losses, num_timesteps: int) -> go.Figure:
    """The recent loss in each tenth of the timesteps: which noise levels are hard to undo."""
    count = len(bucket_losses)
    width = num_timesteps / count
    labels = [f"{round(i * width)}-{round((i + 1) * width) - 1}" for i in range(count)]
    values = [np.nan if v is None else v for v in bucket_losses]
    fig = go.Figure(
        go.Bar(x=labels, y=values, marker_color=PALETTE[1], hovertemplate="t %{x}: %{y:.4g}<extra></extra>")
    )
    fig = styled(fig, "Loss by timestep (which t are hard)", "timesteps t", "recent loss", height=TRAINING_HEIGHT)
    fig.update_layout(hovermode="closest")
    return fig


def lr_figure(steps, lrs) -> go.Figure:
    """The learning rate per step: warm-up, then cosine decay."""
    fig = go.Figure(_line(steps, lrs, "learning rate", {"color": PALETTE[2], "width": 3}, "%{y:.3g}"))
    return styled(fig, "Learning rate", "optimizer step", "lr", height=TRAINING_HEIGHT)


# ---- sampling ----------------------------------------------------------------------------------------------------


def visited_timesteps_figure(schedule, visited, current: int | None = None) -> go.Figure:
    """alpha-bar_t with a dot at every timestep the sampler visited (and a large one at the step on show)."""
    visited = np.asarray(visited, dtype=np.int64)
    alpha_bar = schedule.alphas_cumprod.numpy()
    fig = go.Figure(_line(_timesteps(schedule), alpha_bar, "alpha-bar_t", {"color": "#999", "width": 2}, "%{y:.4g}"))
    fig.add_trace(
        go.Scatter(
            x=visited,
            y=alpha_bar[visited],
            mode="markers",
            name=f"visited ({len(visited)} steps)",
            marker={"color": PALETTE[0], "size": 7},
            hovertemplate="t = %{x}: alpha-bar %{y:.4g}<extra></extra>",
        )
    )
    if current is not None:
        fig.add_trace(
            go.Scatter(
                x=[current],
                y=[alpha_bar[current]],
                mode="markers",
                name=f"on show: t = {current}",
                marker={"color": PALETTE[3], "size": 16, "symbol": "diamond"},
                hovertemplate="t = %{x}<extra>on show</extra>",
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
