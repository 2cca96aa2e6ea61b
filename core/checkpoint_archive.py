"""A checkpoint folder as one .zip file: what the app offers for download and accepts back as an upload.

    pack_checkpoint("runs/digits", "digits.zip")      # config.json + the .safetensors files it names, stored flat
    unpack_checkpoint("digits.zip", "tmp/upload")     # then core.checkpoint.load_checkpoint("tmp/upload")

Unpacking trusts nothing in the archive: only the checkpoint's own file names are accepted (config.json and
model/ema/training_state[.<hash>].safetensors; at the top or inside one folder), so pickles
(.pt, .pth, .ckpt: "models are programs") and anything else are refused before a byte is written; names with ".."
or an absolute path, more than a few members, or more bytes than the limit are refused too, and every member is
written only under the target folder, by a name this module chose. `load_checkpoint` then checks the hashes,
shapes and finiteness of what was unpacked.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path, PurePosixPath

from core.checkpoint import CONFIG_FILE, MODEL_FILE, CheckpointError, read_config, weight_file_role

ACCEPTED_NAMES = "config.json, model.safetensors, ema.safetensors, training_state.safetensors (or with .<hash>)"
PICKLE_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")
MAX_MEMBERS = 16  # a checkpoint has at most 4 files (and a folder entry or two)
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


def _member_name(name: str) -> str:
    """The checkpoint file a member stands for ("config.json" or "folder/config.json" -> "config.json"), or a
    CheckpointError saying why the member is refused."""
    normalized = name.replace("\\", "/")
    parts = PurePosixPath(normalized).parts
    if normalized.startswith("/") or (len(normalized) >= 2 and normalized[1] == ":") or ".." in parts:
        raise CheckpointError(f"refused: {name!r} has an absolute path or '..' (it could point outside its folder)")
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


def unpack_checkpoint(zip_path: str | Path, directory: str | Path) -> Path:
    """Unpack a checkpoint zip into `directory` (created; it should be new and empty) and return it.

    Raises CheckpointError for anything that is not a checkpoint zip made by this project; nothing is written
    then, except possibly the empty folder."""
    zip_path, directory = Path(zip_path), Path(directory)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        raise CheckpointError(f"{zip_path.name} is not a readable .zip file ({error})") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")]
        if len(archive.infolist()) > MAX_MEMBERS:
            raise CheckpointError(f"refused: the zip holds {len(archive.infolist())} entries; a checkpoint has 2 to 4")
        targets: dict[str, zipfile.ZipInfo] = {}
        for member in members:
            name = _member_name(member.filename)
            if name in targets:
                raise CheckpointError(f"refused: the zip holds {name} twice")
            targets[name] = member
        if CONFIG_FILE not in targets or not any(weight_file_role(name) == MODEL_FILE for name in targets):
            raise CheckpointError(f"not a checkpoint zip: it needs {CONFIG_FILE} and {MODEL_FILE}")
        total = sum(m.file_size for m in targets.values())
        if total > MAX_UNPACKED_BYTES:
            raise CheckpointError(
                f"refused: the zip would unpack to {total / 2**20:,.0f} MB, more than the "
                f"{MAX_UNPACKED_BYTES // 2**20} MB limit"
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
        (directory / name).write_bytes(data)
    return directory
