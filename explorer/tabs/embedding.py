"""Time embedding tab: how a timestep t becomes a vector the U-Net can use (the sinusoidal embedding)."""

from __future__ import annotations

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch

from core.embedding import sinusoidal_embedding
from explorer.figures import embedding_curves, embedding_heatmap, similarity_heatmap
from explorer.widgets import explanation, whole_number

MIN_DIM, MAX_DIM = 4, 512
MIN_T, MAX_T = 10, 4000
HEATMAP_ROWS = 400  # at most this many timesteps are drawn (evenly spaced), so big T stays fast
SIMILARITY_SIZE = 250
MAX_CURVES = 8

INTRO = r"""
### Time embedding
The U-Net must know how noisy its input is, so the step $t$ is turned into a vector of sines and cosines at many
frequencies: $\mathrm{emb}(t)_i = \sin(t\,\omega_i)$ and $\cos(t\,\omega_i)$ with
$\omega_i = 10000^{-i/(d/2 - 1)}$. Low dimensions change fast (they tell neighbouring steps apart), high dimensions
change slowly (they say roughly where in the process we are).
"""


def parse_dims(text: str, dim: int) -> list[int]:
    """'0, 1, 8' -> [0, 1, 8], each a valid dimension index; a clear gr.Error otherwise."""
    try:
        dims = [int(part) for part in str(text).replace(" ", "").split(",") if part != ""]
    except ValueError:
        raise gr.Error(f"dimensions must be whole numbers separated by commas, like 0, 1, 8; got {text!r}") from None
    if not dims:
        raise gr.Error("list at least one dimension to plot, like 0, 1, 8")
    if len(dims) > MAX_CURVES:
        raise gr.Error(f"plot at most {MAX_CURVES} dimensions at once")
    bad = [d for d in dims if not 0 <= d < dim]
    if bad:
        raise gr.Error(f"dimensions must be between 0 and {dim - 1} for an embedding of size {dim}; got {bad}")
    return dims


def sampled_timesteps(num_timesteps: int, count: int) -> list[int]:
    """At most `count` evenly spaced timesteps from 0 to T-1."""
    return sorted(set(np.linspace(0, num_timesteps - 1, min(count, num_timesteps)).round().astype(int).tolist()))


def embedding_figures(dim: float, num_timesteps: float, dims_text: str) -> tuple[go.Figure, go.Figure, go.Figure]:
    """Callback: heatmap (t by dimension), chosen dimensions over t, cosine similarity of all pairs of t."""
    dim = whole_number("the embedding size", dim, MIN_DIM, MAX_DIM)
    num_timesteps = whole_number("T", num_timesteps, MIN_T, MAX_T)
    dims = parse_dims(dims_text, dim)
    rows = sampled_timesteps(num_timesteps, HEATMAP_ROWS)
    heat = sinusoidal_embedding(torch.tensor(rows), dim).numpy().round(3)
    every_t = list(range(num_timesteps))
    curves = sinusoidal_embedding(torch.tensor(every_t), dim).numpy()
    pairs = sampled_timesteps(num_timesteps, SIMILARITY_SIZE)
    emb = sinusoidal_embedding(torch.tensor(pairs), dim)
    unit = emb / emb.norm(dim=1, keepdim=True)
    similarity = (unit @ unit.T).numpy().round(3)  # (n, n)
    return embedding_heatmap(heat, rows), embedding_curves(curves, every_t, dims), similarity_heatmap(similarity, pairs)


def build_tab() -> None:
    """Layout and wiring of the Time embedding tab."""
    explanation(INTRO)
    first = embedding_figures(64, 1000, "8, 14, 20, 26")
    with gr.Row():
        dim = gr.Slider(
            MIN_DIM,
            MAX_DIM,
            value=64,
            step=2,
            label="Embedding size d",
            info="How many numbers describe each t (the U-Net's time_emb_dim).",
        )
        num_timesteps = gr.Slider(
            MIN_T, MAX_T, value=1000, step=1, label="T (number of steps)", info="The range of t to draw: 0 to T-1."
        )
        dims = gr.Textbox(
            "8, 14, 20, 26",
            label="Dimensions to plot as curves",
            info="Comma-separated indices; the first half are sines, the second half cosines.",
        )
    with gr.Row():
        heatmap = gr.Plot(first[0], label="The embedding of every t: stripes are frequencies")
        similarity = gr.Plot(first[2], label="How similar the embeddings of two timesteps are")
    curves = gr.Plot(first[1], label="A few dimensions over t")
    inputs = [dim, num_timesteps, dims]
    gr.on(
        [dim.change, num_timesteps.change, dims.submit],
        embedding_figures,
        inputs,
        [heatmap, curves, similarity],
        api_name="embedding_figures",
        show_progress="hidden",
        trigger_mode="always_last",
    )
