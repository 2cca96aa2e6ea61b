"""Every sampler with every timestep spacing in the Sample tab: the names the page and the API take, the network
calls each makes (Heun: two per step, one on the last), captions with fractional timesteps, a clear refusal of what
a model cannot run (an unknown sampler or spacing, steps past T, Karras sigmas or Euler under zero terminal SNR, an
eps model asked to start at alpha-bar 0), old positional /sample calls, Compare with different call counts, and the
quality-vs-network-calls chart (read from a shipped model's sweep, measured on request for a user's own model):
through the callbacks, through gradio_client against the launched app, and on the page in headless Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from core.checkpoint import save_checkpoint
from core.checkpoint_archive import pack_checkpoint
from core.noise_levels import SPACINGS
from core.sampler_sweep import (
    QUALITY_FILE,
    REFERENCE,
    SWEEP_SAMPLERS,
    SamplerChoice,
    SweepPoint,
    read_quality,
    write_quality,
)
from core.samplers import SAMPLERS
from core.schedules import make_schedule
from core.unet import UNet, UNetConfig
from explorer.models import DEFAULT_MODEL, PRETRAINED, ModelEntry, load_entry, pretrained
from explorer.sampler_quality import measure_plan, quality_curves, quality_figure, quality_note, twins
from explorer.sampling_figures import alpha_bar_at
from explorer.sampling_run import SAMPLER_LABELS, check_request, check_settings, sample_request, sampler_name
from explorer.sessions import SessionRegistry
from explorer.tabs.quality import NOT_MEASURED_OWN, NOT_MEASURED_SHIPPED, QualitySection
from explorer.tabs.sample import SampleTab
from explorer.tabs.sampler_controls import SAMPLER_CHOICES, calls_line, sampler_changed
from explorer.trajectory import format_t

T_TINY = 100  # the tiny checkpoints' T
CAPTION = r".*: network at t = \d+(\.\d)?, now (x at t = \d+(\.\d)?|the clean sample)"  # one decimal at most


class FakeRequest:
    def __init__(self, session_hash):
        self.session_hash = session_hash


@pytest.fixture(scope="module")
def digits():
    return pretrained(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Tiny untrained U-Nets under zero terminal SNR (T = 100), one predicting v and one eps, as checkpoint folders."""
    folders = {}
    for objective in ("v", "eps"):
        torch.manual_seed(0)
        model = UNet(UNetConfig(in_channels=1, base_channels=8, channel_mults=(1, 2), time_emb_dim=16))
        schedule = make_schedule("cosine", T_TINY, zero_terminal_snr=True)
        config = {"schedule": schedule.params, "objective": objective, "step": 1}
        folder = tmp_path_factory.mktemp(f"zero_snr_{objective}") / "run"
        folders[objective] = save_checkpoint(folder, model, config, ema_model=model)
    return folders


# ---- names, calls, captions ---------------------------------------------------------------------------------------


def test_the_page_names_every_core_sampler_and_takes_core_s_names_too():
    assert set(SAMPLER_LABELS) == set(SAMPLERS) and SAMPLER_CHOICES[:2] == ("DDPM", "DDIM")
    for name, label in SAMPLER_LABELS.items():
        assert sampler_name(label) == sampler_name(label.upper()) == sampler_name(name) == name
    with pytest.raises(ValueError, match="sampler must be one of DDPM, DDIM, Euler, Euler ancestral, Heun, DPM"):
        sampler_name("GAN")


def test_the_calls_line_counts_heun_twice_per_step_but_once_on_the_last():
    assert calls_line("DDIM", 50) == "**50 network calls** per sample."
    assert calls_line("DPM++ 2M", 1) == "**1 network call** per sample."
    assert calls_line("Heun", 5) == "**9 network calls** per sample (Heun: two per step, one on the last)."
    assert calls_line("nope", 5) == calls_line("Heun", None) == ""
    assert sampler_changed("DDIM", 10)[1].interactive and not sampler_changed("Euler", 10)[1].interactive


def test_fractional_timesteps_are_written_with_one_decimal_and_sit_on_the_alpha_bar_curve(digits):
    assert [format_t(t) for t in (412, 412.0, 412.34, 0.05)] == ["412", "412", "412.3", "0.1"]
    schedule = digits.checkpoint.schedule
    table = schedule.alphas_cumprod.numpy()
    assert np.allclose(alpha_bar_at(schedule, [0, 412, 999]), table[[0, 412, 999]], rtol=0, atol=0)
    between = alpha_bar_at(schedule, [412.5])[0]
    assert table[413] < between < table[412]


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("label", SAMPLER_CHOICES)
def test_every_sampler_runs_with_every_spacing_and_records_each_network_call(digits, label, spacing):
    request = check_request(digits, label, 3, 0.5, 0, 2, spacing=spacing)
    trajectory = list(sample_request(digits, request))[-1][1]
    calls = SAMPLERS[sampler_name(label)].network_calls(3)
    assert trajectory.complete and trajectory.num_calls == len(trajectory.timesteps) == calls == len(trajectory)
    assert trajectory.title.startswith(f"{label}, 3 steps") and trajectory.title.endswith(f"{spacing} spacing")
    for i in range(len(trajectory)):
        assert re.fullmatch(CAPTION, trajectory.caption(i))
    assert trajectory.caption(len(trajectory) - 1).endswith("now the clean sample")
    assert torch.isfinite(trajectory.final).all()


@pytest.mark.usefixtures("one_torch_thread")
def test_heun_captions_name_each_call_its_step_and_its_role(digits):
    request = check_request(digits, "Heun", 3, 0.0, 0, 2, spacing="karras")
    trajectory = list(sample_request(digits, request))[-1][1]
    captions = [trajectory.caption(i) for i in range(len(trajectory))]
    assert [c.split(":")[0] for c in captions] == [
        "call 1 of 5 (Heun step 1 of 3, predictor)",
        "call 2 of 5 (Heun step 1 of 3, corrector)",
        "call 3 of 5 (Heun step 2 of 3, predictor)",
        "call 4 of 5 (Heun step 2 of 3, corrector)",
        "call 5 of 5 (Heun step 3 of 3)",
    ]
    assert any(re.search(r"network at t = \d+\.\d,", c) for c in captions)  # Karras sigmas: fractional t
    assert trajectory.title == "Heun, 3 steps (5 network calls), karras spacing"


# ---- refusals -----------------------------------------------------------------------------------------------------


def test_what_a_model_cannot_run_is_refused_with_the_reason(digits, tiny):
    v, eps = load_entry("v", tiny["v"]), load_entry("eps", tiny["eps"])
    refusals = [
        (digits, ("DDIM", 10, 0, "cosine"), "spacing must be one of linspace, leading, trailing, karras, got 'cosine'"),
        (digits, ("Euler", 1001, 0, "karras"), "steps must be a whole number from 1 to 1000, got 1001"),
        (v, ("DDIM", T_TINY + 1, 0, "leading"), f"steps must be a whole number from 1 to {T_TINY}"),
        (v, ("DDIM", 5, 0, "karras"), "Karras sigmas need a finite sigma_max"),
        (v, ("Euler", 5, 0, "trailing"), "euler integrates x / sqrt(alpha-bar), which is infinite at t = 99"),
        (v, ("Heun", 5, 0, "linspace"), "heun integrates x / sqrt(alpha-bar)"),
        (eps, ("DDIM", 5, 0, "trailing"), "DDIM with the trailing spacing starts at t = 99, where alpha-bar is 0"),
    ]
    for entry, args, message in refusals:
        with pytest.raises(ValueError, match=re.escape(message)):
            check_settings(entry, *args)
    assert check_settings(v, "Euler", 5, 0, "leading").calls == 5  # leading starts below T-1
    assert check_settings(v, "DPM++ 2M", 5, 0, "trailing").spacing == "trailing"  # DPM-Solver++ starts at alpha-bar 0
    assert check_settings(eps, "DDIM", 5, 0, "leading").sampler == "ddim"
    assert check_settings(v, "DDIM", 5, 0).spacing == v.sampling_defaults.spacing  # None: the model's own


# ---- the quality chart --------------------------------------------------------------------------------------------


def fake_sweep(path: Path, same_as: dict[int, int] | None = None) -> Path:
    """A sweep record like benchmarks/sampler_quality.py writes for a digit model: each sampler on Karras sigmas at
    5-50 calls and on trailing timesteps at 10, DDPM over every timestep, two seeds; made-up but plausible FDs (the
    sampler at place i of SWEEP_SAMPLERS gets the numbers of the one at same_as[i])."""
    points = []
    for seed in (0, 1):
        for rank, choice in enumerate(SWEEP_SAMPLERS):
            plan = [(choice, c) for c in (5, 10, 20, 50)] + [(SamplerChoice(choice.name, choice.eta, "trailing"), 10)]
            for sampler, calls in plan + ([(REFERENCE, 1000)] if rank == 0 else []):
                like = (same_as or {}).get(rank, rank)
                fd = 3.0 if sampler is REFERENCE else (1 + like / 10) * 200 / calls + seed
                metrics = {"report": {"kind": "digits", "fd": fd, "n": 200}}
                label, name, eta, spacing = sampler.label, sampler.name, sampler.eta, sampler.spacing
                points.append(SweepPoint(label, name, eta, spacing, calls, calls, seed, 0.1, metrics))
    return write_quality(points, path / QUALITY_FILE)


def test_the_chart_draws_a_line_per_sampler_and_ddpm_as_a_dashed_reference(tmp_path):
    quality = quality_curves(read_quality(fake_sweep(tmp_path)), "report")
    assert (quality.metric, quality.n, quality.seeds) == ("FD to real digits", 200, 2)
    lines = [c for c in quality.curves if len(c.calls) > 1]
    assert [c.name for c in lines[:2]] == ["DDIM eta 0, karras", "DDIM eta 1, karras"]
    assert len(lines) == len(SWEEP_SAMPLERS) and lines[0].calls == (5, 10, 20, 50)
    assert lines[0].values[0] == pytest.approx(200 / 5 + 0.5)  # the mean over the two seeds
    figure = quality_figure(quality)
    shown = [t for t in figure.data if t.showlegend is not False]
    assert [t.name for t in shown][-1] == "DDPM, every timestep (1000 calls)" and shown[-1].line.dash == "dash"
    assert "DPM++ 2M, karras" in [t.name for t in shown]
    assert figure.layout.xaxis.type == figure.layout.yaxis.type == "log"


def test_a_line_hidden_by_another_is_dotted_and_the_note_says_why(tmp_path):
    """Euler takes DDIM's steps (eta 0) and Euler ancestral DDIM's with eta 1: their lines coincide, so the later is
    dotted and the note names the pairs; the diamonds are named too."""
    ddim, ddim_1, euler, ancestral = (0, 1, 2, 3)  # places in SWEEP_SAMPLERS
    assert [(SWEEP_SAMPLERS[i].name, SWEEP_SAMPLERS[i].eta) for i in (ddim, ddim_1, euler, ancestral)] == [
        ("ddim", 0.0), ("ddim", 1.0), ("euler", 0.0), ("euler_ancestral", 0.0),
    ]  # fmt: skip
    quality = quality_curves(read_quality(fake_sweep(tmp_path, {euler: ddim, ancestral: ddim_1})), "report")
    assert twins(quality) == {"Euler, karras": "DDIM eta 0, karras", "Euler ancestral, karras": "DDIM eta 1, karras"}
    assert quality_note(quality) == (
        "A dotted line lies on another: the two take the same steps (DDIM eta 0 = Euler; DDIM eta 1 = Euler "
        "ancestral). Diamonds: the samplers with the trailing spacing (hover for their names)."
    )
    dashes = {trace.name: trace.line.dash for trace in quality_figure(quality).data}
    assert dashes["Euler, karras"] == "dot" and dashes["DDIM eta 0, karras"] == "solid"


def test_a_shipped_model_shows_its_precomputed_chart_or_says_it_is_not_measured_yet(digits, tmp_path, monkeypatch):
    section = QualitySection(SampleTab(SessionRegistry(tmp_path / "sessions")))
    monkeypatch.setattr(digits, "quality_path", tmp_path / "missing.json")
    plot, note, measure, stop = section.show(DEFAULT_MODEL)
    assert not plot.visible and note == NOT_MEASURED_SHIPPED and not measure.visible and not stop.visible
    monkeypatch.setattr(digits, "quality_path", fake_sweep(tmp_path))
    plot, note, measure, _ = section.show(DEFAULT_MODEL)
    assert plot.visible and "Precomputed" in note and "200 samples per point" in note and not measure.visible
    (tmp_path / QUALITY_FILE).write_text("{}")
    plot, note, *_ = section.show(DEFAULT_MODEL)
    assert not plot.visible and note.startswith("The precomputed numbers could not be read")


@pytest.mark.usefixtures("one_torch_thread")
def test_a_user_s_own_model_is_measured_on_request_point_by_point_and_stops(tmp_path):
    registry = SessionRegistry(tmp_path / "sessions", max_jobs=1, compute_threads=1)
    tab, user = SampleTab(registry), FakeRequest("olga")
    session = tab.user_session(user)
    mine = ModelEntry("my moons", pretrained(PRETRAINED["toy_moons"]).checkpoint)  # not shipped: no sweep file
    name = registry.add_model(session, mine.name, mine)
    section = QualitySection(tab)
    plot, note, measure, stop = section.show(name, user)
    assert not plot.visible and note == NOT_MEASURED_OWN and measure.visible and stop.visible
    plan, refused = measure_plan(mine)
    assert refused == [] and plan[-1] == (REFERENCE, 1000) and len(plan) == 3 * len(SWEEP_SAMPLERS) + 1
    outputs = list(section.measure(name, user))
    assert len(outputs) == len(plan) + 1 and outputs[-1][1].startswith(f"Measured {len(plan)} of {len(plan)} points")
    assert "sliced W2" in outputs[-2][0].value["plot"]  # the chart, drawn again after each point
    plot, note, *_ = section.show(name, user)
    assert plot.visible and note.startswith("Measured in this session")
    stream = section.measure(name, user)
    next(stream), next(stream)
    assert "Stopping" in section.stop(user)
    assert list(stream)[-1][1].startswith(f"Stopped after 2 of {len(plan)} points")
    assert len(mine.measured) == 2


def test_zero_terminal_snr_and_data_without_a_metric_are_handled(tmp_path, tiny):
    v = load_entry("v", tiny["v"])
    plan, refused = measure_plan(v)
    assert {choice.spacing for choice, _ in plan[:-1]} == {"trailing"} and plan[-1] == (REFERENCE, T_TINY)
    assert [reason.split(":")[0] for reason in refused] == ["Euler", "Euler ancestral", "Heun"]
    registry = SessionRegistry(tmp_path / "sessions")
    tab, user = SampleTab(registry), FakeRequest("pia")
    name = registry.add_model(tab.user_session(user), "v", v)
    plot, note, measure, _ = QualitySection(tab).show(name, user)
    assert not plot.visible and not measure.visible
    assert note == (
        "No chart for this model: only the digits and the 2D toy sets have a quality metric. It was trained on data "
        "of its own."
    )


# ---- through the API ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_old_positional_sample_calls_still_work_and_the_new_parameters_come_last(client, digits):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    main = ["model", "sampler", "steps", "eta", "seed", "count", "class_choice", "guidance"]
    sample = endpoints["/sample"]["parameters"]
    assert [p["parameter_name"] for p in sample] == [*main, "spacing"]
    assert sample[-1]["parameter_has_default"] and sample[-1]["parameter_default"] == digits.sampling_defaults.spacing
    compare = [p["parameter_name"] for p in endpoints["/compare"]["parameters"]]
    assert compare == [*main, "sampler_b", "steps_b", "eta_b", "spacing", "spacing_b"]
    assert "3 of 3 steps" in client.predict(DEFAULT_MODEL, "DDPM", 3, 1.0, 0, 2, None, 1.0, api_name="/sample")[0]


def test_a_new_sampler_and_spacing_through_the_api_and_compare_with_different_call_counts(client):
    heun = {"sampler": "Heun", "spacing": "karras", "steps": 3, "count": 2}
    progress = client.predict(model=DEFAULT_MODEL, **heun, api_name="/sample")[0]
    assert "Heun, 3 steps (5 network calls), karras spacing: 3 of 3 steps in" in progress
    caption = client.predict(1, api_name="/show_step")[3]
    assert caption.startswith("call 2 of 5 (Heun step 1 of 3, corrector): network at t = ")
    _, _, _, caption = client.predict(
        model=DEFAULT_MODEL,
        sampler="DPM++ 2M",
        steps=4,
        spacing="karras",
        count=2,
        sampler_b="Euler ancestral",
        steps_b=2,
        spacing_b="trailing",
        api_name="/compare",
    )
    assert "**A: DPM++ 2M, 4 steps, karras spacing**: 4 network calls" in caption
    assert "**B: Euler ancestral, 2 steps, trailing spacing**: 2 network calls" in caption


def test_a_model_with_zero_terminal_snr_is_refused_what_it_cannot_run(app_url, tiny, tmp_path):
    user = Client(app_url, verbose=False)
    zipped = pack_checkpoint(tiny["v"], tmp_path / "zero_snr.zip")
    name = user.predict(handle_file(str(zipped)), api_name="/upload_checkpoint")[0]["value"]
    base = {"model": name, "steps": 2, "count": 1, "api_name": "/sample"}
    with pytest.raises(AppError, match="Karras sigmas need a finite sigma_max"):
        user.predict(**base, sampler="DDIM", spacing="karras")
    with pytest.raises(AppError, match=re.escape("euler integrates x / sqrt(alpha-bar)")):
        user.predict(**base, sampler="Euler", spacing="trailing")
    with pytest.raises(AppError, match=f"steps must be a whole number from 1 to {T_TINY}, got 200"):
        user.predict(**{**base, "steps": 200}, sampler="DDIM", spacing="leading")
    with pytest.raises(AppError, match="second sampler: Karras sigmas need a finite sigma_max"):
        b = {"sampler_b": "DDIM", "steps_b": 2, "spacing_b": "karras"}
        user.predict(model=name, sampler="DDIM", spacing="leading", steps=2, count=1, **b, api_name="/compare")
    assert "2 of 2 steps" in user.predict(**base, sampler="Euler", spacing="leading")[0]
    note = user.predict(name, api_name="/sampler_quality")[1]
    assert note.startswith("No chart for this model")


def test_the_chart_endpoint_returns_a_figure_for_a_shipped_model(client, digits, tmp_path, monkeypatch):
    monkeypatch.setattr(digits, "quality_path", fake_sweep(tmp_path))
    plot, note, *_ = client.predict(DEFAULT_MODEL, api_name="/sampler_quality")
    assert plot["visible"]  # an update: the chart shown, with its figure
    names = [trace.get("name") for trace in json.loads(plot["value"]["plot"])["data"]]
    assert "DPM++ 2M, karras" in names and "DDPM, every timestep (1000 calls)" in names and "Precomputed" in note
    monkeypatch.setattr(digits, "quality_path", tmp_path / "missing.json")
    assert client.predict(DEFAULT_MODEL, api_name="/sampler_quality")[1] == NOT_MEASURED_SHIPPED


# ---- the real page ------------------------------------------------------------------------------------------------


def test_the_sample_tab_offers_every_sampler_counts_network_calls_and_draws_the_chart(
    app_url, page, artifacts, tmp_path, monkeypatch
):
    conditional = pretrained(PRETRAINED["mnist_cond"])
    monkeypatch.setattr(conditional, "quality_path", fake_sweep(tmp_path))
    page.goto(app_url)
    page.get_by_role("tab", name="Sample").click()
    sampler = page.locator("#sample-sampler")
    sampler.get_by_text("DPM++ 2M SDE").wait_for(timeout=30_000)
    assert sampler.locator("input[type=radio]").count() == len(SAMPLER_CHOICES)
    assert page.locator("#sample-spacing input[type=radio]").count() == len(SPACINGS)
    defaults = pretrained(DEFAULT_MODEL).sampling_defaults
    calls = page.locator("#sample-calls")
    assert f"{defaults.network_calls} network call" in calls.inner_text()
    sampler.get_by_text("Heun", exact=True).click()
    calls.get_by_text(f"{2 * defaults.steps - 1} network calls").wait_for(timeout=10_000)
    assert page.get_by_label("range slider for eta (DDIM only)").first.is_disabled()  # Heun has no eta
    # the chart of a model whose sweep is on disk
    page.locator("#sample-model input").click()
    page.get_by_role("option", name=PRETRAINED["mnist_cond"]).click()
    page.wait_for_function(
        "() => { const p = document.querySelector('#sample-quality .js-plotly-plot');"
        " return p && p.data && p.data.some(t => t.name === 'DPM++ 2M, karras'); }",
        timeout=30_000,
    )
    assert "Precomputed" in page.locator("#sample-quality-note").inner_text()
    assert "Lower is better" in page.get_by_text("Lower is better; each line is a sampler").inner_text()
    page.locator("#sample-quality").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "tab_sample_quality.png"), full_page=True)
