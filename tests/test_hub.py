"""Hub models (core/hub.py and the Sample tab's "Load from the Hub"), with fakes only, never the network: the size
is checked before anything is downloaded and a too-large, pickle-only or foreign repo is refused; only the pipeline's
JSON and safetensors files are fetched, once; a bad id and an offline server get clear messages; the app imports
neither diffusers nor the Hub client's download code until someone asks for such a model."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import huggingface_hub
import pytest

import core.hub as hub
from core.diffusers_pipeline import MAX_PIPELINE_BYTES, PIPELINE_FILES, UNET_WEIGHTS
from core.hub import HubError, check_repo_id, fetch_pipeline, files_to_fetch
from explorer.sessions import SessionRegistry
from explorer.tabs.sample import SampleTab

REPO = "someone/ddpm-tiny"
SIZES = {
    "model_index.json": 200,
    "unet/config.json": 900,
    UNET_WEIGHTS: 143 * 2**20,
    "unet/diffusion_pytorch_model.bin": 143 * 2**20,
    "scheduler/scheduler_config.json": 300,
    "README.md": 1000,
    "images/generated_image.png": 5000,
}


class FakeApi:
    """HfApi's model_info, answering with file sizes (or raising `error`), counting its calls."""

    def __init__(self, sizes: dict[str, int | None] | None = None, error: Exception | None = None):
        self.sizes, self.error, self.calls = dict(SIZES if sizes is None else sizes), error, []

    def model_info(self, repo_id, *, files_metadata=False, timeout=None):
        self.calls.append((repo_id, files_metadata))
        if self.error is not None:
            raise self.error
        siblings = [SimpleNamespace(rfilename=name, size=size) for name, size in self.sizes.items()]
        return SimpleNamespace(sha="0" * 40, siblings=siblings)


@pytest.fixture
def no_download(monkeypatch):
    """snapshot_download fails the test if called."""

    def forbidden(*args, **kwargs):
        raise AssertionError("downloaded")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", forbidden)


@pytest.fixture(autouse=True)
def online(monkeypatch, tmp_path):
    """As if online (whatever the machine running the tests says), with an empty cache of our own."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "is_offline_mode", lambda: False)
    monkeypatch.setenv(hub.CACHE_ENV, str(tmp_path / "hub-cache"))


@pytest.mark.parametrize("text", ["", "   ", "google", "a/b/c", "../etc/passwd", "x/..", "a b/c", "https://x.co/a/b"])
def test_a_bad_id_is_refused_with_what_an_id_looks_like(text):
    with pytest.raises(HubError, match="is not a Hub model id: type owner/name, for example google/ddpm-cifar10-32"):
        check_repo_id(text)
    assert check_repo_id("  google/ddpm-cifar10-32 ") == "google/ddpm-cifar10-32"


def test_only_the_pipeline_files_are_fetched_when_they_fit():
    assert files_to_fetch(REPO, SIZES) == list(PIPELINE_FILES)  # no .bin, no README, no pictures


def test_the_size_limit_decides_before_any_download(no_download):
    over = {**SIZES, UNET_WEIGHTS: MAX_PIPELINE_BYTES}  # with the JSON files, just over the limit
    with pytest.raises(HubError, match=r"more than this server's 512 MB limit"):
        files_to_fetch(REPO, over)
    assert files_to_fetch(REPO, {**over, UNET_WEIGHTS: MAX_PIPELINE_BYTES - 2000}) == list(PIPELINE_FILES)
    api = FakeApi(over)
    with pytest.raises(HubError, match="limit"):
        fetch_pipeline(REPO, api=api)
    assert api.calls == [(REPO, True)]  # sizes asked for, nothing downloaded


def test_pickle_only_foreign_and_unknown_size_repos_are_refused(no_download):
    pickle_only = {name: size for name, size in SIZES.items() if name != UNET_WEIGHTS}
    with pytest.raises(HubError, match=r"only as unet/diffusion_pytorch_model\.bin, a pickle format"):
        fetch_pipeline(REPO, api=FakeApi(pickle_only))
    with pytest.raises(HubError, match=r"not a diffusers pipeline this app reads \(it lacks model_index.json"):
        fetch_pipeline(REPO, api=FakeApi({"config.json": 10, "model.safetensors": 10}))
    with pytest.raises(HubError, match="did not say how large"):
        fetch_pipeline(REPO, api=FakeApi({**SIZES, UNET_WEIGHTS: None}))


def test_a_missing_repo_says_so(no_download):
    response = SimpleNamespace(headers={}, request=None)  # what the error reads of the Hub's answer
    error = huggingface_hub.errors.RepositoryNotFoundError("404 Repository Not Found", response=response)
    with pytest.raises(HubError, match="there is no public model someone/ddpm-tiny on the Hub"):
        fetch_pipeline(REPO, api=FakeApi(error=error))


def test_offline_is_a_clear_message_and_asks_nothing(monkeypatch, no_download):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    api = FakeApi()
    with pytest.raises(HubError, match=r"cannot reach the Hugging Face Hub .*offline mode.* not in its cache"):
        fetch_pipeline(REPO, api=api)
    assert api.calls == []


def test_a_connection_error_is_a_clear_message(no_download):
    with pytest.raises(HubError, match=r"cannot reach the Hugging Face Hub \(ConnectionError\)"):
        fetch_pipeline(REPO, api=FakeApi(error=ConnectionError("no route to host")))


def test_a_fetched_pipeline_is_downloaded_once_with_the_pipeline_patterns(monkeypatch, tmp_path):
    calls = []

    def fake_download(repo_id, *, revision, cache_dir, allow_patterns):
        calls.append((repo_id, revision, allow_patterns))
        folder = Path(cache_dir) / "snapshot"
        for name in allow_patterns:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text("{}")
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    folder = fetch_pipeline(REPO, api=FakeApi())
    assert calls == [(REPO, "0" * 40, list(PIPELINE_FILES))]
    assert all(pattern.endswith((".json", ".safetensors")) for pattern in calls[0][2])
    assert folder.is_relative_to(tmp_path / "hub-cache")


def test_the_sample_tab_says_why_a_hub_model_is_refused_and_keeps_the_menu(monkeypatch, tmp_path, no_download):
    tab, user = SampleTab(SessionRegistry(tmp_path / "sessions")), SimpleNamespace(session_hash="hana")
    before = tab.model_names(tab.user_session(user))
    with pytest.raises(gr.Error, match="is not a Hub model id"):
        list(tab.load_from_hub("not an id", request=user))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(gr.Error, match="google/ddpm-cifar10-32 could not be used: this server cannot reach"):
        list(tab.load_from_hub("google/ddpm-cifar10-32", request=user))
    assert tab.model_names(tab.user_session(user)) == before


def test_a_hub_model_in_the_cache_is_used_offline(monkeypatch, tmp_path):
    """A pipeline fetched earlier (here: laid out as huggingface_hub's cache keeps it) is found without the network."""
    pytest.importorskip("diffusers")
    from tiny_pipelines import save_pipeline

    cache = tmp_path / "hub-cache"
    snapshot = cache / "models--someone--ddpm-tiny" / "snapshots" / ("1" * 40)
    source = save_pipeline(tmp_path / "pipe")
    for name in PIPELINE_FILES:  # the cache keeps blobs and links them into the snapshot; copies serve as well here
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / name, snapshot / name)
    (cache / "models--someone--ddpm-tiny" / "refs").mkdir()
    (cache / "models--someone--ddpm-tiny" / "refs" / "main").write_text("1" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fetch_pipeline(REPO, cache=cache) == snapshot


def test_the_app_starts_without_importing_diffusers():
    code = "import sys, explorer.app; explorer.app.build_app(); print('diffusers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_a_hub_model_joins_the_menu_and_samples(monkeypatch, tmp_path):
    """The whole path with the Hub faked: sizes checked, the pipeline files "downloaded" (copied from a tiny local
    pipeline), loaded, listed in this user's menu only, described, and sampled."""
    pytest.importorskip("diffusers")
    from tiny_pipelines import save_pipeline

    source = save_pipeline(tmp_path / "pipe")
    sizes = {name: (source / name).stat().st_size for name in PIPELINE_FILES}

    def fake_download(repo_id, *, revision, cache_dir, allow_patterns):
        folder = Path(cache_dir) / "models--someone--ddpm-tiny" / "snapshots" / revision
        for name in allow_patterns:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / name, folder / name)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: FakeApi(sizes))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    registry = SessionRegistry(tmp_path / "sessions", max_jobs=1, compute_threads=1)
    tab, user = SampleTab(registry), SimpleNamespace(session_hash="ines")
    *progress, (menu, note) = tab.load_from_hub(REPO, request=user)
    assert "Checking **someone/ddpm-tiny** on the Hub" in progress[0][1]
    assert menu.value == "hub: someone/ddpm-tiny" and "Added" in note
    assert "hub: someone/ddpm-tiny" not in tab.model_names(tab.user_session(SimpleNamespace(session_hash="other")))
    about = tab.describe_model(menu.value, request=user)[0]
    assert "a diffusers DDPMPipeline" in about and "RGB" in about
    controls = dict(model=menu.value, sampler="DDIM", steps=3, eta=0.0, seed=0, count=2, class_choice=None)
    *_, last = tab.sample(request=user, guidance=1.0, **controls)
    assert "3 of 3 steps" in last[0]
