"""SDEdit (Meng et al. 2021): a picture noised to t and denoised from there. The levels of a run started part-way,
the start x_t against the closed form, t = 0 gives the picture back, t = T-1 is an ordinary run, a drawn digit
survives a middle t, and the whole thing through the launched app and on the real page in Chromium."""

import math

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from PIL import Image, ImageDraw

from core.data import load_mnist5k
from core.samplers import make_sampler
from core.schedules import make_schedule
from core.sdedit import levels_from
from explorer.images import grid_picture
from explorer.models import DEFAULT_MODEL, PRETRAINED, pretrained
from explorer.sampling_run import run_sampling
from explorer.sdedit import fit_picture, noised_start
from explorer.tabs.sdedit import (
    BRUSH,
    CANVAS,
    DDIM_SAMPLER,
    FROM_DRAWING,
    FROM_PICTURE,
    MODEL_SAMPLER,
    drawing_picture,
    sampler_settings,
)

MIDDLE_T = 500  # cosine: alpha-bar 0.49, 70% of the picture's amplitude left
SEEDS = range(6)


@pytest.fixture(scope="module")
def digits():
    return pretrained(DEFAULT_MODEL)


def seven() -> np.ndarray:
    """A '7' drawn as on the sketchpad: white strokes of the brush's width on a black 280x280 canvas."""
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(canvas)
    draw.line([(70, 60), (210, 60), (120, 230)], fill=255, width=BRUSH, joint="curve")
    return np.asarray(canvas)


def denoised(entry, settings, x_t, seed, start_t=None):
    """The finished sample and the trajectory of a run from x_t (an ordinary run when start_t is None)."""
    *_, (_, trajectory) = run_sampling(entry, settings, x_t, seed=seed, start_t=start_t)
    return trajectory.final, trajectory


# ---- core: the levels of a run that starts part-way ----------------------------------------------------------


def test_levels_start_at_t_and_keep_the_ordinary_ones_below():
    sampler = make_sampler("dpmpp_2m_sde", make_schedule("cosine"), spacing="trailing")  # 999, 899, ..., 99
    assert levels_from(sampler, 10, 999) == sampler.levels(10)
    assert levels_from(sampler, 10, 450).timesteps == (450, 399, 299, 199, 99)
    assert levels_from(sampler, 10, 400).timesteps == (400, 299, 199, 99)  # 399 would be a step of one timestep
    assert levels_from(sampler, 10, 0).timesteps == (0,)
    levels = levels_from(sampler, 10, 450)
    assert levels.alpha_bars[0] == sampler.schedule.alpha_bar(450) and levels.alpha_bars[-1] == 1.0
    assert levels.alpha_bars[1:-1] == sampler.levels(10).alpha_bars[6:-1]


def test_karras_and_leading_runs_start_at_t():
    schedule = make_schedule("cosine")
    karras = make_sampler("heun", schedule, spacing="karras")
    full, from_top = karras.levels(8), levels_from(karras, 8, 999)
    assert len(from_top) == len(full)
    assert np.allclose(from_top.alpha_bars, full.alpha_bars, rtol=1e-9, atol=0)
    leading = make_sampler("ddim", schedule, spacing="leading")  # 980, 960, ...: below T-1
    assert levels_from(leading, 50, 999).timesteps[:3] == (999, 980, 960)


@pytest.mark.parametrize("start_t", [-1, 1000, 2.5, True])
def test_a_start_outside_the_schedule_is_refused(start_t):
    sampler = make_sampler("ddim", make_schedule("linear"))
    with pytest.raises(ValueError, match="start_t must be a whole timestep from 0 to 999"):
        levels_from(sampler, 10, start_t)


def test_a_sigma_sampler_cannot_start_at_pure_noise():
    sampler = make_sampler("euler", make_schedule("linear", zero_terminal_snr=True), spacing="leading")
    with pytest.raises(ValueError, match="infinite at t = 999"):
        levels_from(sampler, 10, 999)
    assert levels_from(sampler, 10, 998).timesteps[0] == 998


# ---- the app's side: the picture at the model's size, x_t, the run ------------------------------------------


def test_a_picture_is_fitted_to_the_model(digits):
    photo = Image.new("RGB", (400, 200), (255, 0, 0))
    x = fit_picture(photo, digits.checkpoint.sample_shape)
    assert x.shape == (1, 1, 28, 28) and -1.0 <= float(x.min()) <= float(x.max()) <= 1.0
    assert fit_picture(photo, (3, 32, 32)).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="grey or RGB pictures"):
        fit_picture(photo, (2,))


def test_the_start_is_the_closed_form_on_the_models_schedule(digits):
    x0 = fit_picture(Image.fromarray(seven()), digits.checkpoint.sample_shape)
    start = noised_start(digits, x0, 300, 7)
    eps = torch.randn((1, 1, 28, 28), generator=torch.Generator().manual_seed(7))
    assert torch.equal(start.noise, eps)  # the seed's noise, as the Sample tab draws its x_T
    a = make_schedule("cosine").alphas_cumprod[300].item()  # the model's schedule, not the Forward tab's linear
    expected = math.sqrt(a) * x0.double() + math.sqrt(1 - a) * eps.double()
    assert torch.allclose(start.x_t.double(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="t must be from 0 to 999"):
        noised_start(digits, x0, 1000, 7)


def test_at_t_0_the_picture_comes_back(digits):
    x0 = load_mnist5k("test", image_size=None).images[:4]  # (4, 1, 28, 28): digits like the model's own
    settings = sampler_settings(digits, MODEL_SAMPLER)
    for i in range(len(x0)):
        start = noised_start(digits, x0[i : i + 1], 0, i)
        result, trajectory = denoised(digits, settings, start.x_t, i, start_t=0)
        assert trajectory.num_calls == 1
        error = (result - x0[i : i + 1]).abs()
        # one network call at alpha-bar 0.99996: the model's x0 guess, within 5 grey levels of 255 on average (it
        # measured 0.012 to 0.026) and no pixel a quarter of the range off (0.13 to 0.38); pure noise is ~0.8 away
        assert float(error.mean()) < 0.04 and float(error.max()) < 0.5, (float(error.mean()), float(error.max()))


@pytest.mark.parametrize("choice", [MODEL_SAMPLER, DDIM_SAMPLER])
def test_at_t_T_minus_1_it_is_an_ordinary_run_from_the_same_noise(digits, choice):
    settings = sampler_settings(digits, choice)
    x0 = fit_picture(Image.fromarray(seven()), digits.checkpoint.sample_shape)
    start = noised_start(digits, x0, 999, 3)
    sdedit, from_t = denoised(digits, settings, start.x_t, 3, start_t=999)
    ordinary, full = denoised(digits, settings, start.x_t, 3)
    assert from_t.timesteps == full.timesteps and from_t.num_calls == settings.calls
    assert torch.allclose(sdedit, ordinary, atol=1e-5)


def test_a_drawn_digit_survives_a_middle_t(digits):
    """Behavioural: at t = 500 the result stays near the drawn 7 (mean squared distance at most a quarter of what
    a run from pure noise with the same seeds lands at; measured 0.050 against 0.449), and the larger t, the further
    it moves (t = 200: 0.006, t = 800: 0.217)."""
    settings = sampler_settings(digits, MODEL_SAMPLER)
    x0 = fit_picture(Image.fromarray(seven()), digits.checkpoint.sample_shape)

    def distance(start_t):  # None: an ordinary run from pure noise (the seed's eps itself)
        total = 0.0
        for seed in SEEDS:
            start = noised_start(digits, x0, start_t or 0, seed)
            x_t = start.noise if start_t is None else start.x_t
            result, _ = denoised(digits, settings, x_t, seed, start_t=start_t)
            total += float(((result - x0) ** 2).mean())
        return total / len(SEEDS)

    early, middle, late, pure_noise = distance(200), distance(MIDDLE_T), distance(800), distance(None)
    assert middle < 0.25 * pure_noise, (middle, pure_noise)
    assert early < middle < late < pure_noise, (early, middle, late, pure_noise)


def test_an_empty_sketchpad_is_refused():
    with pytest.raises(Exception, match="Draw a digit"):
        drawing_picture(None)
    with pytest.raises(Exception, match="sketchpad is empty"):
        drawing_picture({"composite": np.zeros((CANVAS, CANVAS), np.uint8)})
    framed = np.asarray(drawing_picture({"composite": seven()}))  # the 7's ink, 151x186, in MNIST's frame
    assert framed.shape == (260, 260) and framed.max() == 255  # 186 * 28 / 20
    rows, cols = np.nonzero(framed >= 16)
    assert (rows.min(), 259 - rows.max()) == (37, 37) and abs(cols.min() - (259 - cols.max())) <= 1


# ---- through the launched app ---------------------------------------------------------------------------------


def png_file(tmp_path, array, name="seven.png"):
    path = tmp_path / name
    Image.fromarray(array).save(path)
    return str(path)


def sketch_value(path):
    return {"background": handle_file(path), "layers": [], "composite": handle_file(path)}


def sdedit_args(source, sketch, *, model=DEFAULT_MODEL, picture="astronaut", upload=None, t=MIDDLE_T, seed=0):
    return dict(
        model=model,
        sampler=MODEL_SAMPLER,
        source=source,
        sketch=sketch,
        picture=picture,
        upload=upload,
        schedule="linear",
        t=t,
        seed=seed,
    )


def test_sdedit_through_the_app(app_url, tmp_path, digits):
    client = Client(app_url, verbose=False)
    path = png_file(tmp_path, seven())
    progress, original, noisy, result, strip, note = client.predict(
        **sdedit_args(FROM_DRAWING, sketch_value(path)), api_name="/sdedit"
    )
    assert "started at t = 500" in progress and "The strip shows every step" in progress
    assert "model's own schedule (cosine, T = 1000)" in note and "on the linear schedule, has alpha-bar" in note
    assert strip[0]["caption"] == "start: x_t at t = 500"
    assert strip[-1]["caption"] == "the result (t = 0)"
    # the page's result is the same run as the one computed here directly (same seed, same sampler)
    x0 = fit_picture(drawing_picture({"composite": seven()}), digits.checkpoint.sample_shape)
    start = noised_start(digits, x0, MIDDLE_T, 0)
    expected, _ = denoised(digits, sampler_settings(digits, MODEL_SAMPLER), start.x_t, 0, start_t=MIDDLE_T)
    assert np.array_equal(np.asarray(Image.open(result).convert("L")), grid_picture(expected))
    assert np.array_equal(np.asarray(Image.open(original).convert("L")), grid_picture(x0))
    assert np.array_equal(np.asarray(Image.open(noisy).convert("L")), grid_picture(start.x_t))

    with pytest.raises(Exception, match="sketchpad is empty"):
        empty = png_file(tmp_path, np.zeros((CANVAS, CANVAS), np.uint8), "empty.png")
        client.predict(**sdedit_args(FROM_DRAWING, sketch_value(empty)), api_name="/sdedit")
    with pytest.raises(Exception, match="draws 2D points"):
        client.predict(**sdedit_args(FROM_PICTURE, None, model=PRETRAINED["toy_moons"]), api_name="/sdedit")
    with pytest.raises(Exception, match="could not read this image"):
        junk = tmp_path / "junk.png"
        junk.write_bytes(b"not a picture at all" * 10)
        client.predict(
            **sdedit_args(FROM_PICTURE, None, picture="my upload", upload=handle_file(str(junk))), api_name="/sdedit"
        )
    with pytest.raises(Exception, match="t must be a whole number from 0 to 999"):
        client.predict(**sdedit_args(FROM_PICTURE, None, t=2.5), api_name="/sdedit")


def test_sdedit_on_the_page_in_chromium(app_url, page, artifacts):
    page.goto(app_url)
    page.get_by_text("See every part of a denoising diffusion model move").wait_for(timeout=30_000)
    page.get_by_role("tab", name="Forward process").click()
    canvas = page.locator("#sdedit-sketch canvas").first
    canvas.scroll_into_view_if_needed()
    canvas.wait_for(timeout=15_000)
    box = canvas.bounding_box()
    scale = box["width"] / CANVAS

    def stroke(points):
        page.mouse.move(box["x"] + points[0][0] * scale, box["y"] + points[0][1] * scale)
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=12)
        page.mouse.up()

    source = page.locator("#sdedit-source")
    assert source.get_by_label(FROM_PICTURE).is_checked()
    stroke([(70, 60), (210, 60), (120, 230)])  # a 7
    source.get_by_label(FROM_DRAWING).check()
    page.locator("#sdedit-run").click()
    page.locator("#sdedit-strip").get_by_text("the result (t = 0)").wait_for(timeout=60_000)
    assert page.locator("#sdedit-result img").count() == 1
    assert "started at t = 250" in page.locator("#sdedit-progress").inner_text()
    assert source.get_by_label(FROM_DRAWING).is_checked()
    page.get_by_text("Now denoise it (SDEdit)").evaluate("e => e.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(artifacts / "forward_sdedit.png"), full_page=False)
