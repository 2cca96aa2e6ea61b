"""ZeroGPU (explorer/zero_gpu.py): on ZeroGPU hardware with the `spaces` package a run's GPU work is one
`spaces.GPU` call sized to the run; without the package the code path is unchanged and `spaces` is never imported.

The real package only lends GPUs on Hugging Face's hardware, so these tests put a stand-in `spaces` in sys.modules
that does what ZeroGPU's does to a call: its arguments and everything it yields cross a process boundary, so they
are pickled and unpickled (the app's own objects never reach the call, and what the call changes never comes back).
"""

import functools
import importlib.machinery
import pickle
import sys
import types

import pytest
import torch

import explorer.zero_gpu as zero_gpu
from core.device import DEVICE_ENV
from core.training import TrainConfig
from explorer.models import DEFAULT_MODEL, pretrained
from explorer.sampling_run import SamplingTask, check_request, sample_request
from explorer.training_run import TrainingTask, train_live
from explorer.zero_gpu import gpu_stream, sampling_seconds, training_seconds, zero_gpu_active

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def across_processes(value):
    return pickle.loads(pickle.dumps(value))


class FakeSpaces(types.ModuleType):
    """`spaces` as ZeroGPU runs it: GPU(duration=fn)(task) gives a function whose calls are recorded with the
    duration fn gives for their arguments, and whose arguments and yields are pickled across."""

    def __init__(self):
        super().__init__("spaces")
        self.__spec__ = importlib.machinery.ModuleSpec("spaces", None)
        self.calls = []  # (duration, the task as the GPU's process got it)
        self.decorated = []  # the functions decorated, in order

    def GPU(self, task=None, *, duration=None):
        def decorate(fn):
            self.decorated.append(fn)

            def call(*args):
                args = across_processes(args)
                self.calls.append((duration(*args), args[0]))
                for item in fn(*args):
                    yield across_processes(item)

            return call

        return decorate


@pytest.fixture
def spaces(monkeypatch):
    fake = FakeSpaces()
    monkeypatch.setitem(sys.modules, "spaces", fake)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    zero_gpu._decorated_stream.cache_clear()
    yield fake
    zero_gpu._decorated_stream.cache_clear()


@pytest.fixture(scope="module")
def digits():
    return pretrained(DEFAULT_MODEL)


def test_without_the_package_nothing_changes_and_spaces_is_never_imported(monkeypatch, digits):
    monkeypatch.delitem(sys.modules, "spaces", raising=False)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")  # even on ZeroGPU hardware: no package, no ZeroGPU
    assert importlib.util.find_spec("spaces") is None and not zero_gpu_active()
    assert not zero_gpu.configure() and DEVICE_ENV not in __import__("os").environ
    assert list(gpu_stream(lambda: iter([1, 2]), 30)) == [1, 2]
    request = check_request(digits, "DDIM", 5, 0.0, 3, 2)
    steps = [step for step, _ in sample_request(digits, request)]
    assert len(steps) == 5 and steps[-1].x_t.device == digits.device
    assert "spaces" not in sys.modules


def test_off_zero_gpu_hardware_the_package_is_left_alone(monkeypatch):
    monkeypatch.setitem(sys.modules, "spaces", FakeSpaces())
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert not zero_gpu_active()
    assert list(gpu_stream(lambda: iter("ab"), 30)) == ["a", "b"] and not sys.modules["spaces"].calls


def test_on_zero_gpu_the_app_keeps_its_state_on_the_cpu(spaces, monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert zero_gpu_active() and zero_gpu.configure()
    assert __import__("os").environ[DEVICE_ENV] == "cpu"
    assert spaces.decorated == [zero_gpu._run_stream]  # before launch: ZeroGPU reports GPU functions at start-up
    assert list(gpu_stream(functools.partial(iter, [1]), 20)) == [1]  # a task must pickle: ZeroGPU's boundary
    assert spaces.decorated == [zero_gpu._run_stream]  # decorated once, whatever the runs


def test_a_sampling_run_is_one_gpu_call_sized_to_its_steps_with_the_same_pictures(spaces, digits):
    request = check_request(digits, "DDIM", 20, 0.0, 7, 4)
    here = [step for step, _ in sample_request(digits, request)]
    spaces.calls.clear()
    steps = [step for step, _ in sample_request(digits, request)]
    [(duration, task)] = spaces.calls
    assert isinstance(task, SamplingTask) and task.network is not digits.model  # a copy reached the call
    assert duration == sampling_seconds(20) == 16  # 15 s to start, 20 calls of 0.05 s
    assert len(steps) == len(here) == 20
    assert torch.equal(steps[-1].x_t, here[-1].x_t)  # the very same pictures as computed here


def test_a_training_run_is_one_gpu_call_sized_to_its_budget_and_comes_back_with_its_weights(spaces):
    config = TrainConfig(steps=6, batch_size=8, warmup_steps=2, device="cpu")
    spaces.calls.clear()
    updates = list(train_live(config))
    [(duration, task)] = spaces.calls
    assert isinstance(task, TrainingTask) and duration == training_seconds(None, 6) == 16
    assert training_seconds(60, None) == 75  # the Train tab's 60 s: 15 s more to start and save
    final = updates[-1]
    assert final.state == "finished" and final.trainer.step == 6 and len(final.history) == 6
    assert final.trainer.device.type == "cpu"  # the app's copy; the GPU's process trained and saved
    zero_gpu._decorated_stream.cache_clear()
    spaces_off = train_live(config)  # the same run here, for comparison
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("SPACES_ZERO_GPU")
        here = list(spaces_off)[-1]
    assert final.history.losses == pytest.approx(here.history.losses)
    for kept, local in zip(final.trainer.ema_model.parameters(), here.trainer.ema_model.parameters(), strict=True):
        assert torch.allclose(kept, local)


def test_stop_reaches_the_training_in_the_gpu_s_process_and_keeps_what_it_learned(spaces):
    config = TrainConfig(steps=10_000, batch_size=8, device="cpu")
    presses = iter([False, False, True])
    updates = list(train_live(config, stop=lambda: next(presses, True), render_interval=0.0))
    final = updates[-1]
    assert final.state == "stopped" and 0 < final.trainer.step < 10_000
    assert final.trainer.step == final.history.last.step  # the weights of the last step shown
