"""Diffusers pipelines from the Hugging Face Hub: the size checked first, then only the pipeline's JSON and
safetensors files fetched into a local cache, for core.diffusers_pipeline.load_pipeline.

    folder = fetch_pipeline("google/ddpm-cifar10-32")   # HubError with a message a student understands otherwise

Before anything is downloaded, huggingface_hub's `HfApi.model_info(files_metadata=True)` lists the repo's files
with their sizes, and `files_to_fetch` decides: the four pipeline files (core.diffusers_pipeline.PIPELINE_FILES:
*.json and the UNet's *.safetensors) or a refusal (a file missing, the UNet's weights pickled only, more than
MAX_PIPELINE_BYTES in all). Then `snapshot_download` fetches exactly those files, at the revision that was measured,
into `cache_dir()`, where a second request finds them. Offline (HF_HUB_OFFLINE=1, no network, any connection error) a
pipeline already in the cache is used, and otherwise the message says that the server cannot reach the Hub. Nothing
here runs at import or on the app's default path: only when someone asks for a Hub model.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from core.checkpoint import PICKLE_SUFFIXES
from core.diffusers_pipeline import MAX_PIPELINE_BYTES, PIPELINE_FILES, UNET_WEIGHTS, pickle_only_message

CACHE_ENV = "DDPM_EXPLORER_HUB_CACHE"  # where fetched pipelines are kept; default ~/.cache/ddpm-explorer/hub
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")  # owner/name, as the Hub allows them
TIMEOUT = 10.0  # seconds for the Hub to answer the size check
EXAMPLE_ID = "google/ddpm-cifar10-32"


class HubError(ValueError):
    """A Hub model that cannot be used; the message says why and what to do."""


def cache_dir() -> Path:
    """Where fetched pipelines are kept: $DDPM_EXPLORER_HUB_CACHE, else ~/.cache/ddpm-explorer/hub."""
    named = os.environ.get(CACHE_ENV)
    return Path(named) if named else Path.home() / ".cache" / "ddpm-explorer" / "hub"


def check_repo_id(text: object) -> str:
    """The Hub model id typed (owner/name, spaces around it dropped), or HubError saying what one looks like."""
    repo_id = str(text or "").strip()
    if not REPO_ID.fullmatch(repo_id) or ".." in repo_id or repo_id.endswith((".git", ".")):
        raise HubError(f"{repo_id!r} is not a Hub model id: type owner/name, for example {EXAMPLE_ID}")
    return repo_id


def files_to_fetch(repo_id: str, sizes: Mapping[str, int | None], max_bytes: int = MAX_PIPELINE_BYTES) -> list[str]:
    """The files to download from a repo whose files have these sizes in bytes (None: unknown), or HubError:
    a pipeline file missing, the UNet's weights only in a pickle format, or more than max_bytes in all."""
    if UNET_WEIGHTS not in sizes:
        pickles = [name for name in sizes if name.startswith("unet/") and name.lower().endswith(PICKLE_SUFFIXES)]
        if pickles:
            raise HubError(pickle_only_message(repo_id, pickles))
    missing = [name for name in PIPELINE_FILES if name not in sizes]
    if missing:
        raise HubError(
            f"{repo_id} is not a diffusers pipeline this app reads (it lacks {', '.join(missing)}); try a DDPM "
            f"pipeline such as {EXAMPLE_ID}"
        )
    if sizes[UNET_WEIGHTS] is None:
        raise HubError(f"the Hub did not say how large {repo_id}'s weights are, so they were not downloaded")
    total = sum(sizes[name] or 0 for name in PIPELINE_FILES)
    if total > max_bytes:
        raise HubError(
            f"{repo_id} is {total / 2**20:,.0f} MB, more than this server's {max_bytes // 2**20} MB limit for Hub "
            "models; choose a smaller one"
        )
    return list(PIPELINE_FILES)


def _offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")
    return flag or constants.is_offline_mode()


def _cached(repo_id: str, cache: Path) -> Path | None:
    """The most recently fetched complete copy of the pipeline in `cache` (huggingface_hub's cache layout, read
    with scan_cache_dir), or None."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        repos = scan_cache_dir(cache).repos
    except (CacheNotFound, OSError):
        return None
    folders = [
        revision.snapshot_path
        for repo in repos
        if repo.repo_id == repo_id and repo.repo_type == "model"
        for revision in sorted(repo.revisions, key=lambda revision: revision.last_modified, reverse=True)
        if all((revision.snapshot_path / name).is_file() for name in PIPELINE_FILES)
    ]
    return Path(folders[0]) if folders else None


def _unreachable(repo_id: str, cache: Path, why: str) -> Path:
    folder = _cached(repo_id, cache)
    if folder is None:
        raise HubError(
            f"this server cannot reach the Hugging Face Hub ({why}), and {repo_id} is not in its cache; Hub models "
            "work only when the server is online (uploading a zipped pipeline folder works offline)"
        )
    return folder


def fetch_pipeline(repo_id: str, *, max_bytes: int = MAX_PIPELINE_BYTES, cache: Path | None = None, api=None) -> Path:
    """The local folder of Hub model `repo_id`'s pipeline files, checked for size and downloaded (or found in the
    cache). HubError with the reason for a bad id, a repo that is missing, private or gated, not a pipeline, too
    large, pickle-only, or an unreachable Hub. `api`: an HfApi (tests pass a fake)."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import GatedRepoError, HTTPError, RepositoryNotFoundError, RevisionNotFoundError

    repo_id = check_repo_id(repo_id)
    cache = cache or cache_dir()
    if _offline():
        return _unreachable(repo_id, cache, "offline mode: HF_HUB_OFFLINE is set")
    api = api or HfApi()
    try:
        info = api.model_info(repo_id, files_metadata=True, timeout=TIMEOUT)
    except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError):
        raise HubError(f"there is no public model {repo_id} on the Hub (or it is private or gated)") from None
    except (HTTPError, OSError) as error:  # no network, a timeout, the Hub down
        return _unreachable(repo_id, cache, type(error).__name__)
    sizes = {sibling.rfilename: sibling.size for sibling in info.siblings or []}
    names = files_to_fetch(repo_id, sizes, max_bytes)
    try:
        folder = snapshot_download(repo_id, revision=info.sha, cache_dir=cache, allow_patterns=names)
    except (HTTPError, OSError) as error:
        return _unreachable(repo_id, cache, f"the download failed: {type(error).__name__}")
    return Path(folder)
