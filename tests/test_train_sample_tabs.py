"""The Train and Sample tabs' callbacks, called as the page calls them (with a SessionRegistry, no server): a short
training run ends with a downloadable checkpoint and a model in that user's menu only; sampling, replay, GIF,
compare, upload; bad values refused with a message."""

import io
import json
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from core.checkpoint import EMA_FILE, MODEL_FILE, weight_file_role
from explorer.figures import MAX_LOG_TICKS, loss_figure
from explorer.models import DEFAULT_MODEL, PRETRAINED, pretrained
from explorer.sampling_run import SAMPLER_LABELS
from explorer.sessions import SessionRegistry
from explorer.tabs import compare as compare_page
from explorer.tabs import sample as sample_page
from explorer.tabs import train as train_page
from explorer.tabs.compare import CompareSection
from explorer.tabs.sample import EACH_CLASS_CHOICE, NO_CLASS_CHOICE, SampleTab
from explorer.tabs.train import DATASETS, DEFAULT_DATASET, PRESETS, TrainTab, dataset_defaults, training_config
from explorer.widgets import file_box

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FakeRequest:
    def __init__(self, session_hash):
        self.session_hash = session_hash


TINY = next(iter(PRESETS))


def train_args(steps=6, seed=0, **changes):
    args = {
        "dataset_label": DEFAULT_DATASET,
        "upload": None,
        "preset_label": TINY,
        "schedule": "cosine",
        "objective": "x0",
        "length_unit": "steps",
        "length": steps,
        "batch_size": 16,
        "lr": 2e-3,
        "ema_decay": 0.99,
        "seed": seed,
        "class_conditional": False,
    }
    args.update(changes)
    return args


def sample_args(model, sampler, steps, eta, seed, count, class_choice, guidance):
    """The Sample tab's main controls by name, in the page's order."""
    return dict(
        model=model,
        sampler=sampler,
        steps=steps,
        eta=eta,
        seed=seed,
        count=count,
        class_choice=class_choice,
        guidance=guidance,
    )


@pytest.fixture
def registry(tmp_path):
    return SessionRegistry(tmp_path, max_jobs=1, compute_threads=1)


def run_training(registry, user, **changes):
    outputs = list(TrainTab(registry).start(**train_args(**changes), request=FakeRequest(user)))
    return outputs


def test_training_ends_with_a_checkpoint_and_a_private_model(registry):
    outputs = run_training(registry, "alice")
    status, preview, loss_plot, _bucket_plot, lr_plot, download = outputs[-1]
    assert "Finished" in status and "step 6 of 6" in status and "Sample tab" in status
    assert preview is not None and loss_plot.data and lr_plot.data
    # the checkpoint box empties when the run starts (and so hides: test_the_checkpoint_box_is_hidden_...), gets
    # the file at the end, under a clean name (the session's counter names its folder, not the file)
    assert outputs[0][-1] is None and all(o[-1] == gr.update() for o in outputs[1:-1])
    assert Path(download).name == "ddpm-mnist5k-6steps.zip"
    with zipfile.ZipFile(download) as archive:
        names = archive.namelist()
    assert names[0] == "config.json" and sorted(weight_file_role(name) for name in names[1:]) == [EMA_FILE, MODEL_FILE]
    sample_tab = SampleTab(registry)
    alice, bob = FakeRequest("alice"), FakeRequest("bob")
    mine = [n for n in sample_tab.model_menu(None, alice).choices if n[0].startswith("my model")]
    assert len(mine) == 1
    name = mine[0][0]
    assert all(not n[0].startswith("my model") for n in sample_tab.model_menu(None, bob).choices)
    final = list(sample_tab.sample(**sample_args(name, "DDIM", 5, 0, 0, 4, None, 1.0), request=alice))[-1]
    assert "5 of 5 steps" in final[0]
    with pytest.raises(gr.Error, match="unknown model"):
        list(sample_tab.sample(**sample_args(name, "DDIM", 5, 0, 0, 4, None, 1.0), request=bob))
    again = run_training(registry, "alice", steps=2)[-1][-1]  # the same session's next run: still no "-N"
    assert Path(again).name == "ddpm-mnist5k-2steps.zip"
    # both runs stay in alice's run list for the Experiments tab (explorer/runs.py), none in bob's
    assert "Kept as **run 1** in the Experiments tab." in status
    assert registry.session("alice").runs.names() == ["run 1", "run 2"] and not registry.session("bob").runs.names()


def test_first_update_comes_at_once_and_the_second_job_is_refused(registry):
    run = TrainTab(registry).start(**train_args(steps=50), request=FakeRequest("alice"))
    assert "Loading" in next(run)[0]
    with pytest.raises(gr.Error, match="already have a training run"):
        list(
            SampleTab(registry).sample(
                **sample_args(DEFAULT_MODEL, "DDIM", 5, 0, 0, 4, None, 1.0), request=FakeRequest("alice")
            )
        )
    assert TrainTab(registry).stop(FakeRequest("alice")).startswith("Stopping")
    final = list(run)[-1]
    assert "Stopped" in final[0]
    assert TrainTab(registry).stop(FakeRequest("alice")).startswith("Nothing to stop")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"length": 0}, "training steps must be a whole number from 1"),
        ({"length_unit": "seconds", "length": 100000}, "training seconds must be a whole number from 1 to 1800"),
        ({"batch_size": 0}, "batch size must be a whole number from 1 to 512"),
        ({"lr": -1}, r"learning rate must be a number in \(0, 0.1\]"),
        ({"lr": 0}, r"learning rate must be a number in \(0, 0.1\]"),
        ({"ema_decay": 1.0}, r"EMA decay must be a number in \[0, 0.9999\]"),
        ({"seed": -5}, "seed must be a whole number"),
        ({"dataset_label": "imagenet"}, "unknown dataset"),
        ({"objective": "score"}, "unknown objective"),
        ({"schedule": "exp"}, "unknown schedule"),
        ({"dataset_label": "My pictures (upload a .zip below)"}, "Upload a .zip"),
        ({"num_timesteps": 5}, "T must be a whole number from 10 to 4000, got 5"),
        ({"num_timesteps": 100.5}, "T must be a whole number from 10 to 4000, got 100.5"),
        ({"beta_start": 0}, r"beta_start must be a number in \[1e-06, 0.5\]"),
        ({"schedule": "linear", "beta_start": 0.03, "beta_end": 0.02}, r"beta_start \(0.03\) must be smaller"),
        ({"cosine_s": 0.9}, r"cosine s must be a number in \[1e-05, 0.5\]"),
        ({"weighting": "snr"}, "unknown loss weighting 'snr'; choose one of none, min_snr"),
        ({"min_snr_gamma": 0}, r"min-SNR gamma must be a number in \[0.1, 100\]"),
        ({"p_uncond": 1.5}, r"label dropout must be a number in \[0, 1\]"),
        (
            {"objective": "eps", "zero_terminal_snr": True},
            r"eps prediction cannot be trained with zero terminal SNR: at t = T-1 alpha-bar is 0.*choose objective x0",
        ),
    ],
)
def test_bad_training_settings_are_refused(change, message):
    with pytest.raises(gr.Error, match=message):
        training_config(**train_args(**change))


def test_the_advanced_controls_reach_the_train_config():
    advanced = dict(num_timesteps=250, beta_start=2e-4, beta_end=0.03, cosine_s=0.02, zero_terminal_snr=True)
    loss = dict(weighting="min_snr", min_snr_gamma=2.0, p_uncond=0.2)
    config = training_config(**train_args(schedule="sigmoid", objective="v", **advanced, **loss))
    assert {k: getattr(config, k) for k in [*advanced, *loss]} == {**advanced, **loss}
    assert config.noise_schedule().params == {"name": "sigmoid", **advanced}
    defaults = training_config(**train_args())  # a call without them (an older script) gets TrainConfig's defaults
    assert defaults.noise_schedule().params == train_page.TrainConfig(schedule="cosine").noise_schedule().params
    assert (defaults.weighting, defaults.min_snr_gamma, defaults.p_uncond) == ("none", 5.0, 0.1)


def test_eps_with_zero_terminal_snr_is_refused_before_a_run_starts(registry):
    run = TrainTab(registry).start(**train_args(objective="eps", zero_terminal_snr=True), request=FakeRequest("a"))
    with pytest.raises(gr.Error, match="divides by zero"):
        next(run)
    assert TrainTab(registry).stop(FakeRequest("a")).startswith("Nothing to stop")


def test_2d_datasets_switch_to_their_recipe():
    objective, batch, lr, _upload = dataset_defaults("2D: two moons")
    assert (objective.value, batch.value, lr.value) == ("eps", 256, 3e-3)
    assert dataset_defaults(DEFAULT_DATASET)[0].value == "x0"
    assert dataset_defaults("My pictures (upload a .zip below)")[3].visible
    assert set(DATASETS.values()) >= {"mnist5k", "mnist", "fashion_mnist", "cifar10", "folder", "moons", "spiral"}


def test_sample_replay_gif_and_compare(registry, tmp_path):
    tab, user = SampleTab(registry), FakeRequest("carol")
    outputs = list(tab.sample(**sample_args(DEFAULT_MODEL, "DDIM", 10, 0, 0, 4, None, 1.0), request=user))
    progress, _x_t, _x0, _eps, slider, caption, visited, _paths = outputs[-1]
    assert "10 of 10 steps" in progress and slider.maximum == 9 and slider.value == 9
    assert len(visited.data[1].x) == 10 and "clean sample" in caption
    first = tab.show_step(0, request=user)
    assert "step 1 of 10" in first[3] and first[4].data[2].x[0] == 999  # the default spacing: trailing
    with pytest.raises(gr.Error, match="step must be a whole number from 0 to 9"):
        tab.show_step(10, request=user)
    gif = tab.export_gif(request=user)
    with Image.open(gif) as image:
        assert image.n_frames == 10
    with pytest.raises(gr.Error, match="Sample first"):
        SampleTab(registry).export_gif(request=FakeRequest("dave"))
    b = {"sampler_b": "DDPM", "steps_b": 20, "eta_b": 1.0}
    compared = list(
        CompareSection(tab).compare(**sample_args(DEFAULT_MODEL, "DDIM", 5, 0, 0, 4, None, 1.0), **b, request=user)
    )
    _, image_a, image_b, text = compared[-1]
    assert image_a.shape == image_b.shape and "Same x_T (seed 0)" in text and "DDPM, 20 steps" in text


def labelled(demo: gr.Blocks, label: str):
    """The one component of `demo` with this label."""
    (found,) = [block for block in demo.blocks.values() if getattr(block, "label", None) == label]
    return found


def test_compare_starts_b_as_ddpm_at_a_s_cost_and_ddim_eta_1_draws_ddpm_s_digits(registry):
    """Compare's B starts as DDPM with A's (the model's recorded) steps and spacing; the explanation's first
    experiment holds: DDIM with eta 1 and DDPM on the same leading timesteps, from the same x_T and the same step
    noise, draw the same pictures."""
    with gr.Blocks() as demo:
        compare_page.build_section(sample_page.build_tab(registry))
    names = ("Sampler", "Timestep spacing", "Steps", "eta (DDIM only)")
    a = [labelled(demo, label).value for label in names]
    b = [labelled(demo, f"B: {label}").value for label in names]
    defaults = pretrained(DEFAULT_MODEL).sampling_defaults
    assert a == [SAMPLER_LABELS[defaults.sampler], defaults.spacing, defaults.steps, defaults.eta]
    assert b == ["DDPM", *a[1:]]
    intro = compare_page.COMPARE_INTRO
    assert "What to look for" in intro and "DDIM with eta 1 *is* DDPM" in intro and "*leading* spacing" in intro
    tab, user = SampleTab(registry), FakeRequest("ivan")
    a_args = sample_args(DEFAULT_MODEL, "DDIM", 5, 1.0, 0, 4, None, 1.0)  # 5 steps, not 50: the same point, faster
    *_, (_, image_a, image_b, caption) = CompareSection(tab).compare(
        **a_args, spacing="leading", sampler_b="DDPM", steps_b=5, eta_b=0.0, spacing_b="leading", request=user
    )
    assert "DDPM, 5 steps" in caption and "5 network calls" in caption
    assert np.abs(image_a.astype(int) - image_b.astype(int)).max() <= 1  # the same digits, to rounding


def test_the_loss_axis_writes_out_at_most_six_labels():
    """The log-scale loss axis: on a range of about one decade Plotly's own labels are every digit, bare ("1 9 8 7
    6 5 4 3 2"); ours are at most MAX_LOG_TICKS, each written out in full, inside the data's range."""
    steps = np.arange(1, 1201)
    for losses in (0.9 * np.exp(-steps / 150) + 0.1, np.linspace(0.62, 0.15, 1200), np.geomspace(2.0, 0.01, 1200)):
        axis = loss_figure(steps, losses, losses).layout.yaxis
        assert axis.type == "log" and 2 <= len(axis.tickvals) <= MAX_LOG_TICKS
        assert [float(text) for text in axis.ticktext] == list(axis.tickvals)
        assert all(losses.min() <= value <= losses.max() for value in axis.tickvals)
    assert list(loss_figure([1], [0.92], [0.92]).layout.yaxis.ticktext) == ["0.92"]  # one step: one label


@pytest.mark.parametrize(
    "page, label",
    [
        (train_page, "Checkpoint (zip of safetensors + config.json)"),
        (sample_page, "GIF: x_t and predicted x0 at every saved step"),
    ],
)
def test_download_boxes_are_hidden_until_there_is_a_file(registry, page, label):
    """No empty checkpoint or GIF box taking room: hidden on the page, and shown or hidden again whenever its value
    changes (a training run empties its box when it starts and fills it when it ends with a model)."""
    with gr.Blocks() as demo:
        page.build_tab(registry)
    box = labelled(demo, label)
    assert not box.visible
    (on_change,) = [fn for fn in demo.fns.values() if fn.fn is file_box and fn.inputs == [box]]
    assert on_change.outputs == [box]
    assert file_box("ddpm-mnist5k-6steps.zip").visible and not file_box(None).visible


def test_model_description_and_class_controls(registry):
    tab = SampleTab(registry)
    about, _, _, _, classes, guidance, _, _, _ = tab.describe_model(PRETRAINED["mnist_cond"])
    assert "10 classes" in about and classes.choices[0][0] == EACH_CLASS_CHOICE and classes.interactive
    assert guidance.interactive
    about, _, _, _, classes, _, count, paths, _ = tab.describe_model(PRETRAINED["toy_moons"])
    assert classes.choices[0][0] == NO_CLASS_CHOICE and count.maximum == 2000 and paths.visible
    outputs = list(tab.sample(**sample_args(PRETRAINED["toy_moons"], "DDIM", 5, 0, 0, 100, None, 1.0)))
    assert outputs[-1][-1].data  # the paths figure


def test_the_sampler_controls_start_from_what_the_checkpoint_records(registry):
    """A model's sampling_defaults (config.json) set the sampler, spacing, steps and eta when it is chosen, for a
    shipped model and for one trained here (for eps, whose record differs from the x0 digits')."""
    tab = SampleTab(registry)
    run_training(registry, "gina", objective="eps", steps=2)
    request = FakeRequest("gina")
    mine = next(name for name, _ in tab.model_menu(None, request).choices if name.startswith("my model"))
    for name in (PRETRAINED["mnist_uncond"], mine):
        _, sampler, steps, eta, *_, spacing = tab.describe_model(name, request)
        defaults = tab.resolve(name, tab.user_session(request)).sampling_defaults
        expected = (SAMPLER_LABELS[defaults.sampler], defaults.spacing, defaults.steps, defaults.eta)
        assert (sampler.value, spacing.value, steps.value, eta.value) == expected


def test_upload_a_checkpoint_zip_and_refuse_other_files(registry, tmp_path):
    download = run_training(registry, "erin")[-1][-1]
    tab, frank = SampleTab(registry), FakeRequest("frank")
    menu, note = tab.upload_model(download, request=frank)
    assert menu.value.startswith("uploaded:") and "Added" in note
    final = list(tab.sample(**sample_args(menu.value, "DDIM", 3, 0, 0, 2, None, 1.0), request=frank))[-1]
    assert "3 of 3 steps" in final[0]
    junk = tmp_path / "junk.zip"
    with zipfile.ZipFile(junk, "w") as archive:
        archive.writestr("model.pt", b"\x80\x04")
    with pytest.raises(gr.Error, match=r"refused.*pickle"):
        tab.upload_model(str(junk), request=frank)


def test_training_on_an_uploaded_zip_of_pictures(registry, tmp_path):
    archive_path = tmp_path / "pictures.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(archive_path, "w") as archive:
        for i in range(8):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(buffer, format="PNG")
            archive.writestr(f"photo_{i}.png", buffer.getvalue())
    outputs = run_training(
        registry, "gina", steps=2, dataset_label="My pictures (upload a .zip below)", upload=str(archive_path)
    )
    status, preview = outputs[-1][:2]
    assert "Finished" in status and preview.shape[-1] == 3  # colour pictures, so a colour preview
    too_few = tmp_path / "few.zip"
    with zipfile.ZipFile(too_few, "w") as archive:
        archive.writestr("one.png", b"not really a picture")
    with pytest.raises(gr.Error, match="at least 8"):
        run_training(registry, "gina", steps=2, dataset_label="My pictures (upload a .zip below)", upload=str(too_few))


def test_score_these_samples_reads_digits_and_2d_points_against_their_floors(registry):
    """ "Score these samples": the last finished run's samples scored on the compute worker, a plain reading and each
    number beside its real-vs-real floor; digits also get the histogram of the digits read in them."""
    tab, user = SampleTab(registry), FakeRequest("judy")
    with pytest.raises(gr.Error, match="Sample first, and let the run finish"):
        list(tab.score(user))
    list(tab.sample(**sample_args(DEFAULT_MODEL, "DDIM", 20, 1.0, 0, 32, None, 1.0), request=user))
    text, histogram = list(tab.score(user))[-1]
    assert text.startswith("**") and "(32 samples of mnist5k)" in text
    for row in ("| FD |", "| precision |", "| recall |", "| confident |"):
        assert row in text
    (bars,) = json.loads(histogram.value["plot"])["data"]  # what the page draws
    assert histogram.visible and bars["x"] == [str(d) for d in range(10)] and sum(bars["y"]) == 32

    list(tab.sample(**sample_args(PRETRAINED["toy_moons"], "DDIM", 20, 1.0, 0, 300, None, 1.0), request=user))
    text, histogram = list(tab.score(user))[-1]
    assert "(300 samples of moons)" in text and "| nearest-neighbour distance |" in text and "| sliced W2 |" in text
    assert not histogram.visible

    user_session = registry.session("judy")
    user_session.trajectory.dataset = "fashion_mnist"  # a model of clothes: the metric's networks know only digits
    with pytest.raises(gr.Error, match="Only the digit models and the 2D toy sets can be scored"):
        list(tab.score(user))
    user_session.trajectory.final = None  # a run stopped before its end
    with pytest.raises(gr.Error, match="let the run finish"):
        list(tab.score(user))
