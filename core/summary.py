"""What a denoiser is made of: a layer table, its parameter count, its compute per forward pass, and its speed.

    summary = summarize(make_unet("seed"), (1, 1, 32, 32))
    summary.total_parameters, summary.macs          # 7,132,289 parameters, about 0.88 G multiply-accumulates
    for row in summary.rows: print(row.name, row.type, row.output_shape, row.parameters, row.macs)
    measure_forward_time(make_unet("seed"), (1, 1, 32, 32))   # seconds, median of a few runs

`summarize` runs one forward pass with forward hooks on the model's meaningful blocks (for the U-Net: the time
embedding, the input conv, each level, each down/up-sampling conv, the middle blocks, the output norm and conv; for
any other model, its leaf modules) and counts the compute of every convolution, linear layer and self-attention in
closed form from the shapes they see (hooks, no profiler: PyTorch's FlopCounterMode gives the same numbers but its
first use imports the compiler stack, about a second of the app's start). It works
on the meta device too (`with torch.device("meta"): net = make_unet(...)`): shapes, parameters and MACs come out
without allocating or computing anything, which is how the explorer checks a configuration's cost before building it.

`level_shapes` gives the resolution and width of each U-Net level straight from a config, without a forward pass.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from core.unet import SelfAttention, UNet, UNetConfig


@dataclass(frozen=True)
class LayerRow:
    """One block of the model as it ran: its name in the module tree, class, output shape and cost."""

    name: str  # qualified module name, e.g. "down_levels.1" (as in `model.named_modules()`)
    type: str  # class name, e.g. "Level"
    output_shape: tuple[int, ...]  # shape of the block's (first) output tensor at its first call
    parameters: int  # parameters of the block, its children included
    macs: int  # multiply-accumulates of the block in this forward pass (see `summarize`)


@dataclass(frozen=True)
class ModelSummary:
    """The result of `summarize`: rows in the order the blocks ran, and totals over the whole model."""

    rows: list[LayerRow]
    total_parameters: int  # every parameter of the model, sum(p.numel())
    macs: int  # multiply-accumulates of one forward pass of the whole model
    input_shape: tuple[int, int, int, int]
    output_shape: tuple[int, ...]


class LevelShape(NamedTuple):
    """One U-Net level: its index (0 = full resolution), feature-map side in pixels, and channel count."""

    level: int
    resolution: int
    channels: int


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); cpu for a model with neither."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _check_input_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 4 or not all(isinstance(n, int) and n >= 1 for n in shape):
        raise ValueError(f"input_shape must be four positive integers (B, C, H, W), got {input_shape}")
    return shape  # type: ignore[return-value]


def summary_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The blocks `summarize` reports, as (qualified name, module).

    For a `UNet`: its direct children, with the ModuleLists (levels, down/up-sampling convs) opened one level, and
    Identity placeholders (e.g. no middle attention) left out. Their parameters add up to the whole model's.
    For any other model: its leaf modules (those without children), or the model itself if it is a leaf.
    """
    if isinstance(model, UNet):
        blocks = []
        for name, child in model.named_children():
            if isinstance(child, nn.ModuleList):
                blocks.extend((f"{name}.{i}", item) for i, item in enumerate(child))
            elif not isinstance(child, nn.Identity):
                blocks.append((name, child))
        return blocks
    leaves = [(name, m) for name, m in model.named_modules() if not any(True for _ in m.children())]
    return leaves or [("", model)]


COUNTED_LAYERS = (nn.Conv2d, nn.Linear, SelfAttention)


def layer_macs(module: nn.Module, x: Tensor, out: Tensor) -> int:
    """Multiply-accumulates of one call, in closed form: a convolution does C_in/groups * k_h * k_w per output
    value, a linear layer in_features per output value, self-attention over N = H*W positions 2 * N^2 * C per
    image (Q K^T, then the weights times V; its 1x1 convolutions are counted as convolutions)."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return out.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    batch, channels, height, width = x.shape
    return 2 * batch * (height * width) ** 2 * channels


def _owning_blocks(model: nn.Module, block_names: list[str]) -> dict[str, str]:
    """For every submodule name, the summary block it belongs to (the longest block name that prefixes it)."""
    owners = {}
    for name, _ in model.named_modules():
        matches = [b for b in block_names if b == name or (b and name.startswith(b + ".")) or b == ""]
        if matches:
            owners[name] = max(matches, key=len)
    return owners


def summarize(model: nn.Module, input_shape: tuple[int, int, int, int]) -> ModelSummary:
    """Run one forward pass `model(x, t, y=None)` on zeros of `input_shape` (t = zeros) and describe it.

    Rows: one per block of `summary_modules(model)` that ran, in the order they ran (a block called twice keeps the
    shape of its first call and the MACs of both). MACs (`layer_macs`) count the multiply-adds of convolutions,
    linear layers and attention (its two batched matmuls), one MAC per multiply-add; not biases, normalisation,
    activations, additions, concatenations or the nearest-neighbour upsampling, which are cheap next to those.

    A U-Net given an input size not divisible by 2^(levels-1) raises the U-Net's own ValueError.
    The model runs in eval mode under torch.no_grad on its own device (meta works: no compute), then its mode is
    restored.
    """
    shape = _check_input_shape(input_shape)
    if isinstance(model, UNet):
        model.check_input(torch.empty(shape, device="meta"))  # the U-Net's clear message, before any work
    device = model_device(model)
    blocks = summary_modules(model)
    first_shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: Tensor | tuple) -> None:
            tensor = output[0] if isinstance(output, (tuple, list)) else output
            if name not in first_shapes and isinstance(tensor, Tensor):
                first_shapes[name] = tuple(tensor.shape)

        return hook

    owners = _owning_blocks(model, [name for name, _ in blocks])
    block_macs: dict[str, int] = {}

    def count(name: str):
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            block_macs[owners[name]] = block_macs.get(owners[name], 0) + layer_macs(module, inputs[0], output)

        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in blocks]
    handles += [
        module.register_forward_hook(count(name))
        for name, module in model.named_modules()
        if isinstance(module, COUNTED_LAYERS) and name in owners
    ]
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(shape, device=device)  # (B, C, H, W)
        t = torch.zeros(shape[0], dtype=torch.long, device=device)  # (B,)
        with torch.no_grad():
            out = model(x, t, y=None)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    root = type(model).__name__

    def macs_of(name: str) -> int:
        return block_macs.get(name, 0)

    modules = dict(blocks)
    rows = [  # first_shapes keeps the order in which the hooks first fired: the order the blocks ran
        LayerRow(
            name=name or root,
            type=type(modules[name]).__name__,
            output_shape=shape_,
            parameters=sum(p.numel() for p in modules[name].parameters()),
            macs=macs_of(name),
        )
        for name, shape_ in first_shapes.items()
    ]
    out_tensor = out[0] if isinstance(out, (tuple, list)) else out
    return ModelSummary(
        rows=rows,
        total_parameters=sum(p.numel() for p in model.parameters()),
        macs=sum(block_macs.values()),
        input_shape=shape,
        output_shape=tuple(out_tensor.shape),
    )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def measure_forward_time(
    model: nn.Module,
    input_shape: tuple[int, int, int, int],
    *,
    repeats: int = 5,
    warmup: int = 1,
    max_seconds: float | None = None,
) -> float:
    """Median wall-clock seconds of `model(x, t)` on zeros of `input_shape`, under torch.no_grad, in eval mode.

    Runs `warmup` untimed passes, then up to `repeats` timed ones on the model's device (synchronising CUDA/MPS
    around each). With `max_seconds`, stops timing once the timed passes have taken that long (always at least one),
    so a slow configuration costs about one or two passes, not `repeats`.
    """
    shape = _check_input_shape(input_shape)
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    device = model_device(model)
    if device.type == "meta":
        raise ValueError("a model on the meta device has no weights to time; build it on cpu, cuda or mps")
    x = torch.zeros(shape, device=device)  # (B, C, H, W)
    t = torch.zeros(shape[0], dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    times: list[float] = []
    try:
        with torch.no_grad():
            for _ in range(warmup):
                model(x, t)
            _synchronize(device)
            for _ in range(repeats):
                start = time.perf_counter()
                model(x, t)
                _synchronize(device)
                times.append(time.perf_counter() - start)
                if max_seconds is not None and sum(times) >= max_seconds:
                    break
    finally:
        model.train(was_training)
    return statistics.median(times)


def as_unet_config(config: dict | UNetConfig) -> UNetConfig:
    """A validated `UNetConfig` from a config object, `UNet.config`, or a partial dict such as `PRESETS["seed"]`."""
    cfg = UNetConfig(**asdict(config)) if isinstance(config, UNetConfig) else UNetConfig.from_dict(dict(config))
    cfg.channel_mults = tuple(int(m) for m in cfg.channel_mults)
    cfg.attention_levels = tuple(int(a) for a in cfg.attention_levels)
    cfg.validate()
    return cfg


def meta_unet(config: dict | UNetConfig) -> UNet:
    """The U-Net of `config` on the meta device: its structure and parameter count, with no memory or compute."""
    cfg = as_unet_config(config)
    with torch.device("meta"):
        return UNet(cfg)


def level_shapes(config: dict | UNetConfig, image_size: int) -> list[LevelShape]:
    """(level, resolution, channels) of each encoder level for a square `image_size` input; the decoder mirrors it.

    Level i works at image_size / (patch_size * 2^i) positions with base_channels * channel_mults[i] channels.
    Raises the U-Net's own ValueError when image_size is not divisible by patch_size * 2^(levels-1).
    """
    cfg = as_unet_config(config)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    net = meta_unet(cfg)
    net.check_input(torch.empty(1, cfg.in_channels, image_size, image_size, device="meta"))
    return [
        LevelShape(level, image_size // cfg.patch_size // 2**level, cfg.base_channels * mult)
        for level, mult in enumerate(cfg.channel_mults)
    ]
