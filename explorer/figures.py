"""Plotly figure builders: pure functions of core objects, no Gradio. Large fonts, readable on a projector.

Every builder returns a `plotly.graph_objects.Figure` whose traces hold exactly the values computed by `core`,
so tests can compare what is plotted with what the model uses.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from explorer.theme import themed

FONT_SIZE = 16
FIGURE_HEIGHT = 460
TITLE_OFFSET_PX = 38
LEGEND_OFFSET_PX = 72  # the legend's top, under the title; Plotly moves the plot down below however many rows it has
TOP_MARGIN_PX = 80  # room for the title alone (a figure without a legend)
# log-axis ticks: the densest of these mantissa sets that puts at most MAX_LOG_TICKS labels on the data's range
LOG_TICK_MANTISSAS = ((1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 5), (1,))
MAX_LOG_TICKS = 6
# a colour-blind-safe palette (Okabe & Ito), one colour per schedule or series
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def styled(fig: go.Figure, title: str, x_title: str = "", y_title: str = "", height: int = FIGURE_HEIGHT) -> go.Figure:
    """Apply the explorer's common layout: title, axis titles, large fonts, unified hover, and the colours that read
    in Gradio's light and dark themes (explorer.theme.themed)."""
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
        margin={"l": 70, "r": 20, "t": TOP_MARGIN_PX, "b": 60},
        template="plotly_white",
        # placed in the figure's own pixels (yref "container"), not the plot's: then Plotly reserves the legend's
        # rows above the plot, and a legend that wraps onto more rows pushes the plot down instead of the title
        legend={
            "orientation": "h",
            "yref": "container",
            "y": 1 - LEGEND_OFFSET_PX / height,
            "yanchor": "top",
            "xanchor": "left",
            "x": 0,
        },
        hovermode="x unified",
    )
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    return themed(fig)


def line_trace(x, y, name: str, line: dict, hovertemplate: str, **options) -> go.Scatter:
    """One curve of a line plot (every line figure here draws its traces the same way)."""
    return go.Scatter(x=x, y=y, name=name, mode="lines", line=line, hovertemplate=hovertemplate, **options)


def log_ticks(*series) -> dict:
    """Tick values and labels for a log axis over the positive finite values of `series`: 1-2-3-...-9, 1-2-5 or
    1 per decade, whichever is the densest with at most MAX_LOG_TICKS labels, each written out ("0.2", not
    Plotly's bare "2"). Empty (Plotly's own ticks) when fewer than two would show, as on a range narrower than
    one step of the 1-9 set, where Plotly writes every label out in full anyway; one label at a single value (one
    point: Plotly would span a decade around it in bare digits)."""
    values = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in series] or [np.empty(0)])
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) == 0:
        return {}
    low, high = values.min(), values.max()
    if low == high:
        return {"tickvals": [float(low)], "ticktext": [f"{low:.3g}"]}
    decades = range(int(np.floor(np.log10(low))), int(np.floor(np.log10(high))) + 1)
    for mantissas in LOG_TICK_MANTISSAS:
        candidates = (float(f"{m}e{e}") for e in decades for m in mantissas)  # exact decimals: 0.2, not 2 * 0.1
        ticks = [tick for tick in candidates if low <= tick <= high]
        if len(ticks) <= MAX_LOG_TICKS:
            break
    if len(ticks) < 2:
        return {}
    return {"tickvals": ticks, "ticktext": [f"{t:g}" for t in ticks]}


# ---- schedules -------------------------------------------------------------------------------------------------


def timestep_values(schedule) -> list[int]:
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
            line_trace(
                timestep_values(schedule),
                schedule.alphas_cumprod.numpy(),
                label,
                {"color": color, "width": 3},
                "%{y:.6g}",
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
            line_trace(
                timestep_values(schedule),
                schedule.betas.numpy(),
                label,
                {"color": PALETTE[i % len(PALETTE)], "width": 3},
                "%{y:.6g}",
            )
        )
    fig = styled(fig, "beta_t: noise added at each step", "timestep t", "beta_t")
    if log_y:
        fig.update_yaxes(type="log", **log_ticks(*(schedule.betas.numpy() for schedule in schedules.values())))
    else:
        fig.update_yaxes(type="linear")
    return fig


def amplitude_figure(schedules: dict) -> go.Figure:
    """Signal amplitude sqrt(alpha-bar_t) (solid) and noise amplitude sqrt(1 - alpha-bar_t) (dashed). The legend
    names each schedule once (its two curves are one legend group; the title says which line is which)."""
    fig = go.Figure()
    for i, (label, schedule) in enumerate(schedules.items()):
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(
            line_trace(
                timestep_values(schedule),
                schedule.sqrt_alphas_cumprod.numpy(),
                label,
                {"color": color, "width": 3},
                f"{label}: signal %{{y:.4f}}<extra></extra>",
                legendgroup=label,
            )
        )
        fig.add_trace(
            line_trace(
                timestep_values(schedule),
                schedule.sqrt_one_minus_alphas_cumprod.numpy(),
                label,
                {"color": color, "width": 3, "dash": "dash"},
                f"{label}: noise %{{y:.4f}}<extra></extra>",
                legendgroup=label,
                showlegend=False,
            )
        )
    return styled(fig, "Signal (solid) vs noise (dashed)", "timestep t", "amplitude")


def log_snr_figure(schedules: dict) -> go.Figure:
    """log SNR_t = log(alpha-bar_t / (1 - alpha-bar_t)); -inf at the end of a zero-terminal-SNR schedule is cut."""
    fig = go.Figure()
    for i, (label, schedule) in enumerate(schedules.items()):
        log_snr = np.where(np.isfinite(schedule.log_snr.numpy()), schedule.log_snr.numpy(), np.nan)  # log 0: a gap
        fig.add_trace(
            line_trace(
                timestep_values(schedule), log_snr, label, {"color": PALETTE[i % len(PALETTE)], "width": 3}, "%{y:.3f}"
            )
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
    fig.add_trace(line_trace(grid, normal, "N(0, 1)", {"color": PALETTE[3], "width": 3}, "%{y:.3f}"))
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
            line_trace(
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
    fig.add_trace(line_trace(steps, losses, "loss per step", {"color": PALETTE[5], "width": 1}, "%{y:.4g}"))
    fig.add_trace(line_trace(steps, smoothed, "smoothed", {"color": PALETTE[0], "width": 3}, "%{y:.4g}"))
    fig = styled(fig, "Training loss (lower is better)", "optimizer step", "loss", height=TRAINING_HEIGHT)
    fig.update_yaxes(type="log", **log_ticks(losses, smoothed))
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


def class_histogram_figure(counts) -> go.Figure:
    """How many samples the reference classifier reads as each digit 0-9 (an even spread: every digit is drawn)."""
    digits = [str(d) for d in range(len(counts))]
    fig = go.Figure(
        go.Bar(x=digits, y=list(counts), marker_color=PALETTE[0], hovertemplate="digit %{x}: %{y}<extra></extra>")
    )
    fig = styled(fig, "Which digits the samples are", "digit read by the classifier", "samples", height=360)
    fig.update_layout(hovermode="closest")
    fig.update_xaxes(type="category")
    return fig


def lr_figure(steps, lrs) -> go.Figure:
    """The learning rate per step: warm-up, then cosine decay."""
    fig = go.Figure(line_trace(steps, lrs, "learning rate", {"color": PALETTE[2], "width": 3}, "%{y:.3g}"))
    return styled(fig, "Learning rate", "optimizer step", "lr", height=TRAINING_HEIGHT)


# ---- sampling ----------------------------------------------------------------------------------------------------
