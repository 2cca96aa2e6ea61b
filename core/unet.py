"""A configurable U-Net denoiser (Ronneberger et al. 2015, as adapted by Ho et al. 2020) and its named presets.

Shape of the network, for channel_mults (1, 2, 4) and base_channels 64 ("seed"):

    x (B, C, H, W) -> conv -> [level 0: 64 @ H]   ----------------skip---------------->  [up 0: 64 @ H] -> conv -> out
                               | down                                                        ^ up
                              [level 1: 128 @ H/2] -------------skip------------> [up 1: 128 @ H/2]
                               | down                                                  ^ up
                              [level 2: 256 @ H/4] -> middle (res, [attn], res) -> [up 2: 256 @ H/4]

Every residual block receives the time embedding (and the class embedding, if conditional) as a per-channel bias,
uses GroupNorm and SiLU, and skips join the decoder by concatenation. Self-attention is optional per level.
Class conditioning adds a learned embedding of y; label `num_classes` is the "no class" token, used for
classifier-free guidance (Ho & Salimans 2022) and when y is None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.embedding import TimeEmbedding, embed_conditions


def group_count(channels: int, max_groups: int = 32) -> int:
    """The largest group count <= max_groups that divides channels (GroupNorm needs an exact division)."""
    for groups in range(min(max_groups, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


class ResidualBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, then GroupNorm plus the embedding as a per-channel shift -> SiLU -> dropout ->
    conv; residual.

    The embedding is added *after* the second GroupNorm. Added before it (DDPM's original block) it is erased
    whenever a group holds a single channel, which group_count gives every width up to 32: the "tiny" preset then
    never saw t or the label (its outputs were identical for every label). Measured by benchmarks/recipe_search.py
    on the 60-second recipe: a shift after the norm FD 96, AdaGN's scale and shift (zero-initialised) FD 104.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(group_count(in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_channels)  # a shift per channel
        self.norm2 = nn.GroupNorm(group_count(out_channels), out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h) + self.emb_proj(F.silu(emb))[:, :, None, None]  # (B, C_out, 1, 1) shift from t (and y)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map, with a residual connection."""

    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.num_heads = num_heads if channels % num_heads == 0 else 1
        self.norm = nn.GroupNorm(group_count(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))  # each (B, heads, HW, C/heads)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C/heads)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(out)


class Level(nn.Module):
    """The residual blocks (each optionally followed by attention) of one U-Net level, down or up."""

    def __init__(
        self, in_channels: int, out_channels: int, emb_dim: int, num_blocks: int, attention: bool, dropout: float
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            ResidualBlock(in_channels if i == 0 else out_channels, out_channels, emb_dim, dropout)
            for i in range(num_blocks)
        )
        self.attentions = nn.ModuleList(
            SelfAttention(out_channels) if attention else nn.Identity() for _ in range(num_blocks)
        )

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        for block, attention in zip(self.blocks, self.attentions, strict=True):
            x = attention(block(x, emb))
        return x


@dataclass
class UNetConfig:
    """Everything that rebuilds a `UNet` (stored in checkpoints as `model` in config.json)."""

    in_channels: int = 1
    out_channels: int | None = None  # None: same as in_channels
    base_channels: int = 64  # channels at the first level
    channel_mults: tuple[int, ...] = (1, 2, 4)  # level i has base_channels * channel_mults[i] channels
    num_res_blocks: int = 1  # residual blocks per level, in the encoder and the decoder
    time_emb_dim: int = 256  # width of the sinusoidal embedding and its MLP
    attention_levels: tuple[int, ...] = ()  # levels (0 = full resolution) with self-attention
    mid_attention: bool = False  # self-attention in the middle block
    num_classes: int | None = None  # class-conditional when set; label num_classes = "no class"
    dropout: float = 0.0
    patch_size: int = 1  # > 1: the network works on patch x patch blocks of pixels stacked as channels (as DiT)
    extra: dict = field(default_factory=dict)  # free-form notes (e.g. the preset name); not used by the model

    def validate(self) -> None:
        checks = [
            (self.in_channels >= 1, f"in_channels must be >= 1, got {self.in_channels}"),
            (self.out_channels is None or self.out_channels >= 1, "out_channels must be >= 1"),
            (self.base_channels >= 1, f"base_channels must be >= 1, got {self.base_channels}"),
            (
                len(self.channel_mults) >= 1 and all(m >= 1 for m in self.channel_mults),
                f"channel_mults must be positive integers, got {self.channel_mults}",
            ),
            (self.num_res_blocks >= 1, f"num_res_blocks must be >= 1, got {self.num_res_blocks}"),
            (self.time_emb_dim >= 4, f"time_emb_dim must be >= 4, got {self.time_emb_dim}"),
            (
                all(0 <= a < len(self.channel_mults) for a in self.attention_levels),
                f"attention_levels must be in 0..{len(self.channel_mults) - 1}, got {self.attention_levels}",
            ),
            (self.num_classes is None or self.num_classes >= 1, "num_classes must be >= 1 or None"),
            (0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.patch_size >= 1, f"patch_size must be >= 1, got {self.patch_size}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @classmethod
    def from_dict(cls, config: dict) -> UNetConfig:
        """The config of `UNet.config` (its "type" is dropped) or of any subset of the fields, such as a preset's;
        an unknown key raises ValueError naming the allowed ones."""
        allowed = {f.name for f in fields(cls)}
        values = {k: v for k, v in config.items() if k != "type"}
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"unknown U-Net config keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        return cls(**values)


class UNet(nn.Module):
    """The U-Net denoiser, built from its config as nanoGPT's GPT(config): `UNet(UNetConfig(...))`;
    forward(x [B, C, H, W], t [B], y [B] | None) -> prediction [B, C_out, H, W].

    H and W must be divisible by 2 ** (levels - 1). See the module docstring for the architecture. `make_unet` builds
    one from a named preset, `UNet.from_config` from the dict that `UNet.config` gives and checkpoints store.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise TypeError(f"UNet takes a UNetConfig, got {type(config).__name__} (from a dict: UNet.from_config)")
        cfg = replace(  # a copy, so that changing the caller's config later leaves this model's alone
            config,
            channel_mults=tuple(config.channel_mults),
            attention_levels=tuple(config.attention_levels),
            extra=dict(config.extra or {}),
        )
        cfg.validate()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.num_levels = len(cfg.channel_mults)
        widths = [cfg.base_channels * m for m in cfg.channel_mults]
        emb_dim, num_blocks, dropout = cfg.time_emb_dim, cfg.num_res_blocks, cfg.dropout

        self.time_embedding = TimeEmbedding(emb_dim)
        self.class_embedding = nn.Embedding(cfg.num_classes + 1, emb_dim) if cfg.num_classes else None
        patch_area = cfg.patch_size**2  # each position holds a patch's pixels as channels
        self.to_patches = nn.PixelUnshuffle(cfg.patch_size) if cfg.patch_size > 1 else nn.Identity()
        self.from_patches = nn.PixelShuffle(cfg.patch_size) if cfg.patch_size > 1 else nn.Identity()
        self.input_conv = nn.Conv2d(cfg.in_channels * patch_area, widths[0], 3, padding=1)

        self.down_levels = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        channels = widths[0]
        for i, width in enumerate(widths):
            self.down_levels.append(Level(channels, width, emb_dim, num_blocks, i in cfg.attention_levels, dropout))
            channels = width
            if i < self.num_levels - 1:
                self.downsamples.append(nn.Conv2d(width, width, 3, stride=2, padding=1))

        self.mid_block1 = ResidualBlock(channels, channels, emb_dim, dropout)
        self.mid_attention = SelfAttention(channels) if cfg.mid_attention else nn.Identity()
        self.mid_block2 = ResidualBlock(channels, channels, emb_dim, dropout)

        self.up_levels = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        for i in reversed(range(self.num_levels)):
            width = widths[i]
            self.up_levels.append(
                Level(channels + width, width, emb_dim, num_blocks, i in cfg.attention_levels, dropout)
            )
            channels = width
            if i > 0:
                self.upsamples.append(nn.Conv2d(width, widths[i - 1], 3, padding=1))
                channels = widths[i - 1]

        self.output_norm = nn.GroupNorm(group_count(channels), channels)
        self.output_conv = nn.Conv2d(channels, (cfg.out_channels or cfg.in_channels) * patch_area, 3, padding=1)
        nn.init.zeros_(self.output_conv.weight)  # start as "predict zero": a stable first step
        nn.init.zeros_(self.output_conv.bias)

    @property
    def config(self) -> dict:
        """A JSON-ready dict that rebuilds this model with `UNet.from_config`."""
        d = asdict(self.cfg)
        d["channel_mults"] = list(d["channel_mults"])
        d["attention_levels"] = list(d["attention_levels"])
        return {"type": "unet", **d}

    @classmethod
    def from_config(cls, config: dict) -> UNet:
        return cls(UNetConfig.from_dict(config))

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this: patch_size * 2 ** (levels - 1)."""
        return self.cfg.patch_size * 2 ** (self.num_levels - 1)

    def check_input(self, x: Tensor) -> None:
        if x.ndim != 4:
            raise ValueError(f"expected images [B, C, H, W], got shape {tuple(x.shape)}")
        if x.shape[1] != self.cfg.in_channels:
            raise ValueError(f"this U-Net takes {self.cfg.in_channels} channel(s), got {x.shape[1]}")
        m, p = self.size_multiple, self.cfg.patch_size
        patches = f"{p}x{p} patches x " if p > 1 else ""
        h, w = x.shape[-2:]
        if h % m or w % m:
            raise ValueError(
                f"input size {h}x{w} is not divisible by {m} ({patches}2^(levels-1) for {self.num_levels} levels); "
                f"pad or resize it, e.g. to {-(-h // m) * m}x{-(-w // m) * m}"
            )

    def embed(self, t: Tensor, y: Tensor | None, batch: int) -> Tensor:
        return embed_conditions(self.time_embedding, self.class_embedding, t, y, batch)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        self.check_input(x)
        emb = self.embed(t, y, x.shape[0]).to(x.dtype)
        h = self.input_conv(self.to_patches(x))
        skips = []
        for i, level in enumerate(self.down_levels):
            h = level(h, emb)
            skips.append(h)
            if i < self.num_levels - 1:
                h = self.downsamples[i](h)
        h = self.mid_block2(self.mid_attention(self.mid_block1(h, emb)), emb)
        for j, level in enumerate(self.up_levels):
            h = level(torch.cat([h, skips.pop()], dim=1), emb)
            if j < self.num_levels - 1:
                h = self.upsamples[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.from_patches(self.output_conv(F.silu(self.output_norm(h))))


PRESETS: dict[str, dict] = {
    # the blog's U-Net: 64/128/256 channels, one residual block per level, time embedding 256
    "seed": dict(base_channels=64, channel_mults=(1, 2, 4), num_res_blocks=1, time_emb_dim=256),
    # live training on a 2-core CPU: 2x2 patches, 32 channels at 14x14 and 64 at 7x7 for 28x28 digits. Its wider
    # convolutions keep the bf16 matrix units busier than tiny-3-level's 16 channels at full size: 1.33x the images/s
    # at 1.03x the FLOPs per image, and a lower FD after 60 s (benchmarks/RESULTS.md "Live-training recipe, round 3")
    "tiny": dict(base_channels=32, channel_mults=(1, 2), num_res_blocks=1, time_emb_dim=64, patch_size=2),
    # "tiny" until 2026-12-03 (the shipped digit checkpoints are this network): 16, 32, 32 channels at full size
    "tiny-3-level": dict(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1, time_emb_dim=64),
    # shipped pretrained checkpoints: two blocks per level, attention at the lowest resolution
    "small": dict(
        base_channels=32,
        channel_mults=(1, 2, 2),
        num_res_blocks=2,
        time_emb_dim=128,
        attention_levels=(2,),
        mid_attention=True,
    ),
}


def make_unet(preset: str = "tiny", *, in_channels: int = 1, num_classes: int | None = None, **overrides) -> UNet:
    """Build a U-Net from a named preset ("seed", "tiny", "small", "tiny-3-level"), with any `UNetConfig` field
    overridden."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    kwargs = {**PRESETS[preset], **overrides}
    extra = {"preset": preset, **kwargs.pop("extra", {})}
    return UNet(UNetConfig(in_channels=in_channels, num_classes=num_classes, extra=extra, **kwargs))
