"""The Train and Sample tabs end to end: through gradio_client against a launched server (train, download the
checkpoint, upload it again, sample from it; two clients training at once get separate models), and on the real
page in headless Chromium (training updates live and stops; a sample is scrubbed and exported as a GIF), with
screenshots of both tabs."""

import json
import re
import tempfile
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from safetensors.torch import load_file

from core.checkpoint import EMA_FILE, checkpoint_file
from explorer.figures import MAX_LOG_TICKS
from explorer.models import DEFAULT_MODEL, pretrained
from explorer.tabs.train import DEFAULT_DATASET, PRESETS

TINY = next(iter(PRESETS))


def default_run() -> tuple[str, str]:
    """What the progress line says when the default sample has finished ("50 of 50 steps"), and what the caption
    of its first call starts with ("step 1 of 50"; for Heun, "call 1 of 9")."""
    defaults = pretrained(DEFAULT_MODEL).sampling_defaults
    steps, calls = defaults.steps, defaults.network_calls
    return f"{steps} of {steps} steps", f"step 1 of {steps}" if calls == steps else f"call 1 of {calls}"


def train_args(steps, seed):
    return (DEFAULT_DATASET, None, TINY, "cosine", "x0", "steps", steps, 16, 2e-3, 0.99, seed, False)


def weights(zip_path, tmp_path, name):
    folder = tmp_path / name
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(folder)
    return load_file(str(checkpoint_file(folder, EMA_FILE))), json.loads((folder / "config.json").read_text())


def test_train_download_upload_and_sample_through_the_api(app_url, tmp_path):
    client = Client(app_url, verbose=False)
    status, _preview, loss_plot, _, _, download = client.predict(*train_args(12, 0), api_name="/train")
    assert "Finished" in status and "step 12 of 12" in status
    assert json.loads(loss_plot["plot"])["data"][0]["y"]
    assert Path(download).name == "ddpm-mnist5k-12steps.zip"  # no session counter in the file's name
    _, config = weights(download, tmp_path, "trained")
    assert config["step"] == 12 and config["dataset"]["name"] == "mnist5k"

    other = Client(app_url, verbose=False)  # a fresh user uploads the file and samples from it
    menu, note = other.predict(handle_file(download), api_name="/upload_checkpoint")
    name = menu["value"]  # the menu comes back as an update: new choices, the upload chosen
    assert name.startswith("uploaded:") and "Added" in note and name in [c[0] for c in menu["choices"]]
    outputs = other.predict(name, "DDIM", 6, 0.0, 1, 4, None, 1.0, api_name="/sample")
    assert "6 of 6 steps" in outputs[0]
    caption = other.predict(2, api_name="/show_step")[3]
    assert "step 3 of 6" in caption
    gif = other.predict(api_name="/export_gif")
    assert gif.endswith(".gif")
    with pytest.raises(Exception, match="less than minimum value 1"):  # Gradio's slider bounds
        other.predict(name, "DDIM", 0, 0.0, 1, 4, None, 1.0, api_name="/sample")
    with pytest.raises(Exception, match="steps must be a whole number from 1 to 1000"):  # ours, inside them
        other.predict(name, "DDIM", 2.5, 0.0, 1, 4, None, 1.0, api_name="/sample")
    with pytest.raises(Exception, match="refused"):
        bad = tmp_path / "bad.zip"
        with zipfile.ZipFile(bad, "w") as archive:
            archive.writestr("../evil/config.json", "{}")
        other.predict(handle_file(str(bad)), api_name="/upload_checkpoint")


def test_two_clients_training_at_once_get_separate_models(app_url, tmp_path):
    alice, bob, carol = (Client(app_url, verbose=False) for _ in range(3))
    jobs = [alice.submit(*train_args(20, 1), api_name="/train"), bob.submit(*train_args(20, 2), api_name="/train")]
    (status_a, *_, zip_a), (status_b, *_, zip_b) = (job.result(timeout=300) for job in jobs)
    assert "Finished" in status_a and "Finished" in status_b
    (ema_a, _), (ema_b, _) = weights(zip_a, tmp_path, "a"), weights(zip_b, tmp_path, "b")
    assert ema_a.keys() == ema_b.keys() and any(not (ema_a[k] == ema_b[k]).all() for k in ema_a)
    name = "my model: mnist5k, tiny, 20 steps"
    for client in (alice, bob):
        assert "20 training steps" in client.predict(name, api_name="/describe_model")[0]
    with pytest.raises(Exception, match="unknown model"):
        carol.predict(name, api_name="/describe_model")


def test_default_sample_through_the_api(app_url):
    client = Client(app_url, verbose=False)
    outputs = client.predict(DEFAULT_MODEL, "DDIM", 50, 0.0, 0, 16, None, 1.0, api_name="/sample")
    assert "50 of 50 steps" in outputs[0]
    defaults = pretrained(DEFAULT_MODEL).sampling_defaults
    assert f"{defaults.spacing} spacing" in outputs[0]  # a call without spacing gets the default model's


# ---- the real page ---------------------------------------------------------------------------------------------


# plotly 6 sends numpy arrays as {"dtype": "f8", "bdata": base64}: count the points either way
POINTS_JS = "a => (a.length !== undefined ? a.length : atob(a.bdata).length / 8)"
# for each picture block with a picture: pixels from its label's right end to its leftmost icon button
LABEL_CLEARANCE_JS = """blocks => blocks.filter(b => b.querySelector('img')).map(b => {
    const label = b.querySelector('[data-testid=block-label]').getBoundingClientRect();
    const lefts = [...b.querySelectorAll('.icon-button')].map(x => x.getBoundingClientRect())
        .filter(r => r.width && r.top < label.bottom).map(r => r.left);
    return Math.min(...lefts) - label.right;
})"""


def image_src(page, selector):
    return page.locator(f"{selector} img").first.get_attribute("src")


def wait_for_new_image(page, selector, before, timeout=30_000):
    page.wait_for_function(
        "([sel, before]) => { const img = document.querySelector(sel + ' img'); return img && img.src !== before; }",
        arg=[selector, before or ""],
        timeout=timeout,
    )


def test_train_and_sample_in_chromium(app_url, page, artifacts):
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(app_url)
    page.get_by_text("See every part of a denoising diffusion model move").wait_for(timeout=30_000)

    # Train: the loss plot and the preview update while it runs; Stop stops it
    page.get_by_role("tab", name="Train").click()
    menu = page.get_by_label("Dataset", exact=True)
    assert menu.evaluate("e => e.scrollWidth <= e.clientWidth")  # the menu's text fits before its arrow
    assert not page.locator("#train-download").is_visible()  # no empty checkpoint box
    page.locator("#train-start").click()
    page.wait_for_function(
        f"() => {{ const p = document.querySelector('#train-loss .js-plotly-plot');"
        f" return p && p.data && ({POINTS_JS})(p.data[0].x) >= 5; }}",
        timeout=30_000,
    )
    first_loss_points = page.locator("#train-loss .js-plotly-plot").evaluate(f"el => ({POINTS_JS})(el.data[0].x)")
    first_preview = image_src(page, "#train-preview")
    wait_for_new_image(page, "#train-preview", first_preview)  # a new preview from the same noise
    page.wait_for_function(
        f"n => ({POINTS_JS})(document.querySelector('#train-loss .js-plotly-plot').data[0].x) > n",
        arg=first_loss_points,
        timeout=30_000,
    )
    page.screenshot(path=str(artifacts / "tab_train.png"), full_page=True)
    assert not page.locator("#train-download").is_visible()  # still none while it trains
    ticks = page.locator("#train-loss .js-plotly-plot").evaluate("el => el.layout.yaxis.tickvals || []")
    assert len(ticks) <= MAX_LOG_TICKS
    page.locator("#train-stop").click()
    page.locator("#train-status").get_by_text("Stopped").wait_for(timeout=30_000)
    status = page.locator("#train-status").inner_text()
    assert "is now in the Sample tab" in status
    link = page.locator("#train-download a[download]")  # the checkpoint box shows up with its file
    link.wait_for(timeout=30_000)
    assert re.fullmatch(r"ddpm-mnist5k-\d+steps\.zip", link.get_attribute("download"))  # no session counter
    page.screenshot(path=str(artifacts / "tab_train_stopped.png"), full_page=True)

    # Sample: run the default, scrub the replay slider, export the GIF
    page.get_by_role("tab", name="Sample").click()
    count_max = "label => document.querySelector(`input[aria-label='range slider for ${label}']`)?.max"
    page.wait_for_function(f"() => ({count_max})('Number of images') === '64'", timeout=30_000)  # images: 64
    page.locator("#sample-run").click()
    page.locator("#sample-progress").get_by_text("Drag the slider").wait_for(timeout=60_000)
    finished, first_call = default_run()
    assert finished in page.locator("#sample-progress").inner_text()
    last_xt = image_src(page, "#sample-xt")
    slider = page.get_by_label("range slider for Replay the run, step by step")
    slider.focus()
    slider.press("Home")
    page.locator("#sample-step-caption").get_by_text(first_call).wait_for(timeout=30_000)
    wait_for_new_image(page, "#sample-xt", last_xt)
    # each picture's label ends before its icon buttons begin (they share the top strip), none cut
    clearance = page.locator(".pixelated").filter(visible=True).evaluate_all(LABEL_CLEARANCE_JS)
    assert len(clearance) == 3 and min(clearance) >= 0, clearance
    page.screenshot(path=str(artifacts / "tab_sample.png"), full_page=True)
    page.locator("#sample-gif").click()
    page.locator("a[href*='.gif']").first.wait_for(timeout=60_000)
    # score the run: a plain reading, the table against real digits, the histogram of the digits read
    page.locator("#sample-score").click()
    page.locator("#sample-score-text").get_by_text("samples of mnist5k").wait_for(timeout=30_000)
    assert "real data (floor)" in page.locator("#sample-score-text").inner_text()
    page.get_by_text("Which digits the samples are").wait_for(timeout=10_000)
    page.locator("#sample-score").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "tab_sample_score.png"), full_page=True)
    # the model trained above is in this user's menu
    page.locator("#sample-model input").click()
    page.get_by_role("option", name="my model: mnist5k").first.wait_for(timeout=10_000)
    page.keyboard.press("Escape")
    page.screenshot(path=str(artifacts / "tab_sample_gif.png"), full_page=True)

    # a 2D model: its samples' paths through the plane
    page.locator("#sample-model input").click()
    page.locator("#sample-model input").fill("")
    page.keyboard.type("moons")
    page.get_by_role("option", name="2D moons (pretrained)").click()
    page.get_by_text("moons, tiny network").wait_for(timeout=10_000)
    page.wait_for_function(f"() => ({count_max})('Number of points') === '2000'", timeout=30_000)  # points: 2000
    page.locator("#sample-run").click()
    page.locator("#sample-progress").get_by_text("Drag the slider").wait_for(timeout=60_000)
    page.wait_for_function(
        "() => { const p = document.querySelector('#sample-paths .js-plotly-plot');"
        " return p && p.data && p.data.some(t => t.name === 'paths'); }",
        timeout=30_000,
    )
    page.locator("#sample-paths").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "tab_sample_2d.png"), full_page=True)


def test_the_server_serves_only_its_own_outputs(app_url):
    """Gradio serves its cache (copies of what callbacks return), never the repository, the checkpoints, the system
    or a user's session folder, however the path is written."""
    import urllib.error
    import urllib.request

    from core.data import ASSETS

    client = Client(app_url, verbose=False)
    client.predict(DEFAULT_MODEL, "DDIM", 4, 1.0, 0, 2, None, 1.0, api_name="/sample")
    served = client.predict(api_name="/export_gif")  # the client downloaded it from the server: allowed
    assert served.endswith(".gif")
    sessions = Path(tempfile.gettempdir()) / "ddpm-explorer-sessions"
    private = sorted(sessions.glob("user-*/trajectory-*.gif"))
    assert private, "the export should have written the GIF into a session folder first"
    refused = [
        "/etc/passwd",
        "../app.py",
        "app.py",
        ".env",
        "assets/checkpoints/mnist_uncond/config.json",
        str(ASSETS / "checkpoints" / "mnist_uncond" / "ema.safetensors"),
        str(private[-1]),
    ]
    for path in refused:
        for route in ("gradio_api/file=", "file="):
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(app_url + route + path, timeout=10)
            assert error.value.code in (403, 404), (route, path, error.value.code)


def test_two_users_with_the_same_seed_get_the_same_images_at_once(app_url):
    import numpy as np
    from PIL import Image

    clients = [Client(app_url, verbose=False) for _ in range(3)]
    seeds = (3, 3, 4)
    jobs = [
        client.submit(DEFAULT_MODEL, "DDPM", 30, 1.0, seed, 4, None, 1.0, api_name="/sample")
        for client, seed in zip(clients, seeds, strict=True)
    ]
    finals = [np.asarray(Image.open(job.result(timeout=120)[2])) for job in jobs]  # predicted x0 at the end
    assert np.array_equal(finals[0], finals[1])  # same seed, two sessions, sampled at the same time
    assert not np.array_equal(finals[0], finals[2])
