"""A shared server under pressure, through its real endpoints: more heavy runs than it admits get a clear "try
again" at once while the admitted ones finish; Stop ends a run within one update and, once the user leaves (their
page closes), every tensor and file of theirs is freed."""

from __future__ import annotations

import gc
import time
import warnings

import pytest
import torch
from gradio_client import Client

from explorer.app import launch_locally
from explorer.models import DEFAULT_MODEL
from explorer.sessions import SessionRegistry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """The app with one active heavy run and one waiting place (a crowded Space in miniature)."""
    registry = SessionRegistry(tmp_path_factory.mktemp("sessions"), max_jobs=1, max_waiting=1)
    demo, url = launch_locally(registry)
    try:
        yield demo, url
    finally:
        demo.close()


def live_tensor_bytes() -> int:
    """Bytes held by every tensor storage alive in this process (the server runs in it), each storage once."""
    gc.collect()
    storages = {}
    with warnings.catch_warnings():  # isinstance() on deprecated torch aliases found by gc warns
        warnings.simplefilter("ignore", FutureWarning)
        objects = gc.get_objects()
        tensors = [obj for obj in objects if isinstance(obj, torch.Tensor)]
    for obj in tensors:
        try:
            if obj.device.type == "cpu" and not obj.is_meta:
                storage = obj.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
        except (RuntimeError, ReferenceError):  # tensors without storage (e.g. sparse, functorch wrappers)
            continue
    return sum(storages.values())


def train(client: Client, seconds: int):
    return client.submit(api_name="/train", upload=None, length_unit="seconds", length=seconds, batch_size=16)


def test_more_runs_than_places_are_told_to_retry_and_the_others_finish(small_server):
    demo, url = small_server
    clients = [Client(url, verbose=False) for _ in range(4)]
    jobs = []
    for client in clients:  # one after the other, so that the order of arrival is known
        jobs.append(train(client, 2))
        time.sleep(0.3)
    served, refused = [], []
    for job in jobs:
        try:
            served.append(job.result(timeout=120)[0])
        except Exception as error:  # gradio_client raises the server's gr.Error as AppError
            refused.append(str(error))
    assert len(served) == 2 and all("Finished" in status for status in served), served
    assert len(refused) == 2 and all("server is full" in m and "try again in a minute" in m for m in refused)
    assert demo.registry.position  # the server is still there
    # the refused users hold nothing: one of them can start now
    assert "Finished" in train(clients[3], 1).result(timeout=120)[0]


def test_stop_ends_sampling_within_one_update_and_leaving_frees_everything(small_server):
    demo, url = small_server
    registry = demo.registry
    warm = Client(url, verbose=False)  # load the pretrained models and caches once, then free the session
    warm.predict(DEFAULT_MODEL, "DDIM", 2, 0.0, 0, 2, None, 1.0, api_name="/sample")
    registry.close(warm.session_hash)
    baseline = live_tensor_bytes()

    client = Client(url, verbose=False)
    job = client.submit(DEFAULT_MODEL, "DDPM", 1000, 1.0, 0, 64, None, 1.0, api_name="/sample")
    deadline = time.monotonic() + 60
    while len(job.outputs()) < 10:
        assert not job.done() and time.monotonic() < deadline, "1000 DDPM steps of 64 digits cannot be over already"
        time.sleep(0.05)
    held = live_tensor_bytes() - baseline  # the run's noise, predictions and trajectory
    client.predict(api_name="/stop_sampling")
    asked = time.perf_counter()
    final = job.result(timeout=30)
    assert time.perf_counter() - asked < 5
    assert "stopped" in final[0].lower() and "of 1000" in final[0]
    assert held > 500_000, "the measure must see the run's tensors (64 noisy pictures alone are 262 kB)"

    registry.close(client.session_hash)  # what the page's unload does
    assert live_tensor_bytes() - baseline < 100_000


def test_stop_ends_training_and_leaving_frees_its_model(small_server):
    demo, url = small_server
    registry = demo.registry
    warm = Client(url, verbose=False)  # the dataset and its caches, loaded once
    train(warm, 1).result(timeout=120)
    registry.close(warm.session_hash)
    baseline = live_tensor_bytes()

    client = Client(url, verbose=False)
    job = train(client, 120)
    deadline = time.monotonic() + 60
    while not any("images/s" in str(output[0]) for output in job.outputs()):  # a training step is reported
        assert time.monotonic() < deadline and not job.done(), job.outputs()
        time.sleep(0.05)
    client.predict(api_name="/stop_training")
    asked = time.perf_counter()
    status = job.result(timeout=30)[0]
    assert time.perf_counter() - asked < 5 and "Stopped" in status, status
    folder = registry.session(client.session_hash).folder
    assert any(folder.iterdir()), "the stopped run's checkpoint is kept for the user"
    registry.close(client.session_hash)
    assert not folder.exists()
    assert live_tensor_bytes() - baseline < 100_000


def test_closing_the_page_frees_the_users_session_and_folder(small_server, browser, artifacts):
    """Gradio calls demo.unload when a page goes away; the registry then closes that user's session."""
    demo, url = small_server
    registry = demo.registry
    before = set(registry.keys())
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(url)
    page.get_by_role("tab", name="Sample").click()
    page.locator("#sample-run").click()
    page.locator("#sample-progress").get_by_text("10 of 10").wait_for(timeout=60_000)  # the default: 10 steps
    page.locator("#sample-gif").click()  # a file in the user's folder
    (key,) = set(registry.keys()) - before
    folder = registry.session(key).folder
    deadline = time.monotonic() + 30
    while not any(folder.glob("*.gif")):
        assert time.monotonic() < deadline, "the GIF was never written"
        time.sleep(0.1)
    assert registry.session(key).trajectory is not None
    page.screenshot(path=str(artifacts / "sample_before_leaving.png"))
    context.close()  # the user closes the tab
    deadline = time.monotonic() + 30
    while key in registry:
        assert time.monotonic() < deadline, "the session was not closed after the page went away"
        time.sleep(0.1)
    assert not folder.exists()


def test_out_of_memory_in_training_is_a_message_and_the_app_keeps_serving(small_server, monkeypatch):
    """The server runs in this process, so the training step can be made to run out of memory as a GPU would."""
    from core.training import Trainer

    demo, url = small_server
    client = Client(url, verbose=False)

    def exhausted(self, lr):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_step", exhausted)
        with pytest.raises(Exception, match=r"Out of memory with batch size 16 .* Try a batch of 4"):
            train(client, 5).result(timeout=120)
    assert client.session_hash in demo.registry and demo.registry.session(client.session_hash).job is None
    assert "Finished" in train(client, 1).result(timeout=120)[0]  # the same user, the same server, next try
