"""Live training for the Train tab: updates with finite losses, previews that change as the model learns, Stop
between steps, a diverged run that keeps its last finite weights, and the history behind the plots."""

import math

import numpy as np
import pytest
import torch

from core.data import ImageDataset, load_dataset
from core.training import ProgressRecord, TrainConfig
from explorer.training_run import PREVIEW_IMAGES, TrainingHistory, status_line, train_live

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def digits_config(**changes):
    return TrainConfig(**{"steps": 8, "batch_size": 16, "num_threads": 1, **changes})


def test_a_few_steps_yield_finite_losses_and_changing_previews():
    updates = list(train_live(digits_config(), preview_interval=0.0, render_interval=0.0))
    assert updates[0].state == "starting" and updates[-1].state == "finished"
    history = updates[-1].history
    assert history.steps == list(range(1, 9)) and all(math.isfinite(loss) for loss in history.losses)
    previews = [u.preview_samples for u in updates]
    assert previews[0].shape == (PREVIEW_IMAGES, 1, 28, 28)
    assert previews[0].abs().max() <= 1 and previews[0].std() > 0.5  # the start shows x_T itself: clipped noise
    assert not torch.equal(previews[0], previews[-1])  # the same noise, a different model
    assert updates[-1].preview.dtype == np.uint8 and updates[-1].preview.ndim == 2
    assert updates[-1].trainer.step == 8


def test_the_preview_starts_from_the_same_noise_every_run():
    first = next(iter(train_live(digits_config(seed=1))))
    second = next(iter(train_live(digits_config(seed=1))))
    assert torch.equal(first.preview_samples, second.preview_samples)


def test_stop_ends_training_after_the_current_step():
    asked = {"n": 0}

    def stop():
        asked["n"] += 1
        return asked["n"] > 3

    updates = list(train_live(digits_config(steps=100), stop=stop, render_interval=0.0))
    assert updates[-1].state == "stopped" and updates[-1].trainer.step == 3


def test_a_diverging_run_stops_and_keeps_finite_weights():
    data = load_dataset("mnist5k", split="train", image_size=None)
    images = data.images.clone()
    images[5:] = float("nan")  # almost every batch holds a NaN picture
    broken = ImageDataset("broken", images, data.labels, data.num_classes)
    final = list(train_live(digits_config(steps=50), dataset=broken, render_interval=0.0))[-1]
    assert final.state == "diverged" and "became nan" in final.message
    assert all(torch.isfinite(p).all() for p in final.trainer.model.parameters())


def test_2d_sets_preview_points_over_the_data():
    config = TrainConfig(dataset="moons", objective="eps", steps=5, batch_size=64, num_threads=1)
    updates = list(train_live(config, preview_interval=0.0, render_interval=0.0))
    assert updates[-1].preview_samples.shape == (1000, 2)
    assert updates[-1].preview.shape[2] == 3  # an RGB scatter picture
    assert "points/s" in status_line(updates[-1])


def record(step, loss, lr=1e-3):
    return ProgressRecord(step, None, loss, lr, 1.0, 100.0, 0.1 * step, 5.0, [None] * 10, "cpu")


def test_history_smooths_and_thins():
    history = TrainingHistory()
    for step in range(1, 5001):
        history.add(record(step, 0.5))
    assert history.smoothed[0] == pytest.approx(0.5) and history.smoothed[-1] == pytest.approx(0.5)
    plotted = history.plotted(max_points=100)
    assert len(plotted["steps"]) == 100 and plotted["steps"][0] == 1 and plotted["steps"][-1] == 5000


def test_status_line_names_device_speed_and_time_to_go():
    update = next(iter(train_live(digits_config())))
    assert "noise x_T" in status_line(update) and "cpu" in status_line(update)
    update.history.add(record(3, 0.25))
    update.state = "training"
    line = status_line(update)
    assert "step 3 of 8" in line and "100 images/s" in line and "5 s to go" in line and "0.2500" in line


def test_out_of_memory_becomes_advice_for_a_smaller_batch(monkeypatch):
    from core.training import Trainer
    from explorer.training_run import OutOfMemory

    def exhausted(self, lr):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "train_step", exhausted)
    with pytest.raises(OutOfMemory, match=r"Out of memory with batch size 16 .* Try a batch of 4"):
        list(train_live(digits_config()))
