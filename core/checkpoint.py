"""Checkpoints: a folder of safetensors weights and a JSON config that rebuilds everything; atomic writes.

    DIR/config.json                        model config, schedule, objective, dataset, step, version, file hashes,
                                           and (optional) the sampler settings it samples best with
    DIR/model.<hash>.safetensors           the trained weights
    DIR/ema.<hash>.safetensors             the EMA weights (used for sampling when present)
    DIR/training_state.<hash>.safetensors  optimizer moments and RNG states, for resuming (optional)

Nothing is ever unpickled: weights are safetensors, the rest is JSON ("models are programs": a .pt from a stranger
can run code). config.json names the files that belong together with their SHA-256, and replacing it is the one
step that commits a save: the weight files are written under names of their own (<hash> is the first 12 hex
digits of the file's SHA-256), fsynced and renamed into place beside the previous ones, then config.json is
replaced with os.replace; only then are the previous files deleted. So a save that fails or is killed at any
moment leaves a checkpoint that loads: the previous one (config.json still names the previous files) or the new
one. A failure removes what it staged; what a killed save left behind (a temp file, unnamed weights) is removed by
the next save into the folder and never read. Format 1 folders (fixed names: model.safetensors, ...) still load.

config.json's "sampling_defaults" ({"sampler": "ddim", "steps": 50, "eta": 1.0}, core.samplers.SamplingDefaults) is
what the CLI and the Sample tab sample with unless told otherwise; a checkpoint saved before it was recorded gets
the recommendation for its objective (SamplingDefaults.for_objective). Editing it does not touch the weights' hashes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from core import __version__
from core.diffusion import OBJECTIVES
from core.samplers import SamplingDefaults
from core.schedules import NoiseSchedule, schedule_from_params
from core.toy import ToyMLP
from core.unet import UNet

FORMAT = "ddpm-explorer-checkpoint"
FORMAT_VERSION = 2  # 1: fixed weight file names; 2: names carrying the file's hash (atomic saves)
CONFIG_FILE = "config.json"
SAMPLING_DEFAULTS = "sampling_defaults"  # config.json's (optional) record of the sampler settings, see above
# the three weight files by role (also their format-1 names); in a folder: "<stem>.<hash>.safetensors"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FILE = "training_state.safetensors"
WEIGHT_FILE_NAME = re.compile(r"(model|ema|training_state)(?:\.([0-9a-f]{12}))?\.safetensors")
PICKLE_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")  # weights never read
TEMP_FILE_NAME = re.compile(r"\.(config\.json|(model|ema|training_state)\.safetensors)\..+\.tmp")  # a save's staging

MODEL_BUILDERS: dict[str, Callable[[dict], nn.Module]] = {"unet": UNet.from_config, "mlp": ToyMLP.from_config}


class CheckpointError(ValueError):
    """A checkpoint that cannot be saved or loaded; the message says why."""


def build_model(model_config: dict) -> nn.Module:
    """Rebuild a denoiser from its `config` dict (its "type" picks the class)."""
    kind = model_config.get("type")
    if kind not in MODEL_BUILDERS:
        raise CheckpointError(f"unknown model type {kind!r}; known: {', '.join(MODEL_BUILDERS)}")
    try:
        return MODEL_BUILDERS[kind](model_config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"model config does not build a model: {error}") from error


def sampling_defaults_of(config: dict) -> SamplingDefaults:
    """The sampler settings a checkpoint's config records, or, when it records none (saved before they were),
    the recommendation for its objective. CheckpointError if the record is invalid."""
    record = config.get(SAMPLING_DEFAULTS)
    if record is None:
        return SamplingDefaults.for_objective(config["objective"])
    schedule = config.get("schedule")
    num_timesteps = schedule.get("num_timesteps") if isinstance(schedule, dict) else None
    try:
        return SamplingDefaults.from_dict(record, num_timesteps if isinstance(num_timesteps, int) else None)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{CONFIG_FILE}: {SAMPLING_DEFAULTS} {error}") from error


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weight_file_role(name: str) -> str | None:
    """The role (MODEL_FILE, EMA_FILE or STATE_FILE) of a weight file's name, or None for any other name."""
    match = WEIGHT_FILE_NAME.fullmatch(name)
    return f"{match.group(1)}.safetensors" if match else None


def named_weight_file(config: dict, role: str) -> str | None:
    """The file config.json names for `role` (MODEL_FILE, EMA_FILE or STATE_FILE), or None if it names none."""
    return next((name for name in config["files"] if weight_file_role(name) == role), None)


def checkpoint_file(directory: str | Path, role: str = MODEL_FILE) -> Path:
    """The path of a checkpoint folder's file for `role` (MODEL_FILE by default), as its config.json names it."""
    directory = Path(directory)
    name = named_weight_file(read_config(directory), role)
    if name is None:
        raise CheckpointError(f"{directory} has no {role.removesuffix('.safetensors')} weights")
    return directory / name


def _fsync_file(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())


def _temp_path(directory: Path, name: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; a checkpoint is an ordinary, shareable file
    return Path(tmp)


def _state_tensors(module: nn.Module) -> dict[str, Tensor]:
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"refusing to save non-finite weights ({key} has NaN or inf)")
    return state


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    """Split an optimizer's state_dict into tensors (for safetensors) and JSON-ready metadata."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict] = {}
    for index, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict) -> None:
    """Inverse of `optimizer_tensors`: load the saved state into `optimizer` (its parameters decide the device)."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, entries in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entries)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    directory: str | Path,
    model: nn.Module,
    config: dict,
    *,
    ema_model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    rng_states: dict[str, Tensor] | None = None,
) -> Path:
    """Save a checkpoint folder atomically. `config` holds at least "schedule" (NoiseSchedule.params) and
    "objective", and may hold "sampling_defaults" (SamplingDefaults.to_dict(); an invalid one is refused before
    anything is written); the model config, format and package version are added here. Returns the folder."""
    if config.get(SAMPLING_DEFAULTS) is not None:
        sampling_defaults_of(config)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Tensor]] = {MODEL_FILE: _state_tensors(model)}
    if ema_model is not None:
        files[EMA_FILE] = _state_tensors(ema_model)
    state_meta = None
    if optimizer is not None or rng_states:
        state_tensors, state_meta = optimizer_tensors(optimizer) if optimizer is not None else ({}, {})
        for name, value in (rng_states or {}).items():
            state_tensors[f"rng.{name}"] = value.detach().to("cpu").contiguous()
        files[STATE_FILE] = state_tensors

    staged: list[Path] = []  # temp files of this save, removed if it fails
    written: list[Path] = []  # weight files this save put in place, removed if it fails before the commit
    committed = False
    try:
        hashes = {}
        for role, tensors in files.items():
            tmp = _temp_path(directory, role)
            staged.append(tmp)
            metadata = {"optimizer": json.dumps(state_meta)} if role == STATE_FILE and state_meta else None
            save_file(tensors, str(tmp), metadata=metadata)
            os.chmod(tmp, 0o644)  # safetensors recreates the file 0600; a checkpoint is a shareable file
            _fsync_file(tmp)
            digest = _sha256(tmp)
            name = f"{role.removesuffix('.safetensors')}.{digest[:12]}.safetensors"
            existed = (directory / name).exists()  # same hash: the same bytes, already named by config.json
            os.replace(tmp, directory / name)
            if not existed:
                written.append(directory / name)
            hashes[name] = digest
        full_config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            **config,
            "model": model.config,
            "files": hashes,
        }
        tmp = _temp_path(directory, CONFIG_FILE)
        staged.append(tmp)
        tmp.write_text(json.dumps(full_config, indent=2, sort_keys=True))
        _fsync_file(tmp)
        _fsync_folder(directory)  # the weight files' names are on disk before config.json names them
        os.replace(tmp, directory / CONFIG_FILE)  # the commit
        committed = True
        _fsync_folder(directory)
        _remove_leftovers(directory, keep=set(hashes))
    finally:
        for path in staged + ([] if committed else written):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return directory


def _fsync_folder(directory: Path) -> None:
    """Persist the folder's renames (not possible on every platform)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_leftovers(directory: Path, keep: set[str]) -> None:
    """After a commit: delete the weight files config.json no longer names and the temp files of saves that were
    killed (".<name>.<random>.tmp"); nothing else in the folder is touched."""
    for path in directory.iterdir():
        stale_weights = weight_file_role(path.name) is not None and path.name not in keep
        stale_temp = TEMP_FILE_NAME.fullmatch(path.name) is not None
        if (stale_weights or stale_temp) and path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def read_json_file(path: Path, missing: str, name: str | None = None) -> object:
    """The JSON value in `path`, or CheckpointError: `missing` when there is no such file, or that the file (called
    `name` in the message, default its file name) is not valid JSON."""
    if not path.is_file():
        raise CheckpointError(missing)
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{name or path.name} is not valid JSON: {error}") from error


def read_config(directory: str | Path) -> dict:
    """config.json of a checkpoint folder, checked for the fields every checkpoint has."""
    directory = Path(directory)
    config = read_json_file(directory / CONFIG_FILE, f"{directory} is not a checkpoint folder: no {CONFIG_FILE}")
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{CONFIG_FILE} is not a {FORMAT} config")
    for key in ("model", "schedule", "objective", "files"):
        if key not in config:
            raise CheckpointError(f"{CONFIG_FILE} lacks {key!r}")
    if config["objective"] not in OBJECTIVES:
        raise CheckpointError(f"{CONFIG_FILE} has objective {config['objective']!r}; known: {', '.join(OBJECTIVES)}")
    sampling_defaults_of(config)  # a bad record is refused here, with what is wrong
    version = config.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{CONFIG_FILE} has format version {version!r}; this app reads up to {FORMAT_VERSION}")
    if not isinstance(config["files"], dict) or any(weight_file_role(str(name)) is None for name in config["files"]):
        raise CheckpointError(f"{CONFIG_FILE} names files that are not checkpoint weights: {config['files']!r:.200}")
    return config


def _verified_path(directory: Path, role: str, config: dict) -> Path:
    """The path of the file config.json names for `role`, after checking that it exists and has the recorded
    SHA-256."""
    name = named_weight_file(config, role) or role
    path = directory / name
    expected = config["files"].get(name)
    if expected is None or not path.is_file():
        raise CheckpointError(f"{name} is missing from {directory}")
    if _sha256(path) != expected:
        raise CheckpointError(f"{name} does not match {CONFIG_FILE} (a different or damaged file)")
    return path


def header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header, without reading the tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path.name} is not a readable safetensors file: {error}") from error


def check_fit(name: str, shapes: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]) -> None:
    """CheckpointError unless the weight file `name`'s tensor names and shapes are exactly the model's."""
    missing, unexpected = set(expected) - set(shapes), set(shapes) - set(expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{name} does not fit the model: missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}"
        )
    for key, shape in shapes.items():
        if shape != expected[key]:
            raise CheckpointError(f"{name}: {key} has shape {shape}, the model needs {expected[key]}")


def _verified_weights_that_fit(directory: Path, config: dict) -> dict[str, Path]:
    """The model's (and the EMA's, if any) weight files, verified by hash, by role. Their headers' shapes are
    compared with the config's model built on the meta device (no memory), so a config that asks for an enormous
    network next to small weights is refused before anything is allocated."""
    with torch.device("meta"):
        skeleton = build_model(config["model"])
    expected = {key: tuple(value.shape) for key, value in skeleton.state_dict().items()}
    paths = {}
    for role in (MODEL_FILE, EMA_FILE):
        if role == MODEL_FILE or named_weight_file(config, role):
            paths[role] = _verified_path(directory, role, config)
            check_fit(role, header_shapes(paths[role]), expected)
    return paths


def _load_tensors(path: Path, name: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors and metadata of a weight file already verified by `_verified_path`."""
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{name} is not a readable safetensors file: {error}") from error
    return tensors, metadata


def load_weights(model: nn.Module, tensors: dict[str, Tensor], name: str) -> None:
    """Load `tensors` into `model` after checking that they fit it and are finite (CheckpointError if not)."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    check_fit(name, {key: tuple(value.shape) for key, value in tensors.items()}, expected)
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{name}: {key} holds NaN or inf")
    model.load_state_dict(tensors)


@dataclass
class Checkpoint:
    """A loaded checkpoint: fresh models (never one already in use), the schedule and the config."""

    directory: Path
    config: dict
    model: nn.Module
    ema_model: nn.Module | None
    schedule: NoiseSchedule

    @property
    def objective(self) -> str:
        return str(self.config["objective"])

    @property
    def step(self) -> int:
        return int(self.config.get("step", 0))

    @property
    def sampling_defaults(self) -> SamplingDefaults:
        """The sampler settings this checkpoint samples best with (its record, or its objective's defaults)."""
        return sampling_defaults_of(self.config)

    @property
    def clip_x0(self) -> bool:
        """Whether sampling clamps the predicted clean sample to [-1, 1] (a diffusers scheduler's clip_sample; our
        own checkpoints: yes, pixels and the 2D toy sets live in [-1, 1])."""
        return bool(self.config.get("clip_x0", True))

    @property
    def sampling_model(self) -> nn.Module:
        """The EMA weights when present (they sample better), else the raw weights."""
        return self.ema_model if self.ema_model is not None else self.model

    @property
    def dataset_name(self) -> str:
        """The name of the data it was trained on (core.data), e.g. "mnist5k" or "moons"."""
        return str(self.config.get("dataset", {}).get("name", ""))

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample: (C, H, W) for images, (D,) for 2D toy points."""
        dataset = self.config.get("dataset", {})
        if dataset.get("kind") == "points":
            return (dataset.get("dim", 2),)
        size = dataset.get("image_size", 32)
        return (dataset.get("channels", 1), size, size)


def load_checkpoint(directory: str | Path, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint folder into freshly built models on `device`. Any problem raises CheckpointError.
    A diffusers pipeline folder (model_index.json, unet/, scheduler/) is read by core.diffusers_pipeline."""
    directory = Path(directory)
    from core import diffusers_pipeline  # imports this module: imported here, once a folder is loaded

    if diffusers_pipeline.is_pipeline_folder(directory):
        return diffusers_pipeline.load_pipeline(directory, device=device)
    config = read_config(directory)
    try:
        schedule = schedule_from_params(config["schedule"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"schedule in {CONFIG_FILE} is invalid: {error}") from error
    paths = _verified_weights_that_fit(directory, config)
    model = build_model(config["model"])
    load_weights(model, _load_tensors(paths[MODEL_FILE], MODEL_FILE)[0], MODEL_FILE)
    ema_model = None
    if EMA_FILE in paths:
        ema_model = build_model(config["model"])
        load_weights(ema_model, _load_tensors(paths[EMA_FILE], EMA_FILE)[0], EMA_FILE)
        ema_model.to(device).eval().requires_grad_(False)
    return Checkpoint(directory, config, model.to(device), ema_model, schedule)


def load_training_state(directory: str | Path, optimizer: torch.optim.Optimizer | None) -> dict[str, Tensor]:
    """Restore the optimizer (in place) from a checkpoint and return its saved RNG states by name."""
    directory = Path(directory)
    config = read_config(directory)
    if not named_weight_file(config, STATE_FILE):
        raise CheckpointError(f"{directory} has no training state to resume from (saved without optimizer)")
    tensors, metadata = _load_tensors(_verified_path(directory, STATE_FILE, config), STATE_FILE)
    if optimizer is not None:
        try:
            restore_optimizer(optimizer, tensors, json.loads(metadata["optimizer"]))
        except (KeyError, ValueError, json.JSONDecodeError) as error:
            raise CheckpointError(f"optimizer state does not fit: {error}") from error
    return {k.removeprefix("rng."): v for k, v in tensors.items() if k.startswith("rng.")}
