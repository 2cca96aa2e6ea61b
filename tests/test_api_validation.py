"""Every endpoint validates its parameters, whether they come from the UI or a script.

Through the launched server, each named API endpoint is called with every kind of bad value a script can send: a
number below or above its range, zero where zero is invalid, a fraction where a whole number is needed, a choice that
is not offered, and (by raw HTTP, since gradio_client cannot send them) NaN, Infinity and a string where a number
goes. Each call must end in an error event whose message says what is wrong, never in a result computed from the bad
value. A table test proves the table covers every endpoint and every parameter the API lists, so a new one cannot be
forgotten; the endpoints without parameters answer sensibly when nothing is running; and the server keeps serving
after all of it.
"""

from __future__ import annotations

import json
import math
import re

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

# Should a bad value ever slip through, these keep the run it starts tiny: one training step, one image, one step.
TRAIN = {"upload": None, "length_unit": "steps", "length": 1}
SAMPLE = {"steps": 1, "count": 1}
POINTS = {"model": "2D moons (pretrained)", "steps": 1}
COMPARE = {"steps": 1, "count": 1, "steps_b": 1}
FORWARD = {"upload": None}
SDEDIT = {"upload": None, "sketch": None}
MAX_SEED = 2**31 - 1
MY_PICTURES = "My pictures (upload a .zip below)"
DRAWING_LABEL = "2D: my drawing (click points on a canvas)"
EMPTY_DRAWING = "**0 points** from 0 clicks or typed lines. Training needs at least 8 points."


def below(value: object, minimum: object) -> str:
    """Gradio's message for a number under a slider's or number box's minimum."""
    return re.escape(f"Value {value} is less than minimum value {minimum}.")


def above(value: object, maximum: object) -> str:
    return re.escape(f"Value {value} is greater than maximum value {maximum}.")


def not_a_choice(value: object) -> str:
    """Gradio's message for a value that is not among a radio's, dropdown's or checkbox group's choices."""
    return rf"Value: '?{re.escape(str(value))}'? (\(type: .*\) )?is not in the list of choices"


def says(text: str) -> str:
    return re.escape(text)


def case(endpoint: str, message: str, base: dict | None = None, **bad: object):
    """One row: call `endpoint` with `base` and the `bad` values; the error must match `message` (a regex)."""
    label = ",".join(f"{key}={value!r}" for key, value in bad.items())
    return pytest.param(endpoint, base or {}, bad, message, id=f"{endpoint[1:]}:{label}")


CASES = [
    # Schedules
    case("/schedule_figures", below(-1, 10), num_timesteps=-1),
    case("/schedule_figures", below(0, 10), num_timesteps=0),
    case("/schedule_figures", above(1000000, 4000), num_timesteps=10**6),
    case("/schedule_figures", says("T must be a whole number from 10 to 4000, got 100.5"), num_timesteps=100.5),
    case("/schedule_figures", below(-0.1, "1e-06"), beta_start=-0.1),
    case("/schedule_figures", below(0, "1e-06"), beta_start=0),
    case("/schedule_figures", above(1.0, 0.5), beta_start=1.0),
    case("/schedule_figures", below(-1, "1e-06"), beta_end=-1),
    case("/schedule_figures", below(0, "1e-06"), beta_end=0),
    case("/schedule_figures", above(5, 0.999), beta_end=5),
    case("/schedule_figures", below(-0.1, "1e-05"), cosine_s=-0.1),
    case("/schedule_figures", below(0, "1e-05"), cosine_s=0),
    case("/schedule_figures", above(1.0, 0.5), cosine_s=1.0),
    case("/schedule_figures", not_a_choice("nope"), choices=["nope"]),
    case("/schedule_figures", says("pick at least one schedule to plot"), choices=[]),
    case("/export_schedule", not_a_choice("nope"), choice="nope"),
    case("/export_schedule", below(0, 10), num_timesteps=0),
    case("/export_schedule", says("T must be a whole number from 10 to 4000, got 10.5"), num_timesteps=10.5),
    case("/export_schedule", above(0.6, 0.5), beta_start=0.6),
    case("/export_schedule", below(-1, "1e-06"), beta_end=-1),
    case("/export_schedule", below(0, "1e-05"), cosine_s=0),
    # Forward process
    case("/forward_step", below(-1, 0), FORWARD, t=-1),
    case("/forward_step", above(1000, 999), FORWARD, t=1000),
    case("/forward_step", says("t must be a whole number from 0 to 999, got 2.5"), FORWARD, t=2.5),
    case("/forward_step", below(-1, 0), FORWARD, seed=-1),
    case("/forward_step", above(2**31, MAX_SEED), FORWARD, seed=2**31),
    case("/forward_step", r"seed must be a whole number", FORWARD, seed=2.5),
    case("/forward_step", not_a_choice("nope"), FORWARD, choice="nope"),
    case("/forward_step", not_a_choice("nope"), FORWARD, schedule_choice="nope"),
    case("/forward_step", not_a_choice("nope"), FORWARD, compare_choice="nope"),
    case("/forward_step", says("Upload a picture first"), FORWARD, choice="my upload"),
    case("/forward_strip", below(-1, 0), FORWARD, seed=-1),
    case("/forward_strip", above(10**12, MAX_SEED), FORWARD, seed=10**12),
    case("/forward_strip", not_a_choice("nope"), FORWARD, choice="nope"),
    case("/forward_strip", not_a_choice("nope"), FORWARD, schedule_choice="nope"),
    case("/forward_strip", says("Upload a picture first"), FORWARD, choice="my upload"),
    # Forward process: SDEdit
    case("/sdedit", says("unknown model 'nope'"), SDEDIT, model="nope"),
    case("/sdedit", says("draws 2D points, not pictures"), SDEDIT, model="2D moons (pretrained)"),
    case("/sdedit", not_a_choice("nope"), SDEDIT, sampler="nope"),
    case("/sdedit", not_a_choice("nope"), SDEDIT, source="nope"),
    case("/sdedit", says("Draw a digit on the sketchpad first"), SDEDIT, source="my drawing", sketch=None),
    case("/sdedit", not_a_choice("nope"), SDEDIT, picture="nope"),
    case("/sdedit", says("Upload a picture first"), SDEDIT, picture="my upload"),
    case("/sdedit", not_a_choice("nope"), SDEDIT, schedule="nope"),
    case("/sdedit", below(-1, 0), SDEDIT, t=-1),
    case("/sdedit", above(1000, 999), SDEDIT, t=1000),
    case("/sdedit", says("t must be a whole number from 0 to 999, got 2.5"), SDEDIT, t=2.5),
    case("/sdedit", below(-1, 0), SDEDIT, seed=-1),
    case("/sdedit", above(2**31, MAX_SEED), SDEDIT, seed=2**31),
    case("/sdedit", r"seed must be a whole number", SDEDIT, seed=2.5),
    # Time embedding
    case("/embedding_figures", below(0, 4), dim=0),
    case("/embedding_figures", below(-2, 4), dim=-2),
    case("/embedding_figures", below(3, 4), dim=3),
    case("/embedding_figures", above(1000000, 512), dim=10**6),
    case("/embedding_figures", says("the embedding size must be a whole number from 4 to 512, got 64.5"), dim=64.5),
    case("/embedding_figures", below(0, 10), num_timesteps=0),
    case("/embedding_figures", below(5, 10), num_timesteps=5),
    case("/embedding_figures", above(1000000, 4000), num_timesteps=10**6),
    case("/embedding_figures", says("T must be a whole number from 10 to 4000, got 100.5"), num_timesteps=100.5),
    case("/embedding_figures", says("dimensions must be whole numbers separated by commas"), dims_text="abc"),
    case("/embedding_figures", says("dimensions must be whole numbers separated by commas"), dims_text="1.5"),
    case("/embedding_figures", says("list at least one dimension to plot"), dims_text=""),
    case("/embedding_figures", says("dimensions must be between 0 and 63 for an embedding of size 64"), dims_text="64"),
    case("/embedding_figures", says("dimensions must be between 0 and 63 for an embedding of size 64"), dims_text="-1"),
    case("/embedding_figures", says("plot at most 8 dimensions at once"), dims_text="1,2,3,4,5,6,7,8,9"),
    # U-Net
    case("/unet_preset", not_a_choice("nope"), preset="nope"),
    case("/unet_summary", not_a_choice("nope"), preset="nope"),
    case("/unet_summary", below(0, 8), base_channels=0),
    case("/unet_summary", below(-8, 8), base_channels=-8),
    case("/unet_summary", above(1000000, 256), base_channels=10**6),
    case("/unet_summary", says("base channels must be a whole number from 8 to 256, got 8.5"), base_channels=8.5),
    case("/unet_summary", says("channel multipliers must be whole numbers"), channel_mults_text="abc"),
    case("/unet_summary", says("channel multipliers must be whole numbers"), channel_mults_text="1,-2"),
    case("/unet_summary", says("channel multipliers must be whole numbers"), channel_mults_text="1.5,2"),
    case("/unet_summary", says("channel multipliers: write one whole number per level"), channel_mults_text=""),
    case("/unet_summary", says("channel multipliers: write one whole number per level"), channel_mults_text="1," * 30),
    case("/unet_summary", says("channel multipliers: give 1 to 5 levels, got 6"), channel_mults_text="1,2,3,4,5,6"),
    case("/unet_summary", says("each channel multiplier must be from 1 to 8"), channel_mults_text="0,1"),
    case("/unet_summary", says("each channel multiplier must be from 1 to 8"), channel_mults_text="1,9"),
    case("/unet_summary", below(0, 1), num_res_blocks=0),
    case("/unet_summary", above(5, 4), num_res_blocks=5),
    case("/unet_summary", says("residual blocks per level must be a whole number from 1 to 4"), num_res_blocks=1.5),
    case("/unet_summary", not_a_choice(9), attention_levels=[9]),
    case(
        "/unet_summary",
        says("attention level (with 3 levels) must be a whole number from 0 to 2"),
        attention_levels=[3],
    ),
    case("/unet_summary", not_a_choice(7), time_emb_dim=7),
    case("/unet_summary", not_a_choice(3), patch_size=3),
    case("/unet_summary", says("input size 36x36 is not divisible by 8 (2x2 patches"), patch_size=2, image_size=36),
    case("/unet_summary", below(0, 16), image_size=0),
    case("/unet_summary", below(15, 16), image_size=15),
    case("/unet_summary", above(1000, 128), image_size=1000),
    case("/unet_summary", says("input size must be a whole number from 16 to 128, got 32.5"), image_size=32.5),
    case("/unet_summary", says("input size 30x30 is not divisible by 4"), image_size=30),
    case("/unet_summary", not_a_choice(2), in_channels=2),
    case("/unet_summary", not_a_choice("noise"), objective="noise"),
    case(
        "/unet_summary",
        r"this network would have [\d.]+ M parameters; this explorer builds at most 50 M",
        base_channels=256,
        channel_mults_text="8,8,8,8",
        num_res_blocks=4,
        image_size=128,
    ),
    # Train: only values that must be refused, so no run ever starts
    case("/train", below(-1, 1), TRAIN, length_unit="seconds", length=-1),
    case("/train", below(0, 1), TRAIN, length_unit="seconds", length=0),
    case(
        "/train",
        says("training seconds must be a whole number from 1 to 1800, got 1000000000"),
        TRAIN,
        length_unit="seconds",
        length=10**9,
    ),
    case("/train", says("training steps must be a whole number from 1 to 100000, got 1000000000"), TRAIN, length=10**9),
    case("/train", below(0, 1), TRAIN, batch_size=0),
    case("/train", below(-1, 1), TRAIN, batch_size=-1),
    case("/train", above(1000000, 512), TRAIN, batch_size=10**6),
    case("/train", says("learning rate must be a number in (0, 0.1], got 0"), TRAIN, lr=0),
    case("/train", below(-1, 0), TRAIN, lr=-1),
    case("/train", above(1, 0.1), TRAIN, lr=1),
    case("/train", below(-0.5, 0), TRAIN, ema_decay=-0.5),
    case("/train", above(1.0, 0.9999), TRAIN, ema_decay=1.0),
    case("/train", below(-1, 0), TRAIN, seed=-1),
    case("/train", above(2**31, MAX_SEED), TRAIN, seed=2**31),
    case("/train", not_a_choice("nope"), TRAIN, dataset_label="nope"),
    case("/train", not_a_choice("nope"), TRAIN, preset_label="nope"),
    case("/train", not_a_choice("nope"), TRAIN, schedule="nope"),
    case("/train", not_a_choice("nope"), TRAIN, objective="nope"),
    case("/train", not_a_choice("nope"), TRAIN, length_unit="nope"),
    case("/train", says("Upload a .zip of at least 8 pictures first"), TRAIN, dataset_label=MY_PICTURES),
    # Train's Advanced group (appended parameters, each with a default)
    case("/train", below(5, 10), TRAIN, num_timesteps=5),
    case("/train", above(5000, 4000), TRAIN, num_timesteps=5000),
    case("/train", says("T must be a whole number from 10 to 4000, got 100.5"), TRAIN, num_timesteps=100.5),
    case("/train", below(0, "1e-06"), TRAIN, beta_start=0),
    case("/train", above(0.6, 0.5), TRAIN, beta_start=0.6),
    case(
        "/train",
        says("beta_start (0.03) must be smaller than beta_end (0.02)"),
        TRAIN,
        schedule="linear",
        beta_start=0.03,
        beta_end=0.02,
    ),
    case("/train", above(5, 0.999), TRAIN, beta_end=5),
    case("/train", below(0, "1e-05"), TRAIN, cosine_s=0),
    case("/train", not_a_choice("nope"), TRAIN, weighting="nope"),
    case("/train", below(0, 0.1), TRAIN, min_snr_gamma=0),
    case("/train", above(1000, "100.0"), TRAIN, min_snr_gamma=1000),
    case("/train", above(1.5, 1), TRAIN, p_uncond=1.5),
    case("/train", below(-0.1, 0), TRAIN, p_uncond=-0.1),
    case("/train", not_a_choice("cubic"), TRAIN, timestep_sampling="cubic"),
    case(
        "/train",
        says("eps prediction cannot be trained with zero terminal SNR: at t = T-1 alpha-bar is 0"),
        TRAIN,
        objective="eps",
        zero_terminal_snr=True,
    ),
    # Sample
    case("/describe_model", says("unknown model 'nope'; choose one of: Digits (pretrained)"), name="nope"),
    case("/sample", says("unknown model 'nope'; choose one of: Digits (pretrained)"), SAMPLE, model="nope"),
    case("/sample", not_a_choice("nope"), SAMPLE, sampler="nope"),
    case("/sample", below(0, 1), SAMPLE, steps=0),
    case("/sample", below(-1, 1), SAMPLE, steps=-1),
    case("/sample", above(1000000, 1000), SAMPLE, steps=10**6),
    case("/sample", says("steps must be a whole number from 1 to 1000, got 2.5"), SAMPLE, steps=2.5),
    case("/sample", below(-0.5, 0), SAMPLE, eta=-0.5),
    case("/sample", above(1.5, 1), SAMPLE, eta=1.5),
    case("/sample", below(-1, 0), SAMPLE, seed=-1),
    case("/sample", above(2**31, MAX_SEED), SAMPLE, seed=2**31),
    case("/sample", r"seed must be a whole number", SAMPLE, seed=2.5),
    case("/sample", below(0, 1), SAMPLE, count=0),
    case("/sample", says("number of images must be a whole number from 1 to 64, got 65"), SAMPLE, count=65),
    case("/sample", above(1000000, 2000), SAMPLE, count=10**6),
    case("/sample", above(2001, 2000), POINTS, count=2001),
    case("/sample", says("number of images must be a whole number from 1 to 64, got 2.5"), SAMPLE, count=2.5),
    case("/sample", not_a_choice(7), SAMPLE, class_choice="7"),
    case("/sample", below(-1, 0), SAMPLE, guidance=-1),
    case("/sample", above(11, "10.0"), SAMPLE, guidance=11),
    case("/sample", not_a_choice("nope"), SAMPLE, spacing="nope"),
    case("/show_step", below(-1, 0), index=-1),
    case("/show_step", r"Value 1000000 is greater than maximum value \d+\.", index=10**6),
    case("/upload_checkpoint", says("Choose a checkpoint .zip first"), path=None),
    case("/load_hub_model", says("'not an id' is not a Hub model id: type owner/name"), repo_id="not an id"),
    case("/compare", says("unknown model 'nope'; choose one of: Digits (pretrained)"), COMPARE, model="nope"),
    case("/compare", not_a_choice("nope"), COMPARE, sampler="nope"),
    case("/compare", says("steps must be a whole number from 1 to 1000, got 2.5"), COMPARE, steps=2.5),
    case("/compare", below(-1, 0), COMPARE, eta=-1),
    case("/compare", below(-1, 0), COMPARE, seed=-1),
    case("/compare", below(0, 1), COMPARE, count=0),
    case("/compare", not_a_choice(7), COMPARE, class_choice="7"),
    case("/compare", above(11, "10.0"), COMPARE, guidance=11),
    case("/compare", not_a_choice("nope"), COMPARE, sampler_b="nope"),
    case("/compare", below(0, 1), COMPARE, steps_b=0),
    case("/compare", above(1000000, 1000), COMPARE, steps_b=10**6),
    case(
        "/compare", says("second sampler: steps must be a whole number from 1 to 1000, got 2.5"), COMPARE, steps_b=2.5
    ),
    case("/compare", below(-1, 0), COMPARE, eta_b=-1),
    case("/compare", above(2, 1), COMPARE, eta_b=2),
    case("/compare", not_a_choice("nope"), COMPARE, spacing="nope"),
    case("/compare", not_a_choice("cosine"), COMPARE, spacing_b="cosine"),
    case("/guidance_sweep", says("unknown model 'nope'; choose one of: Digits (pretrained)"), SAMPLE, model="nope"),
    case("/guidance_sweep", not_a_choice("nope"), SAMPLE, sampler="nope"),
    case("/guidance_sweep", says("steps must be a whole number from 1 to 1000, got 2.5"), SAMPLE, steps=2.5),
    case("/guidance_sweep", below(-1, 0), SAMPLE, eta=-1),
    case("/guidance_sweep", below(-1, 0), SAMPLE, seed=-1),
    case("/guidance_sweep", below(0, 1), SAMPLE, count=0),
    case("/guidance_sweep", not_a_choice(7), SAMPLE, class_choice="7"),
    case("/guidance_sweep", above(11, "10.0"), SAMPLE, guidance=11),
    case("/guidance_sweep", not_a_choice("nope"), SAMPLE, spacing="nope"),
    case("/guidance_sweep", says("Guidance needs a class-conditional model"), SAMPLE),  # valid values, no classes
    case("/show_guidance_step", below(-1, 0), index=-1),
    case("/show_field_step", below(-1, 0), index=-1),
    case("/show_guidance_step", says("unknown model 'nope'; choose one of: Digits (pretrained)"), model="nope"),
    case("/sampler_quality", says("unknown model 'nope'; choose one of: Digits (pretrained)"), model="nope"),
    case("/measure_quality", says("unknown model 'nope'; choose one of: Digits (pretrained)"), model="nope"),
    case("/measure_quality", says("measuring is for your own models"), model="Digits (pretrained)"),
    # the Train tab's drawing (2D: my drawing)
    case("/drawing_add_points", says("line 1: 'nope' is not two numbers like '0.5, -0.2'"), text="nope"),
    case("/drawing_add_points", says("line 2: (2, 0) is outside the canvas"), text="0, 0\n2, 0"),
    case("/drawing_add_points", says("no points given"), text=""),
    case("/drawing_add_points", below(-1, 0), text="0, 0", spread=-1),
    case("/drawing_add_points", above(1, 0.2), text="0, 0", spread=1),
    case("/train", says("draw at least 8 points first (there are 0)"), TRAIN, dataset_label=DRAWING_LABEL),
    # Experiments (a fresh client has no runs, so any run name is not a choice)
    case("/list_runs", not_a_choice("run 1"), chosen=["run 1"]),
    case("/compare_runs", not_a_choice("nope"), chosen=["nope"]),
    case("/export_experiment", not_a_choice("run 1"), chosen=["run 1"]),
    case("/export_experiment", says("Tick at least one run to export."), chosen=[]),
    case("/run_experiment", not_a_choice("nope"), title="nope"),
]
# Step (the Train tab's one-update-at-a-time button) reads the Train tab's controls through the same
# training_config: the same bad values, the same messages
CASES += [
    pytest.param("/train_step", *row.values[1:], id=f"train_step:{row.id.split(':', 1)[1]}")
    for row in CASES
    if row.values[0] == "/train"
]

# Endpoints without parameters, what they answer when nothing is running, and whether that answer is an error.
NO_PARAMETERS = {
    "/stop_training": ("Nothing to stop: no training run is going.", False),
    "/stop_sampling": ("Nothing to stop: no sampling run is going.", False),
    "/stop_measuring": ("Nothing to stop: nothing is being measured.", False),
    "/export_gif": ("Sample first: there is no run to turn into a GIF yet.", True),
    "/score_samples": ("Sample first, and let the run finish: only finished samples can be scored.", True),
    "/drawing_undo": (EMPTY_DRAWING, False),
    "/drawing_clear": (EMPTY_DRAWING, False),
}
# Parameters the table need not cover: a checkbox has no bad value, and uploads are tests/test_upload_limits.py's.
EXEMPT_TYPES = ("bool", "filepath")


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def endpoints(client) -> dict:
    return client.view_api(return_format="dict", print_info=False)["named_endpoints"]


@pytest.mark.parametrize(("endpoint", "base", "bad", "message"), CASES)
def test_a_bad_value_is_refused_with_a_message_that_says_what_is_wrong(client, endpoint, base, bad, message):
    with pytest.raises(AppError, match=message):
        client.predict(api_name=endpoint, **{**base, **bad})


def test_the_table_covers_every_endpoint_that_takes_parameters(endpoints):
    tested = {row.values[0] for row in CASES}
    with_parameters = {name for name, info in endpoints.items() if info["parameters"]}
    assert sorted(with_parameters - tested) == [], "add rows to CASES for these endpoints"
    assert sorted(tested - set(endpoints)) == [], "CASES names endpoints the API no longer has"
    assert sorted(set(endpoints) - with_parameters) == sorted(NO_PARAMETERS)


def test_the_table_gives_every_parameter_a_bad_value(endpoints):
    """Checkboxes and file uploads aside, every parameter of every endpoint is given a bad value in some row."""
    untested = []
    for name, info in endpoints.items():
        bad_keys = {key for row in CASES if row.values[0] == name for key in row.values[2]}
        untested += [
            f"{name} {parameter['parameter_name']}"
            for parameter in info["parameters"]
            if parameter["python_type"]["type"] not in EXEMPT_TYPES and parameter["parameter_name"] not in bad_keys
        ]
    assert untested == []


def test_train_keeps_its_parameters_in_order_and_appends_the_advanced_ones_with_defaults(endpoints):
    """Scripts written before the Advanced group still call /train (positionally or by name): gradio_client fills
    an omitted parameter with its default."""
    parameters = endpoints["/train"]["parameters"]
    names = [p["parameter_name"] for p in parameters]
    assert names[:12] == [
        *("dataset_label", "upload", "preset_label", "schedule", "objective", "length_unit", "length"),
        *("batch_size", "lr", "ema_decay", "seed", "class_conditional"),
    ]
    advanced = ["num_timesteps", "beta_start", "beta_end", "cosine_s", "zero_terminal_snr", "weighting"]
    assert names[12:] == [*advanced, "min_snr_gamma", "p_uncond", "timestep_sampling"]
    defaults = {p["parameter_name"]: p["parameter_default"] for p in parameters[12:] if p["parameter_has_default"]}
    assert defaults == {
        "num_timesteps": 1000,
        "beta_start": 1e-4,
        "beta_end": 0.02,
        "cosine_s": 0.008,
        "zero_terminal_snr": False,
        "weighting": "none",
        "min_snr_gamma": 5.0,
        "p_uncond": 0.1,
        "timestep_sampling": "uniform",
    }


@pytest.mark.parametrize("endpoint", sorted(NO_PARAMETERS))
def test_an_endpoint_without_parameters_answers_when_nothing_is_running(app_url, endpoints, endpoint):
    assert endpoints[endpoint]["parameters"] == []
    message, is_error = NO_PARAMETERS[endpoint]
    fresh = Client(app_url, verbose=False)  # a session of its own: nothing running, no run to export
    if is_error:
        with pytest.raises(AppError, match=re.escape(message)):
            fresh.predict(api_name=endpoint)
    else:
        assert message in fresh.predict(api_name=endpoint)


def test_show_step_refuses_a_fraction_and_a_step_past_the_last_run(app_url):
    fresh = Client(app_url, verbose=False)
    with pytest.raises(AppError, match="Sample first: there is no run to replay yet"):
        fresh.predict(index=0, api_name="/show_step")
    fresh.predict(steps=2, count=1, api_name="/sample")  # two saved steps: 0 and 1
    assert len(fresh.predict(index=1, api_name="/show_step")) == 5
    with pytest.raises(AppError, match=says("step must be a whole number from 0 to 1, got 0.5")):
        fresh.predict(index=0.5, api_name="/show_step")
    with pytest.raises(AppError, match=above(2, 1)):
        fresh.predict(index=2, api_name="/show_step")


def test_a_script_may_ask_a_2d_model_for_its_full_range_of_points_without_opening_the_page(app_url):
    fresh = Client(app_url, verbose=False)  # never calls /describe_model, as the page does when the menu changes
    outputs = fresh.predict(model="2D moons (pretrained)", steps=2, count=2000, api_name="/sample")
    assert "2 of 2 steps" in outputs[0]


# ---- values gradio_client cannot send ---------------------------------------------------------------------------


def call_raw(app_url: str, endpoints: dict, endpoint: str, values: dict) -> tuple[str, object]:
    """POST the endpoint's inputs in order (its defaults, replaced by `values`) as raw JSON, then read the event
    stream; returns the last event's name and data. json.dumps writes float("nan") as NaN and float("inf") as
    Infinity, as a script's JSON library might: not JSON, but what Python's json (and so the server) reads."""
    data = [values.get(p["parameter_name"], p["parameter_default"]) for p in endpoints[endpoint]["parameters"]]
    posted = httpx.post(
        f"{app_url}gradio_api/call{endpoint}",
        content=json.dumps({"data": data}),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    posted.raise_for_status()
    stream = httpx.get(f"{app_url}gradio_api/call{endpoint}/{posted.json()['event_id']}", timeout=120).text
    events = re.findall(r"^event: (\w+)\ndata: (.*)$", stream, flags=re.MULTILINE)
    assert events, stream
    name, payload = events[-1]
    return name, json.loads(payload)


NAN, INF = math.nan, math.inf
NOT_A_FLOAT = r"(?s)Expected a `float.*but the value passed to the event handler was: 'abc'"
RAW_CASES = [
    case("/sample", says("steps must be a finite number, got nan"), SAMPLE, steps=NAN),
    case("/sample", rf"eta must be a finite number|{above('inf', 1)}", SAMPLE, eta=INF),
    case("/sample", rf"eta must be a finite number|{below('-inf', 0)}", SAMPLE, eta=-INF),
    case("/sample", says("number of images must be a finite number, got nan"), SAMPLE, count=NAN),
    case("/sample", says("guidance must be a finite number, got nan"), SAMPLE, guidance=NAN),
    case("/sample", r"seed must be a (finite|whole) number", SAMPLE, seed=NAN),
    case("/sample", NOT_A_FLOAT, SAMPLE, steps="abc"),
    case("/compare", says("second sampler: steps must be a finite number, got nan"), COMPARE, steps_b=NAN),
    case("/compare", says("second sampler: eta must be a finite number, got nan"), COMPARE, eta_b=NAN),
    case("/train", says("learning rate must be a number in (0, 0.1], got nan"), TRAIN, lr=NAN),
    case("/train", rf"learning rate must be a number|{above('inf', 0.1)}", TRAIN, lr=INF),
    case("/train", says("EMA decay must be a number in [0, 0.9999], got nan"), TRAIN, ema_decay=NAN),
    case("/train", r"training steps must be a (finite|whole) number", TRAIN, length=NAN),
    case("/train", r"batch size must be a (finite|whole) number", TRAIN, batch_size=NAN),
    case("/train", rf"seed must be a (finite|whole) number|{above('inf', MAX_SEED)}", TRAIN, seed=INF),
    case("/train", NOT_A_FLOAT, TRAIN, lr="abc"),
    case("/train", says("T must be a whole number from 10 to 4000, got nan"), TRAIN, num_timesteps=NAN),
    case("/train", says("min-SNR gamma must be a number in [0.1, 100], got nan"), TRAIN, min_snr_gamma=NAN),
    case("/forward_step", says("t must be a whole number from 0 to 999, got nan"), FORWARD, t=NAN),
    case("/forward_step", rf"t must be a whole number|{above('inf', 999)}", FORWARD, t=INF),
    case("/forward_step", r"the seed must be a (finite|whole) number", FORWARD, seed=NAN),
    case("/forward_step", NOT_A_FLOAT, FORWARD, t="abc"),
    case("/schedule_figures", says("beta_end must be in (0, 1), got nan"), beta_end=NAN),
    case("/schedule_figures", says("beta_start must be in (0, 1), got nan"), beta_start=NAN),
    case("/schedule_figures", says("cosine_s must be in (0, 1)"), choices=["cosine"], cosine_s=NAN),
    case("/schedule_figures", says("T must be a whole number from 10 to 4000, got nan"), num_timesteps=NAN),
    case("/export_schedule", says("beta_end must be in (0, 1), got nan"), beta_end=NAN),
    case("/embedding_figures", says("the embedding size must be a whole number from 4 to 512, got nan"), dim=NAN),
    case("/unet_summary", says("input size must be a whole number from 16 to 128, got nan"), image_size=NAN),
]


@pytest.mark.parametrize(("endpoint", "base", "bad", "message"), RAW_CASES)
def test_nan_infinity_and_text_sent_by_hand_are_refused_with_a_clear_message(
    app_url, endpoints, endpoint, base, bad, message
):
    event, data = call_raw(app_url, endpoints, endpoint, {**base, **bad})
    assert event == "error", data
    assert re.search(message, data["error"]), data["error"]


def test_the_server_keeps_serving_after_bad_calls(app_url, client, endpoints):
    for row in RAW_CASES[:4]:
        endpoint, base, bad, _ = row.values
        assert call_raw(app_url, endpoints, endpoint, {**base, **bad})[0] == "error"
    with pytest.raises(AppError):
        client.predict(num_timesteps=-1, api_name="/schedule_figures")
    event, outputs = call_raw(app_url, endpoints, "/schedule_figures", {})
    assert event == "complete" and [output["type"] for output in outputs[:4]] == ["plotly"] * 4
    *figures, health = client.predict(api_name="/schedule_figures")
    assert len(figures) == 4 and all(json.loads(figure["plot"])["data"] for figure in figures)
    assert [row[0] for row in health["data"]] == ["linear", "cosine"]
