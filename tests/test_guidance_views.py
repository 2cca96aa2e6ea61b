"""Guidance made visible (explorer/tabs/guidance.py, explorer/guidance_sweep.py, core.samplers.denoise's
Step.guidance_x0): the direction recorded at each step is the conditional minus the unconditional prediction,
computed here again, independently, from the model at that step's x_t and t; guidance 1 is the plain conditional
model; each row of the guidance sweep is an ordinary sampling run at its scale from the same seed, and scale 0 the
model without a class; an unconditional model is told that guidance needs classes; and all of it through the
launched app and on the real page in headless Chromium (screenshots in tests/artifacts/)."""

from __future__ import annotations

import threading

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import Client
from PIL import Image

from core.diffusion import predict_x0
from core.sampler_base import draw_noise
from core.samplers import SAMPLERS, denoise, guided_output, make_sampler
from core.schedules import make_schedule
from core.unet import make_unet
from explorer.guidance_sweep import NEEDS_CLASSES, SWEEP_SCALES, sweep_picture, sweep_request, sweep_steps
from explorer.models import DEFAULT_MODEL, PRETRAINED, pretrained
from explorer.sampling_run import STEP_NOISE_OFFSET, check_request, sample_request
from explorer.sessions import SessionRegistry
from explorer.tabs.guidance import DIRECTION_ALT, GUIDANCE_ONE, GuidanceViews
from explorer.tabs.sample import SampleTab

COND = PRETRAINED["mnist_cond"]
TOLERANCE = 1e-4  # float32: one batched call of 2B rows against two calls of B rows may sum in another order
SCALE_ZERO_TOLERANCE = 2e-4  # the same rounding carried through a 10-step run that adds fresh noise at every step:
# measured 5.5e-6, 9.5e-6 and 4.5e-5 on samples in [-1, 1] (seeds 0, 1, 2, class 7, 10 images, 1 thread)


class FakeRequest:
    def __init__(self, session_hash: str) -> None:
        self.session_hash = session_hash


@pytest.fixture(scope="module")
def cond():
    return pretrained(COND)


@pytest.fixture
def registry(tmp_path):
    return SessionRegistry(tmp_path / "sessions", compute_threads=1)


def controls(model: str, class_choice: str | None, **changes) -> dict:
    """The Sample tab's main controls by name (SampleTab.checked_request), small by default."""
    values = dict(model=model, sampler="DDIM", steps=4, eta=0.0, seed=5, count=3, class_choice=class_choice)
    return {**values, "guidance": 2.0, **changes}


def inputs_and_steps(model, sampler, x_T, steps, **options):
    """(the x_t the network saw, the Step) for every network call: a call's input is the state the previous one
    left (Heun's corrector: its predictor's Euler state), x_T for the first."""
    steps = list(denoise(model, sampler, x_T, steps, **options))
    return list(zip([x_T, *(s.x_t for s in steps[:-1])], steps, strict=True))


def branches(model, x, t, y):
    """The conditional and the unconditional output, each in a call of its own."""
    t_batch = torch.full((len(x),), t, dtype=torch.long if float(t).is_integer() else torch.float32)
    with torch.no_grad():
        return model(x, t_batch, y), model(x, t_batch, torch.full_like(y, model.num_classes))


def assert_close(actual, expected, tolerance=TOLERANCE):
    scale = max(1.0, float(expected.abs().max()))
    assert float((actual - expected).abs().max()) <= tolerance * scale


# ---- the recorded direction ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_the_recorded_direction_is_cond_minus_uncond_at_each_steps_x_t_and_t(cond, name, one_torch_thread):
    """The shipped class model (objective x0: the direction in x0 terms is the output's), every sampler."""
    model, schedule = cond.model, cond.checkpoint.schedule
    sampler = make_sampler(name, schedule, objective="x0", clip_x0=True, spacing="trailing")
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([3, 7])
    calls = inputs_and_steps(model, sampler, x_T, 3, y=y, guidance_scale=2.5, generator=torch.Generator())
    assert len(calls) == SAMPLERS[name].network_calls(3)
    for x_in, step in calls:
        out_cond, out_uncond = branches(model, x_in, step.t, y)
        assert step.guidance_x0 is not None and step.guidance_x0.shape == x_T.shape
        assert_close(step.guidance_x0, out_cond - out_uncond)
    assert float(calls[0][1].guidance_x0.abs().max()) > 0.05  # the class does change the first guess


@pytest.mark.parametrize("objective", ["eps", "v", "x0"])
def test_the_direction_is_in_x0_terms_for_every_objective(objective):
    """A small random class model: the direction is pred_x0(cond) - pred_x0(uncond), with core.diffusion's
    predict_x0 (not the sampler's conversion)."""
    torch.manual_seed(0)
    model = make_unet("tiny", in_channels=1, num_classes=3).eval()
    schedule = make_schedule("linear", 1000)
    sampler = make_sampler("ddim", schedule, objective=objective, spacing="leading")
    x_T = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 2])
    for x_in, step in inputs_and_steps(model, sampler, x_T, 4, y=y, guidance_scale=3.0):
        out_cond, out_uncond = branches(model, x_in, step.t, y)
        t = torch.full((2,), step.t, dtype=torch.long)
        expected = predict_x0(schedule, x_in, t, out_cond, objective) - predict_x0(
            schedule, x_in, t, out_uncond, objective
        )
        assert_close(step.guidance_x0, expected.float())


def test_at_guidance_one_the_guided_prediction_is_the_conditional_one(cond):
    model = cond.model
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([1, 4, 9])
    out_cond, out_uncond = branches(model, x, 500, y)
    with torch.no_grad():
        plain = guided_output(model, x, 500, y, 1.0)
        recorded = []
        guided = guided_output(model, x, 500, y, 2.0, record=recorded.append)
    assert torch.equal(plain, out_cond)  # one conditional call, nothing else
    assert_close(recorded[0], out_cond - out_uncond)
    assert_close(guided, out_uncond + 2.0 * (out_cond - out_uncond))
    assert not torch.allclose(guided, plain, atol=1e-3)  # guidance 2 is not guidance 1
    sampler = make_sampler("ddim", cond.checkpoint.schedule, objective="x0", spacing="trailing")
    for x_in, step in inputs_and_steps(model, sampler, x, 3, y=y, guidance_scale=1.0):
        assert step.guidance_x0 is None  # no unconditional call was made, so there is no direction
        assert torch.equal(step.pred_x0, branches(model, x_in, step.t, y)[0])


def test_merged_guided_runs_keep_their_own_directions(cond, tmp_path, one_torch_thread):
    """The app merges concurrent runs' network calls (explorer.merged_calls): each run's direction is still its own
    cond - uncond, as when it runs alone."""
    registry = SessionRegistry(tmp_path / "sessions", compute_threads=2)
    requests = [check_request(cond, "DDIM", 4, 0.0, 1, 3, 3, 2.0), check_request(cond, "DDIM", 4, 0.0, 2, 5, 8, 4.0)]

    def directions(request, merged):
        return [step.guidance_x0 for step, _ in sample_request(cond, request, merged=merged)]

    alone = [directions(request, None) for request in requests]
    together = [None, None]
    start = threading.Barrier(2)

    def one(i):
        start.wait()
        together[i] = directions(requests[i], registry.merged_calls)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert registry.merged_calls.stats.widest == 2 * (3 + 5)  # both runs' cond and uncond rows in one call
    for own, merged in zip(alone, together, strict=True):
        assert len(own) == len(merged) == 4
        for a, b in zip(own, merged, strict=True):
            assert_close(b, a)
    assert not torch.allclose(alone[0][0][0], alone[1][0][0], atol=1e-3)  # class 3 and class 8 differ


def test_the_trajectory_keeps_the_direction_as_a_picture(cond):
    request = check_request(cond, "DDIM", 4, 0.0, 0, 4, 2, 3.0)
    *_, (_, trajectory) = sample_request(cond, request)
    assert len(trajectory.guidance_x0) == len(trajectory) == 4
    picture = trajectory.guidance_picture(0)
    assert picture is not None and picture.dtype == np.uint8 and picture.std() > 5  # not a flat grey
    plain = check_request(cond, "DDIM", 4, 0.0, 0, 4, 2, 1.0)
    *_, (_, unguided) = sample_request(cond, plain)
    assert unguided.guidance_picture(0) is None


# ---- the sweep ---------------------------------------------------------------------------------------------------


def sweep_finals(entry, request):
    finals = {}
    for row, _step, trajectory in sweep_steps(entry, request):
        if trajectory.complete:
            finals[row] = trajectory.final
    return [finals[row] for row in range(len(SWEEP_SCALES))]


def ordinary_run(entry, request, y, scale):
    """What core.samplers.denoise draws at guidance `scale` from the request's seed, set up here from scratch."""
    settings = request.settings
    generator = torch.Generator().manual_seed(request.seed)
    x_T = draw_noise((request.count, *entry.checkpoint.sample_shape), generator, "cpu", torch.float32)
    sampler = make_sampler(
        settings.sampler,
        entry.checkpoint.schedule,
        eta=settings.eta,
        objective=entry.checkpoint.objective,
        clip_x0=entry.checkpoint.clip_x0,
        spacing=settings.spacing,
    )
    noise = torch.Generator().manual_seed(request.seed + STEP_NOISE_OFFSET)
    *_, last = denoise(entry.model, sampler, x_T, settings.steps, y=y, guidance_scale=scale, generator=noise)
    return last.x_t


def test_each_sweep_row_is_an_ordinary_run_at_its_scale_and_scale_zero_the_unconditional_one(cond, one_torch_thread):
    defaults = cond.sampling_defaults  # DPM++ 2M SDE, 10 steps, trailing: it adds fresh noise at every step
    request = sweep_request(cond, check_request(cond, defaults.sampler, defaults.steps, 0.0, 11, 16, 7, 2.0))
    assert request.count == 10  # at most MAX_COLUMNS a row
    finals = sweep_finals(cond, request)
    sevens = torch.full((10,), 7)
    for scale, final in zip(SWEEP_SCALES, finals, strict=True):
        assert torch.equal(final, ordinary_run(cond, request, sevens, scale)), scale  # exactly
    # scale 0: the model without a class (y = None), up to float rounding of the batched call
    without_class = ordinary_run(cond, request, None, 1.0)
    difference = float((finals[0] - without_class).abs().max())
    assert difference <= SCALE_ZERO_TOLERANCE, difference
    # the rows differ, the more so the further apart their scales
    gaps = [float((finals[i] - finals[0]).abs().mean()) for i in range(1, len(finals))]
    assert gaps[0] > 0.01 and gaps[-1] > gaps[0], gaps
    picture = sweep_picture(finals)
    assert picture.ndim == 3 and picture.shape[2] == 3 and picture.shape[0] > picture.shape[1] / 4


def test_an_unconditional_model_is_told_that_guidance_needs_classes(registry):
    entry = pretrained(DEFAULT_MODEL)
    with pytest.raises(ValueError, match="Guidance needs a class-conditional model"):
        sweep_request(entry, check_request(entry, "DDIM", 2, 0.0, 0, 2))
    views = GuidanceViews(SampleTab(registry))
    user = FakeRequest("ursula")
    with pytest.raises(gr.Error, match="Guidance needs a class-conditional model"):
        list(views.sweep(request=user, **controls(DEFAULT_MODEL, None)))
    assert views.expect(DEFAULT_MODEL, user) == (None, NEEDS_CLASSES)
    assert views.sweep_note(DEFAULT_MODEL, user) == NEEDS_CLASSES
    list(SampleTab(registry).sample(request=user, **controls(DEFAULT_MODEL, None)))
    assert views.show_direction(2, DEFAULT_MODEL, user) == (None, NEEDS_CLASSES)
    assert views.expect(COND, user)[1] != NEEDS_CLASSES


def test_the_tab_callbacks_show_the_direction_and_the_sweep(registry):
    tab = SampleTab(registry)
    views = GuidanceViews(tab)
    user = FakeRequest("gwen")
    list(tab.sample(request=user, **controls(COND, "7")))
    picture, note = views.after_run(COND, user)
    assert picture is not None and "the class moves" in note
    first, _ = views.show_direction(0, COND, user)
    assert first.shape == picture.shape and not np.array_equal(first, picture)
    list(tab.sample(request=user, **controls(COND, "7", guidance=1.0)))
    assert views.show_direction(0, COND, user) == (None, GUIDANCE_ONE)
    outputs = list(views.sweep(request=user, **controls(COND, "each class in turn", count=16)))
    grids = [o[1] for o in outputs if isinstance(o[1], np.ndarray)]
    assert len(grids) == len(SWEEP_SCALES) + 1  # the grid grows a row at a time, and comes again with the caption
    heights = [grid.shape[0] for grid in grids]
    assert heights[:-1] == sorted(set(heights)) and heights[-1] == heights[-2]
    assert "Done: 5 rows" in outputs[-1][0] and "each class in turn" in outputs[-1][2]


# ---- through the launched app ----------------------------------------------------------------------------------


def test_the_guidance_views_through_the_api(app_url):
    client = Client(app_url, verbose=False)
    classes = client.predict(COND, api_name="/describe_model")[4]  # this session's class menu: 0..9
    assert "7" in [choice[0] for choice in classes["choices"]]
    progress, grid, caption = client.predict(
        model=COND, sampler="DDIM", steps=5, count=4, class_choice="7", api_name="/guidance_sweep"
    )
    assert "Done: 5 rows" in progress and "class 7" in caption
    rows = np.asarray(Image.open(grid).convert("L"))
    assert rows.shape[0] > 5 * 28 and rows.std() > 20
    outputs = client.predict(
        model=COND, sampler="DDIM", steps=5, count=4, class_choice="7", guidance=3.0, api_name="/sample"
    )
    assert "5 of 5 steps" in outputs[0]
    picture, note = client.predict(0, COND, api_name="/show_guidance_step")
    assert picture is not None and "the class moves" in note
    assert np.asarray(Image.open(picture).convert("L")).std() > 5
    assert client.predict(0, DEFAULT_MODEL, api_name="/show_guidance_step") == (None, NEEDS_CLASSES)
    fresh = Client(app_url, verbose=False)  # its class menu is the page's first: "none (unconditional)"
    with pytest.raises(Exception, match="Guidance needs a class-conditional model"):
        fresh.predict(model=DEFAULT_MODEL, steps=2, count=2, api_name="/guidance_sweep")


# ---- the real page -------------------------------------------------------------------------------------------


def test_a_guided_sample_and_the_sweep_in_chromium(app_url, page, artifacts):
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(app_url)
    page.get_by_role("tab", name="Sample").click()
    note = page.locator("#sample-guidance-note")
    note.get_by_text("Guidance needs a class-conditional model").wait_for(timeout=30_000)
    assert "class-conditional" in page.locator("#sample-sweep-note").inner_text()
    page.locator("#sample-model input").click()
    page.get_by_role("option", name=COND).click()
    note.get_by_text("Sample with a guidance scale other than 1").wait_for(timeout=30_000)
    # a guided sample, each class in turn (the class menu's first choice), guidance 2 (the slider's start)
    page.locator("#sample-run").click()
    page.locator("#sample-progress").get_by_text("Drag the slider").wait_for(timeout=60_000)
    page.locator("#sample-guidance img").wait_for(timeout=30_000)
    assert page.locator("#sample-guidance img").get_attribute("alt") == DIRECTION_ALT
    last = page.locator("#sample-guidance img").get_attribute("src")
    xt_last = page.locator("#sample-xt img").get_attribute("src")
    slider = page.get_by_label("range slider for Replay the run, step by step")
    slider.focus()
    slider.press("Home")
    page.wait_for_function(
        "before => { const img = document.querySelector('#sample-guidance img'); return img && img.src !== before; }",
        arg=last,
        timeout=30_000,
    )
    note.get_by_text("the class moves").wait_for(timeout=30_000)
    page.locator("#sample-step-caption").get_by_text("step 1 of").wait_for(timeout=30_000)
    page.wait_for_function(  # the other three pictures show the first step too
        "before => document.querySelector('#sample-xt img').src !== before", arg=xt_last, timeout=30_000
    )
    page.locator("#sample-xt").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "guidance_direction_first_step.png"), full_page=True)
    slider.press("End")
    page.wait_for_function(
        "() => document.querySelector('#sample-step-caption').innerText.includes('the clean sample')", timeout=30_000
    )
    page.screenshot(path=str(artifacts / "guidance_direction_last_step.png"), full_page=True)
    # the sweep: each class in turn, a row per scale
    page.locator("#sample-sweep-run").click()
    page.locator("#sample-sweep-progress").get_by_text("Done: 5 rows").wait_for(timeout=120_000)
    page.locator("#sample-sweep img").wait_for(timeout=30_000)
    assert "each class in turn" in page.locator("#sample-sweep-caption").inner_text()
    page.locator("#sample-sweep").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "guidance_sweep.png"), full_page=False)
    page.locator("#sample-sweep img").screenshot(path=str(artifacts / "guidance_sweep_grid.png"))
