"""A diffusers pipeline folder, as `DDPMPipeline.save_pretrained` writes it, loaded as a `core.checkpoint.Checkpoint`.

    DIR/model_index.json                          the pipeline's class and its parts
    DIR/unet/config.json                          the UNet2DModel's config
    DIR/unet/diffusion_pytorch_model.safetensors  its weights: the only weights ever read
    DIR/scheduler/scheduler_config.json           the betas, what the UNet predicts, clipping

`load_pipeline` maps it onto the project's contract: the UNet2DModel wrapped as a denoiser with forward(x, t, y=None)
-> prediction (`DiffusersUNet`), the schedule from the scheduler's betas (core.schedules.schedule_from_diffusers_config:
linear, scaled_linear, sigmoid, squaredcos_cap_v2, trained_betas), the objective from its prediction_type
(`OBJECTIVES`: epsilon -> eps, sample -> x0, v_prediction -> v) and clip_sample as the checkpoint's clip_x0. Our
samplers then run on it unchanged; tests/test_diffusers_pipeline.py checks that our DDIM equals diffusers' own DDIM
loop on the same model from the same x_T (with use_clipped_model_output=True, which DDIMScheduler.step's documentation
calls necessary with clip_sample: the noise is recomputed from the clipped x_0, as our samplers always do). Where the
sampler stops (timestep_spacing, steps_offset) is the sampler's choice here, as for every model: it starts from the
project's recommendation for the objective (SamplingDefaults.for_objective), and the user may change it.

Weights come from safetensors only ("models are programs": a pickle can run code when loaded): a folder whose UNet has
pickled weights alone (diffusion_pytorch_model.bin, ...) is refused before any weight file is opened. The weight
file's header is checked against the config's UNet built on the meta device before anything is allocated, then the
tensors are checked for NaN. diffusers itself is imported only when a pipeline is loaded, so the app starts without it.
Accepted: unconditional pixel pipelines (DDPMPipeline, DDIMPipeline) of 1 or 3 channels, square, up to MAX_SIDE px.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from core.checkpoint import (
    MODEL_BUILDERS,
    PICKLE_SUFFIXES,
    Checkpoint,
    CheckpointError,
    check_fit,
    header_shapes,
    load_weights,
    read_json_file,
)
from core.samplers import SamplingDefaults
from core.schedules import NoiseSchedule, schedule_from_diffusers_config

FORMAT = "diffusers-pipeline"  # the "format" of a loaded pipeline's Checkpoint.config
MODEL_TYPE = "diffusers_unet2d"  # the "type" of its model config
PIPELINE_INDEX = "model_index.json"
UNET_CONFIG = "unet/config.json"
UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
SCHEDULER_CONFIG = "scheduler/scheduler_config.json"
PIPELINE_FILES: tuple[str, ...] = (PIPELINE_INDEX, UNET_CONFIG, UNET_WEIGHTS, SCHEDULER_CONFIG)  # all that is read
PIPELINES = ("DDPMPipeline", "DDIMPipeline")  # unconditional pixel-space pipelines of a UNet2DModel and a scheduler
OBJECTIVES = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}  # diffusers' prediction_type -> ours
MAX_SIDE = 256  # pixels
MAX_PIPELINE_BYTES = 512 * 2**20  # the UNet's weights: google/ddpm-*-256 are 455 MB


def is_pipeline_folder(directory: str | Path) -> bool:
    """Whether `directory` is a diffusers pipeline folder (it has model_index.json)."""
    return (Path(directory) / PIPELINE_INDEX).is_file()


def _read_json(directory: Path, name: str) -> dict:
    value = read_json_file(directory / name, f"not a usable diffusers pipeline: {name} is missing", name)
    if not isinstance(value, dict):
        raise CheckpointError(f"{name} is not a JSON object")
    return value


def pickled_weights(directory: str | Path) -> list[str]:
    """The names of the pickled weight files in the pipeline's unet/ folder (never opened)."""
    unet = Path(directory) / "unet"
    return sorted(p.name for p in unet.iterdir() if p.name.lower().endswith(PICKLE_SUFFIXES)) if unet.is_dir() else []


def pickle_only_message(where: str, pickles: list[str]) -> str:
    """Why a pipeline whose UNet weights are pickled only is refused, and what to do instead."""
    return (
        f"refused: {where} has the UNet's weights only as {', '.join(pickles)}, a pickle format that can run code "
        f"when loaded; this app reads only safetensors ({UNET_WEIGHTS}: save the pipeline with "
        "save_pretrained(..., safe_serialization=True), or choose a model that has one)"
    )


def check_pipeline_files(directory: str | Path) -> None:
    """CheckpointError unless the folder is a pipeline this app reads: model_index.json of a DDPMPipeline or
    DDIMPipeline with a UNet2DModel, and the UNet's weights as safetensors (pickled ones alone are refused; no
    weight file is opened here)."""
    directory = Path(directory)
    index = _read_json(directory, PIPELINE_INDEX)
    pipeline = index.get("_class_name")
    if pipeline not in PIPELINES or index.get("unet") != ["diffusers", "UNet2DModel"]:
        raise CheckpointError(
            f"this diffusers pipeline is a {pipeline!r} with unet {index.get('unet')!r}; this app reads unconditional "
            f"pixel pipelines ({', '.join(PIPELINES)}) of a UNet2DModel"
        )
    if not (directory / UNET_WEIGHTS).is_file():
        pickles = pickled_weights(directory)
        if pickles:
            raise CheckpointError(pickle_only_message("this pipeline", pickles))
        raise CheckpointError(f"not a usable diffusers pipeline: {UNET_WEIGHTS} is missing")
    size = (directory / UNET_WEIGHTS).stat().st_size
    if size > MAX_PIPELINE_BYTES:
        raise CheckpointError(
            f"refused: the UNet's weights are {size / 2**20:,.0f} MB, more than the {MAX_PIPELINE_BYTES // 2**20} MB "
            "limit"
        )


def scheduler_settings(config: dict) -> tuple[NoiseSchedule, str, bool]:
    """(schedule, objective, clip_x0) from a diffusers scheduler config; CheckpointError for what our samplers cannot
    reproduce (an unknown beta_schedule or prediction_type, dynamic thresholding, a clip range other than 1)."""
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in OBJECTIVES:
        raise CheckpointError(f"prediction_type {prediction!r} is not one of {', '.join(OBJECTIVES)}")
    if config.get("thresholding", False):
        raise CheckpointError("dynamic thresholding (thresholding: true) is not supported; only clip_sample")
    clip = bool(config.get("clip_sample", True))
    if clip and config.get("clip_sample_range", 1.0) != 1.0:
        raise CheckpointError(f"clip_sample_range {config['clip_sample_range']!r} is not supported; only 1.0")
    try:
        schedule = schedule_from_diffusers_config(config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{SCHEDULER_CONFIG}: {error}") from None
    return schedule, OBJECTIVES[prediction], clip


def _unet_class() -> type[nn.Module]:
    try:
        from diffusers import UNet2DModel
    except ImportError as error:  # a runtime dependency, but say what to do if it is missing
        raise CheckpointError(
            f"reading a diffusers pipeline needs diffusers (pip install diffusers): {error}"
        ) from None
    return UNet2DModel


class DiffusersUNet(nn.Module):
    """A diffusers UNet2DModel as a denoiser of this project: forward(x [B, C, H, W], t [B], y=None) -> the
    prediction [B, C, H, W] (only the first C channels when the UNet also outputs a learned variance). Unconditional:
    `num_classes` is None, and labels are refused."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet
        self.num_classes: int | None = None
        self.in_channels = int(unet.config.in_channels)
        self.size_multiple = 2 ** (len(unet.config.block_out_channels) - 1)  # each down block but the last halves

    @classmethod
    def from_config(cls, config: dict) -> DiffusersUNet:
        """A fresh (untrained) UNet of `config` (as `config` gives it; core.checkpoint.build_model's builder)."""
        return cls(_unet_class().from_config({key: value for key, value in config.items() if key != "type"}))

    @property
    def config(self) -> dict:
        """The UNet2DModel's own config (JSON-ready), with "type" MODEL_TYPE."""
        settings = {key: value for key, value in dict(self.unet.config).items() if not key.startswith("_")}
        return {"type": MODEL_TYPE, **json.loads(json.dumps(settings, default=list))}

    def check_input(self, x: Tensor) -> None:
        """ValueError unless x is a batch of images this UNet takes: [B, C, H, W], H and W multiples of
        size_multiple."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"this UNet takes images [B, {self.in_channels}, H, W], got shape {tuple(x.shape)}")
        if x.shape[-2] % self.size_multiple or x.shape[-1] % self.size_multiple:
            raise ValueError(f"this UNet needs a height and width divisible by {self.size_multiple}")

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        if y is not None:
            raise ValueError("this diffusers UNet is unconditional: it takes no class labels")
        self.check_input(x)
        out = self.unet(x, t, return_dict=False)[0]  # (B, C or 2C, H, W)
        return out[:, : self.in_channels]


MODEL_BUILDERS[MODEL_TYPE] = DiffusersUNet.from_config  # build_model (and so a model on meta) knows it too


def _checked_unet_config(config: dict) -> tuple[int, int]:
    """(side, channels) of a UNet2DModel config this app samples from; CheckpointError otherwise."""
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise CheckpointError(f"{UNET_CONFIG} is a {config.get('_class_name')!r}, not a UNet2DModel")
    if config.get("num_class_embeds") is not None or config.get("class_embed_type") is not None:
        raise CheckpointError("class-conditional diffusers UNets are not supported: only unconditional ones")
    side = config.get("sample_size")
    if isinstance(side, list) and len(side) == 2 and side[0] == side[1]:
        side = side[0]
    if isinstance(side, bool) or not isinstance(side, int) or not 1 <= side <= MAX_SIDE:
        raise CheckpointError(f"{UNET_CONFIG}: sample_size {side!r} must be a square side of 1 to {MAX_SIDE} px")
    channels = config.get("in_channels", 3)
    if channels not in (1, 3) or config.get("out_channels", channels) not in (channels, 2 * channels):
        raise CheckpointError(f"{UNET_CONFIG}: only 1- or 3-channel pictures (in_channels {channels!r})")
    return side, channels


def _load_unet(directory: Path, config: dict) -> nn.Module:
    """The UNet2DModel of `config` with the folder's safetensors weights, checked against the config first."""
    unet_class = _unet_class()
    try:
        with torch.device("meta"):  # no memory: only the names and shapes the config asks for
            skeleton = unet_class.from_config(config)
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise CheckpointError(f"{UNET_CONFIG} does not build a UNet2DModel: {error}") from None
    expected = {key: tuple(value.shape) for key, value in skeleton.state_dict().items()}
    # weights saved before diffusers renamed its attention layers (query -> to_q, ...; google/ddpm-* on the Hub) are
    # renamed as diffusers' own loading does (a dict of names, shapes or tensors, renamed in place)
    renamed = getattr(skeleton, "_fix_state_dict_keys_on_load", lambda state: state)
    check_fit(UNET_WEIGHTS, renamed(header_shapes(directory / UNET_WEIGHTS)), expected)
    unet = unet_class.from_config(config)
    try:
        tensors = load_file(str(directory / UNET_WEIGHTS))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{UNET_WEIGHTS} is not a readable safetensors file: {error}") from None
    load_weights(unet, renamed(tensors), UNET_WEIGHTS)
    return unet


def _sampling_defaults(objective: str, num_timesteps: int) -> SamplingDefaults:
    """The project's recommendation for the objective (core.samplers.SamplingDefaults.for_objective), its steps at
    most T."""
    defaults = SamplingDefaults.for_objective(objective)
    return defaults.override(steps=min(defaults.steps, num_timesteps), num_timesteps=num_timesteps)


def load_pipeline(
    directory: str | Path, *, device: str | torch.device = "cpu", source: str | None = None
) -> Checkpoint:
    """Load a diffusers pipeline folder as a Checkpoint (a fresh model on `device`, for sampling). `source` names
    where it came from (a Hub id; default: the folder). What it was trained on is unknown: its dataset's name is "".
    Any problem raises CheckpointError with the reason."""
    directory = Path(directory)
    check_pipeline_files(directory)
    scheduler_config = _read_json(directory, SCHEDULER_CONFIG)
    schedule, objective, clip = scheduler_settings(scheduler_config)
    unet_config = _read_json(directory, UNET_CONFIG)
    side, channels = _checked_unet_config(unet_config)
    model = DiffusersUNet(_load_unet(directory, unet_config))
    model.to(device).eval().requires_grad_(False)
    source = source or str(directory)
    config = {
        "format": FORMAT,
        "source": source,
        "pipeline": _read_json(directory, PIPELINE_INDEX)["_class_name"],
        "model": model.config,
        "schedule": schedule.params,
        "objective": objective,
        "clip_x0": clip,
        "dataset": {"name": "", "kind": "images", "image_size": side, "channels": channels},  # data unknown
        "sampling_defaults": _sampling_defaults(objective, schedule.num_timesteps).to_dict(),
        "scheduler": scheduler_config,
    }
    return Checkpoint(directory, config, model, None, schedule)
