"""A small MLP denoiser for 2D point data (the toy sets of core.data), with the U-Net's signature.

    x (B, 2) -> [x, sin(2^k pi x), cos(2^k pi x) for k < fourier_features] -> Linear -> h (B, hidden)
    t (B,)   -> sinusoidal embedding -> MLP (core.embedding.TimeEmbedding) -> emb (B, hidden)  [+ class embedding]
    h -> num_blocks x [h + Linear(SiLU(Linear(SiLU(LayerNorm(h))) + emb))] -> LayerNorm -> SiLU -> Linear -> (B, 2)

`forward(x, t, y=None)` is the U-Net's, so `training_loss`, the samplers and `denoise()` drive either without
knowing which: every coefficient is broadcast by `NoiseSchedule.at`, which handles any rank. As in the U-Net, label
`num_classes` is the "no class" token (classifier-free guidance) and the output layer starts at zero ("predict
zero": a stable first step). Presets reuse the U-Net's names so one `--preset` flag sizes either network.

The Fourier features of the input (Tancik et al. 2020) let a small MLP draw thin, wound shapes: without them the
two arms of the spiral came out as one blurred disk.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.embedding import TimeEmbedding, embed_conditions


@dataclass
class ToyMLPConfig:
    """Everything that rebuilds a `ToyMLP` (stored in checkpoints as `model` in config.json)."""

    dim: int = 2  # coordinates per point
    hidden: int = 128  # width of every hidden layer
    num_blocks: int = 3  # residual blocks
    time_emb_dim: int = 64  # width of the sinusoidal time embedding (its MLP maps it to `hidden`)
    num_classes: int | None = None  # class-conditional when set; label num_classes = "no class"
    fourier_features: int = 0  # frequencies 2^0 .. 2^(F-1) (times pi) of sin and cos per coordinate; 0: raw x only
    extra: dict = field(default_factory=dict)  # free-form notes (e.g. the preset name); not used by the model

    def validate(self) -> None:
        checks = [
            (self.dim >= 1, f"dim must be >= 1, got {self.dim}"),
            (self.hidden >= 1, f"hidden must be >= 1, got {self.hidden}"),
            (self.num_blocks >= 1, f"num_blocks must be >= 1, got {self.num_blocks}"),
            (self.time_emb_dim >= 4, f"time_emb_dim must be >= 4, got {self.time_emb_dim}"),
            (self.num_classes is None or self.num_classes >= 1, "num_classes must be >= 1 or None"),
            (0 <= self.fourier_features <= 16, f"fourier_features must be in 0..16, got {self.fourier_features}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


class ToyBlock(nn.Module):
    """LayerNorm -> SiLU -> Linear, plus the embedding as a bias, then SiLU -> Linear; residual."""

    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.linear1 = nn.Linear(hidden, hidden)
        self.emb_proj = nn.Linear(hidden, hidden)
        self.linear2 = nn.Linear(hidden, hidden)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        z = self.linear1(F.silu(self.norm(h))) + self.emb_proj(F.silu(emb))  # (B, hidden)
        return h + self.linear2(F.silu(z))


class ToyMLP(nn.Module):
    """The MLP denoiser: forward(x [B, dim], t [B], y [B] | None) -> prediction [B, dim]."""

    def __init__(
        self,
        dim: int = 2,
        hidden: int = 128,
        num_blocks: int = 3,
        time_emb_dim: int = 64,
        num_classes: int | None = None,
        extra: dict | None = None,
        fourier_features: int = 0,
    ):
        super().__init__()
        cfg = ToyMLPConfig(dim, hidden, num_blocks, time_emb_dim, num_classes, fourier_features, dict(extra or {}))
        cfg.validate()
        self.cfg = cfg
        self.num_classes = num_classes
        self.time_embedding = TimeEmbedding(time_emb_dim, hidden)
        self.class_embedding = nn.Embedding(num_classes + 1, hidden) if num_classes else None
        self.register_buffer(
            "frequencies", math.pi * 2.0 ** torch.arange(fourier_features, dtype=torch.float32), persistent=False
        )
        self.input = nn.Linear(dim * (1 + 2 * fourier_features), hidden)
        self.blocks = nn.ModuleList(ToyBlock(hidden) for _ in range(num_blocks))
        self.output_norm = nn.LayerNorm(hidden)
        self.output = nn.Linear(hidden, dim)
        nn.init.zeros_(self.output.weight)  # start as "predict zero": a stable first step
        nn.init.zeros_(self.output.bias)

    @property
    def config(self) -> dict:
        """A JSON-ready dict that rebuilds this model with `ToyMLP.from_config`."""
        return {"type": "mlp", **asdict(self.cfg)}

    @classmethod
    def from_config(cls, config: dict) -> ToyMLP:
        allowed = {f.name for f in fields(ToyMLPConfig)}
        kwargs = {k: v for k, v in config.items() if k != "type"}
        unknown = set(kwargs) - allowed
        if unknown:
            raise ValueError(f"unknown MLP config keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        return cls(**kwargs)

    def check_input(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.cfg.dim:
            hint = " (images need a U-Net, not the point MLP)" if x.ndim == 4 else ""
            raise ValueError(f"this MLP denoiser takes points [B, {self.cfg.dim}], got shape {tuple(x.shape)}{hint}")

    def features(self, x: Tensor) -> Tensor:
        """x [B, dim] -> [B, dim * (1 + 2F)]: the coordinates, then sin and cos of each at every frequency."""
        if not self.cfg.fourier_features:
            return x
        angles = (x[:, :, None] * self.frequencies.to(x.dtype)).flatten(1)  # (B, dim * F)
        return torch.cat([x, angles.sin(), angles.cos()], dim=1)

    def embed(self, t: Tensor, y: Tensor | None, batch: int) -> Tensor:
        return embed_conditions(self.time_embedding, self.class_embedding, t, y, batch)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        self.check_input(x)
        emb = self.embed(t, y, x.shape[0]).to(x.dtype)
        h = self.input(self.features(x))  # (B, hidden)
        for block in self.blocks:
            h = block(h, emb)
        return self.output(F.silu(self.output_norm(h)))  # (B, dim)


# Sizes by the U-Net's preset names, so one `preset` setting sizes whichever denoiser the data needs.
# Six Fourier frequencies (pi to 32 pi) per coordinate: with them the tiny MLP draws the spiral's two arms (mean
# nearest-neighbour distance to held-out points 0.021 against a real-vs-real 0.014, 10,000 steps), without them
# a disk with a dense centre (0.046).
TOY_PRESETS: dict[str, dict] = {
    "tiny": dict(hidden=128, num_blocks=3, time_emb_dim=64, fourier_features=6),  # seconds on a CPU
    "small": dict(hidden=256, num_blocks=4, time_emb_dim=128, fourier_features=6),
    "seed": dict(hidden=512, num_blocks=4, time_emb_dim=256, fourier_features=6),
}
TOY_PRESETS["tiny-3-level"] = TOY_PRESETS["tiny"]  # the U-Net preset "tiny" was until 2026-12-03; the MLP is the same


def make_toy_mlp(preset: str = "tiny", *, dim: int = 2, num_classes: int | None = None, **overrides) -> ToyMLP:
    """Build a ToyMLP from a named preset ("tiny", "small", "seed"; "tiny-3-level" is "tiny"), with any constructor
    argument overridden."""
    if preset not in TOY_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(TOY_PRESETS)}")
    kwargs = {**TOY_PRESETS[preset], **overrides}
    extra = {"preset": preset, **kwargs.pop("extra", {})}
    return ToyMLP(dim=dim, num_classes=num_classes, extra=extra, **kwargs)
