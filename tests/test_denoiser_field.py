"""The 2D denoiser made visible (explorer.denoiser_field, explorer.field_figure, explorer.tabs.denoiser_field): the
arrows are pred_x0 - x recomputed from the model by core's closed forms for every objective and schedule, they are
the sampler's own pred_x0 at a run's points (whole and fractional t), they follow the replay slider, and the figure
draws what was computed; through gradio_client too."""

from __future__ import annotations

import json
import time

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import Client

from core.diffusion import predict_x0
from core.samplers import denoise, guided_output, make_sampler
from core.schedules import make_schedule
from core.toy import make_toy_mlp
from explorer.denoiser_field import FIELD_EXTENT, FIELD_SIDE, DenoiserField, field_grid, run_field
from explorer.field_figure import ARROW_FILL, arrow_segments, drawn_arrows
from explorer.models import DEFAULT_MODEL, PRETRAINED, pretrained
from explorer.sessions import SessionRegistry
from explorer.tabs.denoiser_field import NOT_FOR_PICTURES, FieldView
from explorer.tabs.sample import SampleTab

pytestmark = pytest.mark.usefixtures("one_torch_thread")
MOONS = PRETRAINED["toy_moons"]


class FakeRequest:
    def __init__(self, session_hash: str):
        self.session_hash = session_hash


def random_mlp(num_classes: int | None = None, seed: int = 0) -> torch.nn.Module:
    """A small MLP whose output is not zero (the constructor starts the output layer at zero)."""
    torch.manual_seed(seed)
    model = make_toy_mlp("tiny", num_classes=num_classes, hidden=32, num_blocks=1)
    torch.nn.init.normal_(model.output.weight, std=0.5)
    torch.nn.init.normal_(model.output.bias, std=0.2)
    return model.eval()


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
@pytest.mark.parametrize("schedule_name", ["linear", "cosine"])
def test_the_arrows_are_pred_x0_minus_x_by_core_closed_forms(objective, schedule_name):
    model, schedule = random_mlp(), make_schedule(schedule_name, 1000)
    grid = field_grid()
    for t in (0, 250, 999):
        with torch.no_grad():
            output = model(grid, torch.full((len(grid),), t, dtype=torch.long))
        expected = predict_x0(schedule, grid.double(), t, output.double(), objective) - grid.double()
        field = DenoiserField(model, schedule, objective, clip_x0=False).at(t)
        assert field.arrows.shape == (FIELD_SIDE**2, 2) and np.allclose(field.points, grid.numpy())
        assert np.allclose(field.arrows, expected.numpy(), rtol=1e-4, atol=1e-4)
        assert field.alpha_bar == pytest.approx(float(schedule.alphas_cumprod[t]))
        clipped = DenoiserField(model, schedule, objective, clip_x0=True).at(t)  # what a clipping sampler uses
        target = predict_x0(schedule, grid.double(), t, output.double(), objective).clamp(-1, 1) - grid.double()
        assert np.allclose(clipped.arrows, target.numpy(), rtol=1e-4, atol=1e-4)


def test_zero_terminal_snr_v_model_points_at_its_guess_from_pure_noise():
    model = random_mlp()
    schedule = make_schedule("cosine", 1000, zero_terminal_snr=True)
    grid = field_grid()
    with torch.no_grad():
        output = model(grid, torch.full((len(grid),), 999, dtype=torch.long))
    field = DenoiserField(model, schedule, "v", clip_x0=False).at(999)  # alpha-bar 0: x0 = -v, whatever x is
    assert field.alpha_bar == 0.0
    assert np.allclose(field.arrows, (-output - grid).double().numpy(), atol=1e-5)


def test_a_class_and_guidance_give_the_guided_prediction():
    model, schedule = random_mlp(num_classes=3), make_schedule("cosine", 1000)
    grid = field_grid()
    labels = torch.full((len(grid),), 2, dtype=torch.long)
    with torch.no_grad():
        output = guided_output(model, grid, 400, labels, 3.0)
    expected = predict_x0(schedule, grid.double(), 400, output.double(), "eps") - grid.double()
    field = run_field(model, schedule, "eps", False, torch.full((5,), 2), 3.0)
    assert (field.label, field.guidance) == (2, 3.0)
    assert np.allclose(field.at(400).arrows, expected.numpy(), rtol=1e-4, atol=1e-4)
    mixed = run_field(model, schedule, "eps", False, torch.arange(6) % 3, 3.0)  # each class in turn: no class
    assert (mixed.label, mixed.guidance) == (None, 1.0)


@pytest.mark.parametrize(
    ("name", "spacing"), [("ddim", "leading"), ("ddim", "karras"), ("heun", "karras"), ("dpmpp_2m_sde", "trailing")]
)
def test_at_a_runs_points_the_arrows_are_the_samplers_own_pred_x0(name, spacing):
    """The field at the points a sampler gave the network at some call (whole t, or Karras' fractional ones; Heun's
    corrector too: each call's input is the state the call before it left, which `Trajectory.points_seen` relies
    on) ends exactly where that call's pred_x0 is."""
    entry = pretrained(MOONS)
    model, schedule = entry.model, entry.checkpoint.schedule
    sampler = make_sampler(name, schedule, objective=entry.checkpoint.objective, clip_x0=True, spacing=spacing)
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(3))
    field = DenoiserField(model, schedule, entry.checkpoint.objective, clip_x0=True)
    fractional = 0
    for step in denoise(model, sampler, x, 8):
        arrows = field.at(step.t, points=x)
        assert np.allclose(arrows.points + arrows.arrows, step.pred_x0.double().numpy(), atol=2e-5)
        fractional += not float(step.t).is_integer()
        x = step.x_t
    assert (fractional > 0) == (spacing == "karras")


def test_drawn_arrows_keep_their_direction_and_fit_a_cell():
    arrows = np.array([[3.0, 4.0], [0.0, -0.05], [0.0, 0.0]])
    drawn = drawn_arrows(arrows, cell=0.2)
    assert np.linalg.norm(drawn[0]) == pytest.approx(ARROW_FILL * 0.2)  # the longest fills the cell
    assert np.linalg.norm(drawn[1]) == pytest.approx(ARROW_FILL * 0.2 * np.sqrt(0.05 / 5))  # shorter, not a dot
    assert drawn[1][1] < 0 and drawn[1][0] == 0 and np.all(drawn[2] == 0)
    x, y = arrow_segments(np.zeros((3, 2)), drawn)
    assert len(x) == 2 * 7  # two arrows (the zero one left out): shaft, gap, two head strokes, gap
    assert (x[1], y[1]) == pytest.approx(tuple(drawn[0]))  # the shaft ends at the tip


@pytest.fixture
def registry(tmp_path):
    return SessionRegistry(tmp_path, max_jobs=1, compute_threads=1)


def sample_moons(tab: SampleTab, user: FakeRequest, steps: int = 20, count: int = 300) -> None:
    controls = dict(sampler="DDIM", steps=steps, eta=0, seed=0, count=count, class_choice=None, guidance=1.0)
    list(tab.sample(model=MOONS, **controls, request=user))


def arrow_trace(figure) -> dict:
    (trace,) = [t for t in figure.data if str(t.name).startswith("pred_x0 - x")]
    return trace


def test_the_field_follows_the_replay_slider(registry):
    tab, user = SampleTab(registry), FakeRequest("erin")
    view = FieldView(tab)
    with pytest.raises(gr.Error, match="Sample first"):
        view.show_field(0, request=user)
    sample_moons(tab, user)
    trajectory = registry.session("erin").trajectory
    figures, seconds = {}, []
    for i in (0, 10, 19):
        start = time.perf_counter()
        figures[i], note = view.show_field(i, request=user)
        seconds.append(time.perf_counter() - start)
        t = trajectory.t_saved[i]
        assert f"t = {t:g}" in figures[i].layout.title.text and f"network at t = {t:g};" in note
    # measured 25-45 ms each on one shared core; the slider's goal is < 100 ms
    assert max(seconds) < 0.5, seconds
    early, late = (np.asarray(arrow_trace(figures[i]).x, dtype=float) for i in (0, 19))
    assert not np.allclose(np.nan_to_num(early), np.nan_to_num(late))
    # the plotted samples are the network's input at that step (x_T first) and the state after it
    names = {trace.name: trace for trace in figures[10].data}
    assert np.allclose(names["given to the network"].x, trajectory.x_t[9][:, 0])
    assert np.allclose(names["after the step"].x, trajectory.x_t[10][:, 0])
    assert np.allclose(view.show_field(0, request=user)[0].data[2].x, trajectory.x_T[:, 0].numpy())
    assert tuple(figures[10].layout.xaxis.range) == (-FIELD_EXTENT, FIELD_EXTENT)
    with pytest.raises(gr.Error, match="step must be a whole number from 0 to 19"):
        view.show_field(20, request=user)
    after = view.after_run(request=user)
    assert after[0].layout.title.text == figures[19].layout.title.text


def test_picture_models_have_no_field(registry):
    tab, user = SampleTab(registry), FakeRequest("finn")
    view = FieldView(tab)
    assert view.expect(MOONS, request=user)[0].visible and not view.expect(DEFAULT_MODEL, request=user)[0].visible
    controls = dict(sampler="DDIM", steps=3, eta=0, seed=0, count=2, class_choice=None, guidance=1.0)
    list(tab.sample(model=DEFAULT_MODEL, **controls, request=user))
    assert view.show_field(1, request=user)[1] == NOT_FOR_PICTURES


def test_the_field_through_the_app(app_url):
    client = Client(app_url, verbose=False)
    client.predict(MOONS, api_name="/describe_model")
    controls = dict(model=MOONS, sampler="DDIM", steps=10, eta=0, seed=0, count=200, class_choice=None, guidance=1)
    client.predict(**controls, api_name="/sample")
    titles = []
    for index in (0, 9):
        plot, note = client.predict(index, api_name="/show_field_step")
        figure = json.loads(plot["plot"])
        titles.append(figure["layout"]["title"]["text"])
        assert any(str(trace.get("name", "")).startswith("pred_x0 - x") for trace in figure["data"])
        assert "clean point the denoiser guesses" in note
    assert titles[0] != titles[1] and "t = 999" in titles[0]  # the API's default spacing: trailing, from T - 1
    with pytest.raises(Exception, match=r"maximum value 9|step must be a whole number"):  # (Gradio checks first)
        client.predict(12, api_name="/show_field_step")


FIELD_TITLE_JS = (
    "() => { const p = document.querySelector('#sample-field .js-plotly-plot');"
    " return p && p.layout && p.layout.title ? p.layout.title.text : null; }"
)


def test_the_field_follows_the_slider_in_chromium(app_url, page, artifacts):
    page.goto(app_url)
    page.get_by_text("See every part of a denoising diffusion model move").wait_for(timeout=30_000)
    page.get_by_role("tab", name="Sample").click()
    assert not page.locator("#sample-field").is_visible()  # the digits: no arrows
    page.locator("#sample-model input").click()
    page.locator("#sample-model input").fill("")
    page.keyboard.type("moons")
    page.get_by_role("option", name=MOONS).click()
    page.locator("#sample-field-note").get_by_text("its arrows appear here").wait_for(timeout=10_000)
    page.locator("#sample-run").click()
    page.locator("#sample-progress").get_by_text("Drag the slider").wait_for(timeout=60_000)
    page.wait_for_function(f"() => ({FIELD_TITLE_JS})()?.includes('arrows at t = ')", timeout=30_000)
    last = page.evaluate(FIELD_TITLE_JS)
    slider = page.get_by_label("range slider for Replay the run, step by step")
    slider.focus()
    slider.press("Home")  # the first step: t near T, every arrow towards the data's mean
    page.wait_for_function(f"last => ({FIELD_TITLE_JS})() !== last", arg=last, timeout=30_000)
    first = page.evaluate(FIELD_TITLE_JS)
    for _ in range(7):
        slider.press("ArrowRight")
    page.locator("#sample-step-caption").get_by_text("step 8 of").wait_for(timeout=30_000)
    caption = page.locator("#sample-step-caption").inner_text()
    t = caption.split("network at t = ")[1].split(",")[0]
    # the arrows settle on the step on show (the slider's events run the last move only: always_last)
    page.wait_for_function(f"t => ({FIELD_TITLE_JS})()?.includes(`arrows at t = ${{t}} `)", arg=t, timeout=30_000)
    assert first != page.evaluate(FIELD_TITLE_JS)
    traces = page.locator("#sample-field .js-plotly-plot").evaluate("el => el.data.map(t => t.name)")
    assert traces[0] == "true data" and traces[1].startswith("pred_x0 - x") and "after the step" in traces
    page.locator("#sample-field").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "sample_2d_field.png"), full_page=False)
    page.locator("#sample-field").screenshot(path=str(artifacts / "sample_2d_field_plot.png"))
