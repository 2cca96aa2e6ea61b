"""Training one step at a time (the Train tab's Step button): what a step shows is what it used (its loss recomputed
from the shown tensors, x_t from its closed form), each press is exactly one optimizer step of the same model as a
Trainer stepped by hand, Step is refused while the user's live training runs, and the button works through the
real app (gradio_client) and on the page in Chromium (screenshot in tests/artifacts/)."""

import base64
import copy
import json
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError
from test_app_live import POINTS_JS
from test_train_sample_tabs import train_args

from core.observed_step import observed_step, step_lr
from core.training import TrainConfig, Trainer
from explorer.sessions import SessionRegistry
from explorer.step_pictures import SHOWN, step_alt_text, step_picture, step_table
from explorer.tabs.train import TrainTab, training_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def controls(**changes):
    """The Train tab's controls by name, as the page sends them (test_train_sample_tabs' with 100 steps of 8)."""
    return {**train_args(steps=100, batch_size=8), **changes}


def fp32_trainer(**changes) -> Trainer:
    config = {"steps": 100, "batch_size": 8, "num_threads": 1, "precision": "fp32", "warmup_steps": 0, **changes}
    return Trainer(TrainConfig(**config))


def closed_form_target(objective, x0, noise, alpha_bar):
    """The regression target, written out (not core's training_target): eps, x0, or v = sqrt(a) eps - sqrt(1-a) x0."""
    a = alpha_bar.view(-1, *([1] * (x0.ndim - 1)))
    return {"eps": noise, "x0": x0, "v": a.sqrt() * noise - (1 - a).sqrt() * x0}[objective]


def recomputed_loss(model, seen, alpha_bar):
    """Each sample's mean squared error of `model` on the shown x_t and t against the shown x0 and noise."""
    with torch.no_grad():
        output = model(seen.x_t, seen.t) if seen.y is None else model(seen.x_t, seen.t, seen.y)
    target = closed_form_target(seen.objective, seen.x0, seen.noise, alpha_bar)
    return output, (output - target).pow(2).flatten(1).mean(dim=1)


@pytest.mark.parametrize(("dataset", "objective"), [("mnist5k", "x0"), ("mnist5k", "v"), ("moons", "eps")])
def test_the_shown_loss_is_the_loss_of_the_shown_tensors_before_and_after_the_step(dataset, objective):
    trainer = fp32_trainer(dataset=dataset, objective=objective, lr=1e-2)
    before = copy.deepcopy(trainer.model)
    seen = observed_step(trainer)
    alpha_bar = trainer.schedule.alphas_cumprod[seen.t].float()
    output, per_sample = recomputed_loss(before, seen, alpha_bar)
    torch.testing.assert_close(seen.output, output, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(seen.per_sample, per_sample, rtol=1e-5, atol=1e-7)
    assert seen.loss_before == pytest.approx(float(per_sample.mean()), rel=1e-5)
    _, after = recomputed_loss(trainer.model, seen, alpha_bar)  # the same tensors through the updated weights
    torch.testing.assert_close(seen.per_sample_after, after, rtol=1e-5, atol=1e-7)
    assert seen.loss_after == pytest.approx(float(after.mean()), rel=1e-5)
    assert seen.loss_after != seen.loss_before  # the update changed the network
    torch.testing.assert_close(seen.alpha_bar, alpha_bar)


@pytest.mark.parametrize("dataset", ["mnist5k", "moons"])
def test_x_t_is_the_closed_form_of_the_shown_x0_t_and_noise(dataset):
    trainer = fp32_trainer(dataset=dataset, objective="eps", batch_size=32)
    seen = observed_step(trainer)
    assert seen.t.shape == (32,) and int(seen.t.min()) >= 0 and int(seen.t.max()) < trainer.schedule.num_timesteps
    assert len(set(seen.t.tolist())) > 1  # each sample its own t
    a = trainer.schedule.alphas_cumprod[seen.t].view(-1, *([1] * (seen.x0.ndim - 1)))  # float64
    x_t = a.sqrt() * seen.x0.double() + (1 - a).sqrt() * seen.noise.double()
    torch.testing.assert_close(seen.x_t.double(), x_t, rtol=0, atol=1e-5)
    assert not torch.allclose(seen.x_t, seen.x0)  # noise was added
    assert seen.x0.shape == seen.noise.shape == seen.x_t.shape == seen.pred_x0.shape
    # the x0 an eps prediction implies: (x_t - sqrt(1 - a) eps_hat) / sqrt(a)
    implied = (seen.x_t.double() - (1 - a).sqrt() * seen.output.double()) / a.sqrt()
    torch.testing.assert_close(seen.pred_x0.double(), implied, rtol=1e-4, atol=1e-3)


def weights(model):
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def assert_same_weights(a, b):
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_each_press_is_one_optimizer_step_of_the_same_model_as_a_trainer_stepped_by_hand(tmp_path):
    registry = SessionRegistry(tmp_path, compute_threads=1)
    tab = TrainTab(registry)
    session = registry.session(None)
    reference = Trainer(training_config(**controls()))  # the same settings, stepped by hand
    initial = weights(reference.model)
    for press in (1, 2):
        text, picture, table, loss_plot = tab.step(**controls())
        stepped = session.stepping.trainer
        assert stepped.step == press and f"**Step {press}**" in text
        assert ("fresh model" in text) == (press == 1)
        reference.train_step(step_lr(reference.config, press - 1))
        assert_same_weights(weights(stepped.model), weights(reference.model))
        assert list(loss_plot.data[0].x) == list(range(1, press + 1))  # the loss plot gets each step
        assert len(table.value["data"]) == SHOWN and picture.alt_text.startswith(f"Training step {press}:")
    moved = weights(stepped.model)
    assert any(not torch.allclose(moved[k], initial[k], atol=1e-6) for k in initial)  # the weights did move
    text, *_ = tab.step(**controls(batch_size=16))  # a changed setting starts over
    assert session.stepping.trainer.step == 1 and "fresh model" in text


def test_step_is_refused_while_that_users_live_training_runs_and_others_may_step(tmp_path):
    registry = SessionRegistry(tmp_path, compute_threads=1)
    tab = TrainTab(registry)
    session = registry.session(None)
    tab.step(**controls())
    stepped = session.stepping
    ticket = registry.enter_queue(session, "training")  # what Start holds while its run goes
    try:
        with pytest.raises(gr.Error, match="Your training run is going"):
            tab.step(**controls())
        assert session.stepping is stepped and stepped.trainer.step == 1  # untouched
        other = registry.session("someone else")
        other_text, *_ = tab.step(request=type("Request", (), {"session_hash": "someone else"})(), **controls())
        assert "**Step 1**" in other_text and other.stepping.trainer is not stepped.trainer
    finally:
        registry.leave(ticket)
    text, *_ = tab.step(**controls())
    assert "**Step 2**" in text
    registry.close(None)  # the user leaves: their stepped model goes with their session
    assert session.stepping is None


@pytest.mark.parametrize(
    ("change", "message"),
    [({"batch_size": 0}, "batch size must be a whole number from 1 to 512"), ({"lr": -1}, "learning rate")],
)
def test_bad_settings_keep_training_configs_messages(tmp_path, change, message):
    tab = TrainTab(SessionRegistry(tmp_path, compute_threads=1))
    with pytest.raises(gr.Error, match=message):
        tab.step(**controls(**change))


def test_pictures_table_and_alt_text_of_a_step():
    seen = observed_step(fp32_trainer(batch_size=12))
    picture = step_picture(seen)
    assert picture.dtype == np.uint8 and picture.shape[2] == 3 and picture.shape[1] > picture.shape[0]
    headers, rows = step_table(seen)
    assert headers[:3] == ["sample", "t", "alpha-bar_t"] and len(rows) == SHOWN
    assert [row[1] for row in rows] == seen.t[:SHOWN].tolist()
    assert rows[0][3] == round(float(seen.per_sample[0]), 5)
    assert str(int(seen.t[0])) in step_alt_text(seen)
    points = observed_step(fp32_trainer(dataset="moons", objective="eps"))
    headers, rows = step_table(points)
    assert "eps" in headers and rows[0][6].startswith("(")
    assert step_picture(points).ndim == 3


def plotted(values):
    """A plotly trace's values as the page gets them: a list, or {"dtype", "bdata"} (base64 of the array)."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
    return np.asarray(values)


def test_step_through_the_real_app(app_url):
    client = Client(app_url, verbose=False)
    args = list(controls().values())
    for press in (1, 2):
        text, picture, table, loss_plot = client.predict(*args, api_name="/train_step")
        picture, table = picture["value"], table["value"]  # (updates: the picture with its alt text)
        assert f"**Step {press}**" in text
        assert len(table["data"]) == SHOWN and table["headers"][1] == "t"
        assert plotted(json.loads(loss_plot["plot"])["data"][0]["x"]).tolist() == list(range(1, press + 1))
    assert Path(picture if isinstance(picture, str) else picture["path"]).suffix == ".png"
    # while this user's live training runs, Step is refused with the reason; afterwards it continues
    run = client.submit(*controls(length_unit="seconds", length=60, batch_size=16).values(), api_name="/train")
    deadline = time.monotonic() + 60
    while not run.outputs() and time.monotonic() < deadline:  # the run has its place once it says anything
        time.sleep(0.1)
    try:
        with pytest.raises(AppError, match="Your training run is going"):
            client.predict(*args, api_name="/train_step")
    finally:
        client.predict(api_name="/stop_training")
        run.result(timeout=120)
    text, *_ = client.predict(*args, api_name="/train_step")
    assert "**Step 3**" in text


def test_step_twice_in_chromium(app_url, page, artifacts):
    page.goto(app_url)
    page.get_by_text("See every part of a denoising diffusion model move").wait_for(timeout=30_000)
    page.get_by_role("tab", name="Train").click()
    for press in (1, 2):
        page.locator("#train-step").click()
        page.get_by_text(f"Step {press} (learning rate").wait_for(timeout=60_000)
    picture = page.locator("#train-step-picture img").first
    picture.wait_for(timeout=30_000)
    assert picture.get_attribute("alt").startswith("Training step 2:")
    assert page.locator("#train-step-table").get_by_role("row").count() == SHOWN + 1
    assert page.locator("#train-loss .js-plotly-plot").evaluate(f"el => ({POINTS_JS})(el.data[0].x)") == 2
    page.locator("#train-step-picture").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "tab_train_step.png"), full_page=True)
