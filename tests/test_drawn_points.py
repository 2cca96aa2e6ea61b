"""Your own 2D data set (core.drawn_points, explorer.drawing, explorer.tabs.drawing): clicks land at the right plane
coordinates, typed points are read or refused with the line that is wrong, the set is normalised like the toy sets
and is each user's own, and a short live training on a drawing samples points near it (and shows it under them);
through gradio_client too."""

from __future__ import annotations

import math

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import Client

from core.data import dataset_kind, load_dataset
from core.drawn_points import (
    CLOUD_POINTS,
    DRAWING,
    MAX_DRAWN_POINTS,
    cloud,
    drawing_digest,
    drawn_dataset,
    normalise,
    parse_points,
)
from explorer.drawing import (
    CANVAS_PIXELS,
    LAST_COLOUR,
    POINT_COLOUR,
    Drawing,
    pixel_to_plane,
    plane_to_pixel,
)
from explorer.sessions import SessionRegistry
from explorer.tabs.drawing import DRAWING_LABEL, DrawingPanel, shown_for
from explorer.tabs.sample import SampleTab
from explorer.tabs.train import DATASETS, PRESETS, TrainTab, dataset_defaults

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RING = "\n".join(f"{0.6 * math.cos(k * 0.4):.3f}, {0.6 * math.sin(k * 0.4):.3f}" for k in range(16))  # 16 clicks


class FakeRequest:
    def __init__(self, session_hash: str):
        self.session_hash = session_hash


class FakeSelect:
    """What Gradio hands a select callback: the clicked pixel (x, y) of the canvas picture."""

    def __init__(self, index):
        self.index = index


def drawing_args(steps: int, **changes) -> dict:
    args = {
        "dataset_label": DRAWING_LABEL,
        "upload": None,
        "preset_label": next(iter(PRESETS)),
        "schedule": "cosine",
        "objective": "eps",
        "length_unit": "steps",
        "length": steps,
        "batch_size": 128,
        "lr": 3e-3,
        "ema_decay": 0.99,
        "seed": 0,
        "class_conditional": False,
    }
    return {**args, **changes}


def test_pixels_map_to_the_plane_and_back():
    last = CANVAS_PIXELS - 1
    assert pixel_to_plane(0, 0) == pytest.approx((-1 + 1 / CANVAS_PIXELS, 1 - 1 / CANVAS_PIXELS))  # top left
    assert pixel_to_plane(last, last) == pytest.approx((1 - 1 / CANVAS_PIXELS, -1 + 1 / CANVAS_PIXELS))
    assert pixel_to_plane(CANVAS_PIXELS / 2 - 0.5, CANVAS_PIXELS / 2 - 0.5) == pytest.approx((0, 0))
    assert pixel_to_plane(315, 105) == pytest.approx((0.5 + 1 / CANVAS_PIXELS, 0.5 - 1 / CANVAS_PIXELS))  # up right
    for px, py in [(0, 0), (17, 400), (315, 105)]:
        assert plane_to_pixel(*pixel_to_plane(px, py)) == pytest.approx((px, py))


def test_a_click_adds_a_cloud_where_it_landed_and_draws_it_there():
    panel, user = DrawingPanel(SessionRegistry(max_jobs=1, compute_threads=1)), FakeRequest("ann")
    picture, count = panel.click(0.0, FakeSelect([315, 105]), request=user)  # spread 0: exactly one point
    drawing = panel._drawing(user)
    assert drawing.points().tolist() == [pytest.approx(list(pixel_to_plane(315, 105)))]
    assert "**1 point** from 1 click" in count and "at least 8" in count
    assert tuple(picture[105, 315]) == LAST_COLOUR  # the dot is where the click was
    panel.click(0.05, FakeSelect([100, 300]), request=user)
    points = drawing.points()
    assert len(points) == 1 + CLOUD_POINTS
    centre = torch.tensor(pixel_to_plane(100, 300))
    assert (points[1:].mean(0) - centre).abs().max() < 0.05  # 12 draws of std 0.05: the mean within 3.5 sigma
    picture = drawing.picture()
    assert tuple(picture[105, 315]) == POINT_COLOUR  # an older stroke now, in the usual colour
    assert np.array_equal(drawing.picture(), picture)  # the same clicks give the same points
    with pytest.raises(gr.Error, match="outside the canvas"):
        panel.click(0.05, FakeSelect([CANVAS_PIXELS, 3]), request=user)
    with pytest.raises(gr.Error, match="outside the canvas"):
        panel.click(0.05, FakeSelect(None), request=user)
    with pytest.raises(gr.Error, match="spread must be a number in"):
        panel.click(0.5, FakeSelect([3, 3]), request=user)
    _, count = panel.undo(request=user)
    assert "**1 point** from 1 click" in count
    _, count = panel.clear(request=user)
    assert "**0 points** from 0 clicks" in count and drawing.count == 0
    assert panel.undo(request=user)[1] == count  # nothing to undo: still empty


def test_typed_points_are_read_or_refused_with_the_line():
    typed = parse_points("0.5, -0.2\n\n# a comment\n-1 1\n0.25;0")
    assert torch.equal(typed, torch.tensor([[0.5, -0.2], [-1, 1], [0.25, 0]]))
    for text, message in [
        ("0.5, 0.5\nhello", "line 2: 'hello' is not two numbers"),
        ("0.1, 0.2, 0.3", "line 1: '0.1, 0.2, 0.3' is not two numbers"),
        ("1.5, 0.2", r"line 1: \(1.5, 0.2\) is outside the canvas: x and y must be from -1 to 1"),
        ("nan, 0", "outside the canvas"),
        ("  \n# nothing", "no points given"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_points(text)
    panel, user = DrawingPanel(SessionRegistry(max_jobs=1, compute_threads=1)), FakeRequest("ben")
    with pytest.raises(gr.Error, match="line 1: 'x, y' is not two numbers"):
        panel.add_typed("x, y", 0.0, request=user)
    _, count = panel.add_typed("0, 0\n0.5, 0.5", 0.0, request=user)
    assert "**2 points** from 2 clicks or typed lines" in count
    assert torch.equal(panel._drawing(user).points(), torch.tensor([[0, 0], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="more than 3000"):
        Drawing().add([(0.0, 0.0)] * (MAX_DRAWN_POINTS // CLOUD_POINTS + 1), 0.1)


def test_the_set_is_normalised_like_the_toy_sets():
    points = torch.tensor([[0.1, 0.2], [0.5, 0.2], [0.3, 0.4], [0.1, 0.3]] * 2)
    data = drawn_dataset(points)
    assert data.name == DRAWING and data.kind == "points" and dataset_kind(DRAWING) == "points"
    x = data.points
    assert x[:, 0].min() == pytest.approx(-1) and x[:, 0].max() == pytest.approx(1)  # the longer side: [-1, 1]
    assert x[:, 1].min() == pytest.approx(-0.5) and x[:, 1].max() == pytest.approx(0.5)  # proportions kept
    assert torch.allclose(normalise(torch.full((8, 2), 0.3)), torch.zeros(8, 2))  # one spot: only centred
    assert data.describe()["points"][0] == [-1.0, -0.5]
    assert drawing_digest(points) == drawing_digest(points.clone()) != drawing_digest(points + 0.01)
    with pytest.raises(ValueError, match="draw at least 8 points first \\(there are 3\\)"):
        drawn_dataset(points[:3])
    with pytest.raises(ValueError, match="outside the canvas"):
        drawn_dataset(torch.cat([points, torch.tensor([[2.0, 0.0]])]))
    with pytest.raises(ValueError, match="has no file to load"):
        load_dataset(DRAWING)
    with pytest.raises(ValueError, match="outside the canvas"):
        cloud((1.2, 0.0), 0.0, torch.Generator())
    assert DATASETS[DRAWING_LABEL] == DRAWING and dataset_defaults(DRAWING_LABEL)[0].value == "eps"
    assert shown_for(DRAWING_LABEL).visible and not shown_for(next(iter(DATASETS))).visible


@pytest.fixture(scope="module")
def trained():
    """A ring of 16 clicks drawn by "cara", trained on for 400 steps through the Train tab's Start."""
    registry = SessionRegistry(max_jobs=1, compute_threads=1)
    tab, user = TrainTab(registry), FakeRequest("cara")
    torch.set_num_threads(1)
    tab.drawing.add_typed(RING, 0.04, request=user)
    outputs = list(tab.start(**drawing_args(400), request=user))
    return registry, tab, user, outputs


def test_too_few_points_are_refused_before_a_run(trained):
    _, tab, _, _ = trained
    with pytest.raises(gr.Error, match="draw at least 8 points first \\(there are 0\\)"):
        list(tab.start(**drawing_args(5), request=FakeRequest("dan")))
    tab.drawing.add_typed("0, 0\n0.2, 0.2", 0.0, request=FakeRequest("dan"))
    with pytest.raises(gr.Error, match="there are 2"):
        tab.step(**drawing_args(5), request=FakeRequest("dan"))


def test_a_run_on_the_drawing_samples_near_it(trained):
    registry, tab, user, outputs = trained
    status = outputs[-1][0]
    assert "Finished" in status and "step 400 of 400" in status and "my model: drawing" in status
    drawn = drawn_dataset(tab.drawing._drawing(user).points()).points
    sample_tab = SampleTab(registry)
    name = next(n[0] for n in sample_tab.model_menu(None, user).choices if n[0].startswith("my model: drawing"))
    controls = dict(sampler="DDIM", steps=50, eta=0, seed=0, count=500, class_choice=None, guidance=1.0)
    list(sample_tab.sample(model=name, **controls, request=user))
    trajectory = registry.session("cara").trajectory
    assert torch.allclose(trajectory.reference, drawn, atol=1e-4)  # the drawing is drawn under the samples
    distance = torch.cdist(trajectory.final, drawn).min(dim=1).values.mean().item()
    noise = torch.cdist(trajectory.x_T, drawn).min(dim=1).values.mean().item()
    # measured: 0.060 after 400 steps (1,500 steps: 0.043); the starting noise 0.52
    assert distance < 0.15 and noise > 0.3, (distance, noise)
    assert registry.session("bob").drawing is None  # the drawing was cara's alone


def test_step_trains_on_the_drawing_too(trained):
    registry, tab, user, _ = trained
    summary, picture, _table, _plot = tab.step(**drawing_args(5, length_unit="steps"), request=user)
    assert "fresh model" in summary and picture is not None
    stepped = registry.session("cara").stepping
    assert stepped.trainer.data.name == DRAWING and len(stepped.trainer.data) == 16 * CLOUD_POINTS
    tab.drawing.undo(request=user)
    summary, *_ = tab.step(**drawing_args(5, length_unit="steps"), request=user)
    assert "fresh model" in summary  # a changed drawing is a changed data set: it starts over


def test_drawing_and_training_through_the_app(app_url):
    client = Client(app_url, verbose=False)
    _, count = client.predict("0.5, 0.5\n-0.5, -0.5", 0.04, api_name="/drawing_add_points")
    assert "**24 points** from 2 clicks" in count
    with pytest.raises(Exception, match="line 1: 'two, three' is not two numbers"):
        client.predict("two, three", 0.04, api_name="/drawing_add_points")
    with pytest.raises(Exception, match="outside the canvas"):
        client.predict("0.5, 3", 0.04, api_name="/drawing_add_points")
    _, count = client.predict(api_name="/drawing_undo")
    assert "**12 points** from 1 click" in count
    _, count = client.predict(api_name="/drawing_clear")
    with pytest.raises(Exception, match="draw at least 8 points first"):
        client.predict(**drawing_args(3), api_name="/train")
    client.predict(RING, 0.04, api_name="/drawing_add_points")
    status, *_ = client.predict(**drawing_args(20), api_name="/train")
    assert "Finished" in status and "step 20 of 20" in status and "my model: drawing, tiny, 20 steps" in status


def test_draw_and_train_in_chromium(app_url, page, artifacts):
    page.goto(app_url)
    page.get_by_text("See every part of a denoising diffusion model move").wait_for(timeout=30_000)
    page.get_by_role("tab", name="Train").click()
    assert not page.locator("#train-drawing").is_visible()
    menu = page.get_by_label("Dataset", exact=True)
    menu.click()
    menu.fill("")
    page.keyboard.type("drawing")
    page.get_by_role("option", name=DRAWING_LABEL).click()
    picture = page.locator("#train-drawing-canvas img")
    picture.wait_for(timeout=10_000)
    picture.scroll_into_view_if_needed()
    box = picture.bounding_box()
    # where Gradio puts the picture in its box (contained, centred, never enlarged) and so reads a click
    ratio = min(box["width"] / CANVAS_PIXELS, box["height"] / CANVAS_PIXELS, 1)
    left = box["x"] + (box["width"] - CANVAS_PIXELS * ratio) / 2
    top = box["y"] + (box["height"] - CANVAS_PIXELS * ratio) / 2
    ready = "() => { const i = document.querySelector('#train-drawing-canvas img'); return i && i.complete"
    ready += " && i.naturalWidth > 0; }"  # a click on a picture still loading has no pixel to report
    for k in range(12):  # a ring of 12 clicks
        px, py = plane_to_pixel(0.6 * math.cos(k * math.pi / 6), 0.6 * math.sin(k * math.pi / 6))
        page.wait_for_function(ready, timeout=15_000)
        page.mouse.click(left + (px + 0.5) * ratio, top + (py + 0.5) * ratio)
        count = f"{CLOUD_POINTS * (k + 1)} points"
        page.locator("#train-drawing-count").get_by_text(count).wait_for(timeout=30_000)
    page.locator("#train-drawing-undo").click()
    page.locator("#train-drawing-count").get_by_text(f"{CLOUD_POINTS * 11} points").wait_for(timeout=15_000)
    page.locator("#train-drawing-text").locator("textarea").fill("0.6, 0\nbad line")
    page.locator("#train-drawing-add").click()
    page.get_by_text("line 2: 'bad line' is not two numbers").first.wait_for(timeout=15_000)
    page.locator("#train-drawing-text").locator("textarea").fill("0.6, 0")
    page.locator("#train-drawing-add").click()
    page.locator("#train-drawing-count").get_by_text(f"{CLOUD_POINTS * 12} points").wait_for(timeout=15_000)
    page.get_by_label("steps", exact=True).check()
    page.get_by_label("How long").fill("300")
    page.locator("#train-start").click()
    page.locator("#train-status").get_by_text("Finished").wait_for(timeout=300_000)
    assert "my model: drawing, tiny, 300 steps" in page.locator("#train-status").inner_text()
    picture.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "train_drawn_points.png"), full_page=True)

    # the model of the drawing samples in the Sample tab, its arrows over the drawing
    page.get_by_role("tab", name="Sample").click()
    page.locator("#sample-model input").click()
    page.get_by_role("option", name="my model: drawing, tiny, 300 steps").click()
    page.locator("#sample-field-note").get_by_text("its arrows appear here").wait_for(timeout=10_000)
    page.locator("#sample-run").click()
    page.locator("#sample-progress").get_by_text("Drag the slider").wait_for(timeout=60_000)
    title = "document.querySelector('#sample-field .js-plotly-plot')?.layout?.title?.text"
    page.wait_for_function(f"() => ({title} || '').includes('arrows at t = ')", timeout=30_000)
    slider = page.get_by_label("range slider for Replay the run, step by step")
    slider.focus()
    for _ in range(3):
        slider.press("ArrowLeft")  # a few steps before the end: the arrows bend towards the ring
    page.locator("#sample-field").scroll_into_view_if_needed()
    page.wait_for_timeout(1500)
    page.locator("#sample-field").screenshot(path=str(artifacts / "sample_drawn_field.png"))
