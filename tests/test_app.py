"""The app end to end: every tab's endpoints through gradio_client against a launched server (normal and bad
input), and the real page in headless Chromium (every tab, the t slider, an upload), with screenshots."""

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

import app
from explorer.tabs.forward import MY_UPLOAD
from explorer.tabs.schedules import schedule_figures

TABS = ["Lesson", "Schedules", "Forward process", "Time embedding", "U-Net", "Train", "Sample", "Experiments"]


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_app_module_exposes_blocks_without_launching():
    import gradio as gr

    assert isinstance(app.demo, gr.Blocks)


def test_every_enlarged_picture_has_a_short_label_and_a_caption():
    """The thirteen enlarged pictures (Train's preview and its one training step; Sample's x_t, predicted x0, noise
    and what the class adds, and its guidance sweep; Compare's A and B; the Experiments tab's grids side by side; the
    Forward tab's SDEdit x_0, x_t and result): a label
    short enough to stay clear of the icon buttons in the same top strip, only the download and full-screen
    buttons, and a one-line caption under the picture that explains it."""
    import gradio as gr

    from explorer.images import PIXELATED
    from explorer.widgets import PICTURE_BUTTONS, PICTURE_CAPTION

    pictures = [b for b in app.demo.blocks.values() if isinstance(b, gr.Image) and PIXELATED in b.elem_classes]
    assert len(pictures) == 13
    for picture in pictures:
        assert len(picture.label) <= 24 and picture.buttons == list(PICTURE_BUTTONS)
        below = picture.parent.children[picture.parent.children.index(picture) + 1]
        assert isinstance(below, gr.Markdown) and PICTURE_CAPTION in below.elem_classes
        assert 10 <= len(below.value) <= 60 and "\n" not in below.value.strip()


def test_schedules_endpoint(client):
    alpha, *_, health = client.predict(
        ["linear", "scaled_linear"], 1000, 1e-4, 0.02, 0.008, False, api_name="/schedule_figures"
    )
    figure = json.loads(alpha["plot"])
    assert [trace["name"] for trace in figure["data"] if trace.get("mode") == "lines"] == ["linear", "scaled_linear"]
    expected = schedule_figures(["linear", "scaled_linear"], 1000, 1e-4, 0.02, 0.008, False)[4]
    assert health["data"] == expected
    with pytest.raises(Exception, match="less than minimum value 10"):
        client.predict(["linear"], 5, 1e-4, 0.02, 0.008, False, api_name="/schedule_figures")
    with pytest.raises(Exception, match="must be smaller than beta_end"):
        client.predict(["linear"], 1000, 0.03, 0.02, 0.008, False, api_name="/schedule_figures")


def test_schedule_export_endpoint(client):
    from diffusers import DDPMScheduler

    path = client.predict("cosine + zero terminal SNR", 1000, 1e-4, 0.02, 0.008, api_name="/export_schedule")
    scheduler = DDPMScheduler.from_config(json.loads(Path(path).read_text()))
    assert scheduler.alphas_cumprod[-1].item() == 0.0


def test_forward_endpoints_with_an_example_and_an_upload(client, tmp_path):
    outputs = client.predict("astronaut", None, "linear", 300, 0, "cosine", True, api_name="/forward_step")
    x_t, signal, noise, _histogram, left, right, caption = outputs
    for path in (x_t, signal, noise, left, right):
        with Image.open(path) as image:
            assert max(image.size) <= 256
    assert "nearest log-SNR" in caption
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8)).save(photo)
    uploaded = client.predict(
        MY_UPLOAD, handle_file(str(photo)), "linear", 10, 0, "cosine", False, api_name="/forward_step"
    )
    with Image.open(uploaded[0]) as image:
        assert image.size == (256, 256)
    strip = client.predict(MY_UPLOAD, handle_file(str(photo)), "linear", 0, api_name="/forward_strip")
    assert [item["caption"] for item in strip][:2] == ["t = 0", "t = 143"] and len(strip) == 8


def bomb_png(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG of side x side black pixels: a few kB on disk, 400 megapixels decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = side.to_bytes(4, "big") * 2 + bytes([1, 0, 0, 0, 0])
    rows = zlib.compress((b"\x00" + b"\x00" * ((side + 7) // 8)) * side, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (np.random.default_rng(1).bytes(3000), "random.png", "could not read this image"),
        (b"", "empty.png", "could not read this image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "drawing.svg", "Invalid file type"),  # Gradio's file_types
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "drawing.png", "not accepted"),  # ours, whatever the name
        (None, "bomb.png", "too large"),
    ],
)
def test_bad_uploads_get_a_clear_message(client, tmp_path, content, name, message):
    path = tmp_path / name
    path.write_bytes(bomb_png() if content is None else content)
    with pytest.raises(Exception, match=message):
        client.predict(MY_UPLOAD, handle_file(str(path)), "linear", 10, 0, "cosine", False, api_name="/forward_step")
    # the server keeps serving
    assert client.predict("astronaut", None, "linear", 10, 0, "cosine", False, api_name="/forward_step")[0]


def test_forward_t_out_of_range_through_the_api(client):
    with pytest.raises(Exception, match=r"greater than maximum value 999|t must be a whole number"):
        client.predict("astronaut", None, "linear", 5000, 0, "cosine", False, api_name="/forward_step")


def test_embedding_endpoint(client):
    _, curves, _ = client.predict(32, 200, "0, 5", api_name="/embedding_figures")
    assert len(json.loads(curves["plot"])["data"]) == 2
    with pytest.raises(Exception, match="between 0 and 31"):
        client.predict(32, 200, "40", api_name="/embedding_figures")


# ---- the real page ---------------------------------------------------------------------------------------------


def open_tab(page, name):
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(300)


def visible(page, selector):
    return page.locator(selector).filter(visible=True)


def image_sources(page):
    return [img.get_attribute("src") for img in visible(page, "img").all()]


def test_every_tab_in_chromium(app_url, page, artifacts, tmp_path):
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(app_url)
    page.get_by_text("See every part of a denoising diffusion model move").wait_for(timeout=30_000)
    assert page.title() == "DDPM Explorer"
    assert [tab.inner_text().strip() for tab in page.get_by_role("tab").all()] == TABS
    page.screenshot(path=str(artifacts / "tab_lesson.png"), full_page=True)  # the first tab
    page.get_by_role("tab", name="Schedules").click()

    # Schedules: ticking a schedule adds its curve to the alpha-bar plot
    visible(page, ".js-plotly-plot").first.wait_for(timeout=30_000)
    traces = "el => el.data.filter(t => t.mode === 'lines').length"
    assert visible(page, ".js-plotly-plot").first.evaluate(traces) == 2
    page.screenshot(path=str(artifacts / "tab_schedules.png"), full_page=True)
    page.get_by_label("sigmoid", exact=True).check()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.js-plotly-plot')].some(el => el.offsetParent && "
        "el.data.filter(t => t.mode === 'lines').length === 3)",
        timeout=30_000,
    )
    # with three schedules ticked, every legend still sits under its plot's title (the page is 1280 px wide)
    page.wait_for_timeout(500)  # Plotly lays the legends out after the data
    gaps = visible(page, ".js-plotly-plot").evaluate_all(
        "plots => plots.map(p => p.querySelector('.legend').getBoundingClientRect().top"
        " - p.querySelector('.gtitle').getBoundingClientRect().bottom)"
    )
    assert len(gaps) == 4 and min(gaps) >= 0, gaps
    page.screenshot(path=str(artifacts / "tab_schedules_three.png"), full_page=True)

    # Forward process: move t, then upload a picture; the images and the histogram change
    open_tab(page, "Forward process")
    visible(page, "img").first.wait_for(timeout=30_000)
    before = image_sources(page)
    histogram_before = visible(page, ".js-plotly-plot").first.evaluate("el => JSON.stringify(el.data[0].y)")
    slider = page.get_by_label("range slider for Timestep t")
    slider.focus()
    slider.press("End")
    page.wait_for_function(
        "before => [...document.querySelectorAll('img')].filter(i => i.offsetParent).map(i => i.src).join() !== before",
        arg=",".join(before),
        timeout=30_000,
    )
    histogram_after = visible(page, ".js-plotly-plot").first.evaluate("el => JSON.stringify(el.data[0].y)")
    assert histogram_after != histogram_before
    page.screenshot(path=str(artifacts / "tab_forward.png"), full_page=True)
    photo = tmp_path / "stripes.png"
    stripes = np.zeros((300, 300, 3), dtype=np.uint8)
    stripes[:, ::20] = 255
    Image.fromarray(stripes).save(photo)
    after_slider = ",".join(image_sources(page))
    page.locator("#picture-upload input[type=file]").set_input_files(str(photo))
    page.wait_for_function(
        "before => [...document.querySelectorAll('img')].filter(i => i.offsetParent).map(i => i.src).join() !== before",
        arg=after_slider,
        timeout=30_000,
    )
    assert page.get_by_label("my upload").is_checked()
    page.screenshot(path=str(artifacts / "tab_forward_upload.png"), full_page=True)

    # Time embedding and U-Net render their plots
    open_tab(page, "Time embedding")
    visible(page, ".js-plotly-plot").first.wait_for(timeout=30_000)
    assert visible(page, ".js-plotly-plot").count() == 3
    page.screenshot(path=str(artifacts / "tab_embedding.png"), full_page=True)
    open_tab(page, "U-Net")
    visible(page, ".js-plotly-plot").first.wait_for(timeout=30_000)
    page.get_by_text("input_conv").filter(visible=True).first.wait_for(timeout=30_000)
    page.screenshot(path=str(artifacts / "tab_unet.png"), full_page=True)

    # Schedules -> "Train with this schedule": the Train tab opens with that schedule and its parameters
    open_tab(page, "Schedules")
    page.get_by_label("linear + zero terminal SNR", exact=True).check()
    for name in ("linear", "cosine", "sigmoid"):
        page.get_by_label(name, exact=True).uncheck()
    t_box = page.get_by_label("number input for T (number of steps)", exact=True).filter(visible=True)
    t_box.fill("500")
    t_box.press("Enter")
    beta_end = visible(page, "input[aria-label='beta_end']").first
    beta_end.fill("0.03")
    beta_end.press("Enter")
    page.wait_for_timeout(500)
    page.locator("#schedules-train").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[role=tab]')].some(t => t.textContent.trim() === 'Train' && "
        "t.getAttribute('aria-selected') === 'true')",
        timeout=30_000,
    )
    page.wait_for_function("() => document.querySelector('#train-num-timesteps input').value === '500'", timeout=30_000)
    assert page.locator("#train-num-timesteps input").input_value() == "500"
    assert page.locator("#train-beta-end input").input_value() == "0.03"
    assert page.locator("#train-zero-terminal-snr input").is_checked()
    assert page.get_by_label("Noise schedule", exact=True).input_value() == "linear"
    assert page.get_by_label("x0", exact=True).is_checked()  # the default objective, which can sample it
    page.locator("#train-advanced").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "schedules_train_with_this_schedule.png"), full_page=True)


def wait_for_new_pictures(page, before: str) -> str:
    page.wait_for_function(
        "before => [...document.querySelectorAll('img')].filter(i => i.offsetParent).map(i => i.src).join() !== before",
        arg=before,
        timeout=30_000,
    )
    return ",".join(image_sources(page))


def test_out_of_range_values_typed_in_the_page_get_a_message_and_are_clamped(app_url, page, artifacts):
    """A t typed outside [0, 999] is refused by the server with its message on the page, then clamped by the slider
    (its box shows 999 and the pictures follow); a negative seed is refused with its message and changes nothing."""
    page.goto(app_url)
    open_tab(page, "Forward process")
    visible(page, "img").first.wait_for(timeout=30_000)
    before = ""
    while before != ",".join(image_sources(page)):  # wait until the tab's first pictures have settled
        before = ",".join(image_sources(page))
        page.wait_for_timeout(1500)
    slider = page.get_by_label("range slider for Timestep t")
    assert (slider.get_attribute("min"), slider.get_attribute("max")) == ("0", "999")
    t_box = page.get_by_label("number input for Timestep t", exact=True)
    t_box.fill("5000")
    t_box.press("Enter")
    page.get_by_text("Value 5000 is greater than maximum value 999.").first.wait_for(timeout=30_000)
    assert ",".join(image_sources(page)) == before, "the refused value must not change the pictures"
    t_box.press("Tab")  # leaving the box clamps it
    page.wait_for_function("box => box.value === '999'", arg=t_box.element_handle(), timeout=30_000)
    assert slider.input_value() == "999"
    clamped = wait_for_new_pictures(page, before)
    seed = page.get_by_label("Noise seed", exact=True)
    seed.fill("-5")
    seed.press("Enter")
    page.get_by_text("Value -5 is less than minimum value 0.").first.wait_for(timeout=30_000)
    page.wait_for_timeout(500)
    assert ",".join(image_sources(page)) == clamped
    page.screenshot(path=str(artifacts / "forward_out_of_range.png"))


def test_python_app_py_serves_on_the_port_from_the_environment():
    """The README's run command, as a user types it: `python app.py`, with Spaces' environment variables."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    from explorer.app import free_port

    root = Path(__file__).resolve().parent.parent
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    server = subprocess.Popen(
        [sys.executable, "app.py"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    assert response.status == 200 and "DDPM Explorer" in response.read().decode()
                    return
            except OSError:
                time.sleep(0.2)
        pytest.fail("python app.py did not answer within 120 s")
    finally:
        server.terminate()
        server.wait(timeout=30)
