"""Sinusoidal time embedding (Vaswani et al. 2017, as used for timesteps by Ho et al. 2020) and its MLP wrapper.

The convention is the seed's, pinned by a test: half = dim // 2 frequencies
freq_i = exp(-ln(max_period) * i / (half - 1)), i = 0 .. half-1, and the embedding is cat(sin(t freq), cos(t freq)).
So the first sine has frequency 1 (period 2 pi steps) and the last has period 2 pi max_period. Codebases differ here
(diffusers divides by half, some put cos first); ours divides by half - 1 and puts sin first.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

MIN_EMBEDDING_DIM = 4


def check_embedding_dim(dim: int) -> None:
    """ValueError unless dim >= MIN_EMBEDDING_DIM (checked without making a tensor: building a model on the meta
    device must not run tensor code, which costs over a second of imports the first time)."""
    if dim < MIN_EMBEDDING_DIM:
        raise ValueError(f"embedding dim must be >= {MIN_EMBEDDING_DIM}, got {dim}")


def embedding_frequencies(dim: int, max_period: float = 10000.0) -> Tensor:
    """The half = dim // 2 angular frequencies of the embedding, from 1 down to 1 / max_period (float32)."""
    check_embedding_dim(dim)
    half = dim // 2
    return torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / (half - 1))


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Embed timesteps t [B] (int or float) as [B, dim]: sin then cos of t times each frequency.

    An odd dim gets a final zero column so the output always has exactly dim columns.
    """
    t = torch.as_tensor(t)
    if t.ndim == 0:
        t = t[None]
    freqs = embedding_frequencies(dim, max_period).to(t.device)
    args = t.float()[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)  # (B, 2 * half)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class TimeEmbedding(nn.Module):
    """sinusoidal_embedding(t, dim) followed by the usual MLP: Linear(dim, out) -> SiLU -> Linear(out, out)."""

    def __init__(self, dim: int, out_dim: int | None = None, max_period: float = 10000.0):
        super().__init__()
        out_dim = out_dim or dim
        check_embedding_dim(dim)
        self.dim = dim
        self.max_period = max_period
        self.mlp = nn.Sequential(nn.Linear(dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sinusoidal_embedding(t, self.dim, self.max_period))


def embed_conditions(
    time_embedding: TimeEmbedding, class_embedding: nn.Embedding | None, t: Tensor, y: Tensor | None, batch: int
) -> Tensor:
    """A denoiser's conditioning vector [B, out_dim]: the time embedding of t (an int or [B]) plus, for a
    class-conditional model, the embedding of labels y [B]. Label num_classes (the embedding's last row) is the
    "no class" token, used when y is None (classifier-free guidance, Ho & Salimans 2022)."""
    t = torch.as_tensor(t, device=time_embedding.mlp[0].weight.device)
    if t.ndim == 0:
        t = t.expand(batch)
    emb = time_embedding(t)  # (B, out_dim)
    if class_embedding is not None:
        num_classes = class_embedding.num_embeddings - 1
        if y is None:
            y = torch.full((batch,), num_classes, dtype=torch.long, device=emb.device)
        if y.device.type != "meta" and bool(((y < 0) | (y > num_classes)).any()):  # meta: shapes only, no values
            raise ValueError(f"labels must be in 0..{num_classes} ({num_classes} = no class)")
        emb = emb + class_embedding(y)
    elif y is not None:
        raise ValueError("this model is not class-conditional; pass y=None")
    return emb
