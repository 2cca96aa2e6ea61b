"""A model folder as one .zip file: what the app offers for download and accepts back as an upload.

    pack_checkpoint("runs/digits", "digits.zip")      # config.json + the .safetensors files it names, stored flat
    unpack_checkpoint("digits.zip", "tmp/upload")     # then core.checkpoint.load_checkpoint("tmp/upload")
    unpack_model("any.zip", "tmp/upload")             # a checkpoint zip, or a zipped diffusers pipeline folder

Unpacking trusts nothing in the archive. A checkpoint zip may hold only the checkpoint's own file names (config.json
and model/ema/training_state[.<hash>].safetensors; at the top or inside one folder), so pickles (.pt, .pth, .ckpt:
"models are programs") and anything else are refused before a byte is written. A zipped diffusers pipeline folder
(model_index.json, at the top or inside folders) gives up only the files core.diffusers_pipeline reads
(PIPELINE_FILES: its JSON and the UNet's safetensors); anything else in it (a README, pictures, the same weights as a
pickle) is never written, and a pipeline whose UNet weights are pickled only is refused. Either way names with ".."
or an absolute path, more members than a model has, or more bytes than the limit are refused, and every member is
written only under the target folder, by a name this module chose. `load_checkpoint` then checks the hashes (ours),
shapes and finiteness of what was unpacked.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path, PurePosixPath

from core.checkpoint import (
    CONFIG_FILE,
    MODEL_FILE,
    PICKLE_SUFFIXES,
    CheckpointError,
    read_config,
    weight_file_role,
)
from core.diffusers_pipeline import (
    MAX_PIPELINE_BYTES,
    PIPELINE_FILES,
    PIPELINE_INDEX,
    UNET_WEIGHTS,
    pickle_only_message,
)

ACCEPTED_NAMES = "config.json, model.safetensors, ema.safetensors, training_state.safetensors (or with .<hash>)"
MAX_MEMBERS = 16  # a checkpoint has at most 4 files (and a folder entry or two)
MAX_PIPELINE_MEMBERS = 64  # a pipeline folder as the Hub or save_pretrained leaves it, with a README and pictures
MAX_UNPACKED_BYTES = 256 * 2**20  # "seed" with EMA and optimizer state is ~110 MB


def pack_checkpoint(directory: str | Path, zip_path: str | Path) -> Path:
    """Zip a checkpoint folder: config.json and the files it names, at the top of the archive. Returns zip_path."""
    directory, zip_path = Path(directory), Path(zip_path)
    config = read_config(directory)
    names = [CONFIG_FILE, *sorted(config["files"])]
    tmp = zip_path.with_name(zip_path.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name in names:
            archive.write(directory / name, arcname=name)
    tmp.replace(zip_path)
    return zip_path


def _parts(name: str) -> tuple[str, ...]:
    """A member's path as parts, or a CheckpointError if it could point outside its folder."""
    normalized = name.replace("\\", "/")
    parts = PurePosixPath(normalized).parts
    if normalized.startswith("/") or (len(normalized) >= 2 and normalized[1] == ":") or ".." in parts:
        raise CheckpointError(f"refused: {name!r} has an absolute path or '..' (it could point outside its folder)")
    return parts


def _member_name(name: str) -> str:
    """The checkpoint file a member stands for ("config.json" or "folder/config.json" -> "config.json"), or a
    CheckpointError saying why the member is refused."""
    parts = _parts(name)
    base = parts[-1] if parts else ""
    if base.lower().endswith(PICKLE_SUFFIXES):
        raise CheckpointError(
            f"refused: {base!r} is a pickle file, which can run code when loaded; this app reads only "
            "safetensors weights and config.json"
        )
    if (base != CONFIG_FILE and weight_file_role(base) is None) or len(parts) > 2:
        raise CheckpointError(
            f"refused: {name!r} is not part of a DDPM Explorer checkpoint (expected only {ACCEPTED_NAMES}, at the "
            "top of the zip or in one folder)"
        )
    return base


def _open(zip_path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        raise CheckpointError(f"{zip_path.name} is not a readable .zip file ({error})") from None


def _files(archive: zipfile.ZipFile, max_members: int) -> list[zipfile.ZipInfo]:
    """The archive's files (not folders, not macOS's metadata), after checking the count of its entries."""
    if len(archive.infolist()) > max_members:
        raise CheckpointError(f"refused: the zip holds {len(archive.infolist())} entries; a model has far fewer")
    return [m for m in archive.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")]


def _extract(archive: zipfile.ZipFile, targets: dict[str, zipfile.ZipInfo], directory: Path, max_bytes: int) -> Path:
    """Write each target member (by its name here, a relative path chosen by this module) under `directory`, after
    checking the declared sizes against max_bytes and reading every member whole (CRC checked)."""
    total = sum(m.file_size for m in targets.values())
    if total > max_bytes:
        raise CheckpointError(
            f"refused: the zip would unpack to {total / 2**20:,.0f} MB, more than the {max_bytes // 2**20} MB limit"
        )
    contents: dict[str, bytes] = {}
    for name, member in targets.items():
        try:
            with archive.open(member) as fp:  # zipfile stops at the declared size and checks the CRC
                contents[name] = fp.read(member.file_size + 1)
        except (RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
            raise CheckpointError(f"{member.filename} could not be unpacked ({error})") from None
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    return directory


def unpack_checkpoint(zip_path: str | Path, directory: str | Path) -> Path:
    """Unpack a checkpoint zip into `directory` (created; it should be new and empty) and return it.

    Raises CheckpointError for anything that is not a checkpoint zip made by this project; nothing is written
    then, except possibly the empty folder."""
    zip_path, directory = Path(zip_path), Path(directory)
    with _open(zip_path) as archive:
        targets: dict[str, zipfile.ZipInfo] = {}
        for member in _files(archive, MAX_MEMBERS):
            name = _member_name(member.filename)
            if name in targets:
                raise CheckpointError(f"refused: the zip holds {name} twice")
            targets[name] = member
        if CONFIG_FILE not in targets or not any(weight_file_role(name) == MODEL_FILE for name in targets):
            raise CheckpointError(f"not a checkpoint zip: it needs {CONFIG_FILE} and {MODEL_FILE}")
        return _extract(archive, targets, directory, MAX_UNPACKED_BYTES)


def unpack_pipeline(zip_path: str | Path, directory: str | Path) -> Path:
    """Unpack the files core.diffusers_pipeline reads from a zipped pipeline folder into `directory` (created) and
    return it; the pipeline's folder is the one of its shallowest model_index.json. CheckpointError if a file is
    missing, the UNet's weights are pickled only, or the zip is unsafe (see the module docstring)."""
    zip_path, directory = Path(zip_path), Path(directory)
    with _open(zip_path) as archive:
        members = {"/".join(_parts(m.filename)): m for m in _files(archive, MAX_PIPELINE_MEMBERS)}
        indexes = sorted((name for name in members if name.rsplit("/", 1)[-1] == PIPELINE_INDEX), key=len)
        if not indexes:
            raise CheckpointError(f"not a diffusers pipeline zip: it has no {PIPELINE_INDEX}")
        root = indexes[0].removesuffix(PIPELINE_INDEX)
        inside = {name.removeprefix(root): member for name, member in members.items() if name.startswith(root)}
        if UNET_WEIGHTS not in inside:
            pickles = [name for name in inside if name.startswith("unet/") and name.lower().endswith(PICKLE_SUFFIXES)]
            if pickles:
                raise CheckpointError(pickle_only_message("this zip", pickles))
        missing = [name for name in PIPELINE_FILES if name not in inside]
        if missing:
            raise CheckpointError(f"not a usable diffusers pipeline zip: it lacks {', '.join(missing)}")
        return _extract(archive, {name: inside[name] for name in PIPELINE_FILES}, directory, MAX_PIPELINE_BYTES)


def unpack_model(zip_path: str | Path, directory: str | Path) -> Path:
    """Unpack an uploaded model zip, a zipped diffusers pipeline folder (it holds a model_index.json) or else a
    checkpoint zip of this project, into `directory`; then core.checkpoint.load_checkpoint(directory) reads either."""
    zip_path = Path(zip_path)
    with _open(zip_path) as archive:
        names = [PurePosixPath(m.filename.replace("\\", "/")).name for m in archive.infolist()]
    if PIPELINE_INDEX in names:
        return unpack_pipeline(zip_path, directory)
    return unpack_checkpoint(zip_path, directory)
