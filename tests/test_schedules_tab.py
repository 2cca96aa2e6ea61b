"""Schedules tab: plotted values equal the core's, health warnings fire where deserved, the export loads in
diffusers, bad inputs get clear messages."""

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from core.schedules import make_schedule
from explorer.app import TAB_IDS, carry_schedule
from explorer.figures import half_signal_step
from explorer.tabs.schedules import (
    SCHEDULE_CHOICES,
    TRAIN_SETTINGS,
    build_schedules,
    export_config,
    health_rows,
    health_warnings,
    parse_choice,
    schedule_figures,
    train_settings,
)
from explorer.tabs.train import DEFAULT_DATASET, PRESETS, training_config


def trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_plotted_values_equal_the_core():
    alpha, beta, amplitude, log_snr, rows = schedule_figures(
        ["linear", "cosine + zero terminal SNR"], 1000, 1e-4, 0.02, 0.008, True
    )
    linear, cosine_z = make_schedule("linear"), make_schedule("cosine", zero_terminal_snr=True)
    assert list(trace(alpha, "linear").y) == linear.alphas_cumprod.tolist()
    assert list(trace(alpha, "cosine + zero terminal SNR").y) == cosine_z.alphas_cumprod.tolist()
    assert list(trace(beta, "linear").y) == linear.betas.tolist() and beta.layout.yaxis.type == "log"
    signal, noise = (t for t in amplitude.data if t.name == "linear")  # solid, then dashed
    assert list(signal.y) == linear.sqrt_alphas_cumprod.tolist() and signal.line.dash is None
    assert list(noise.y) == linear.sqrt_one_minus_alphas_cumprod.tolist() and noise.line.dash == "dash"
    assert list(trace(log_snr, "linear").y) == linear.log_snr.tolist()
    assert np.isnan(trace(log_snr, "cosine + zero terminal SNR").y[-1])  # log(0) = -inf is not drawn
    markers = [t for t in alpha.data if t.mode == "markers"]
    assert [m.x[0] for m in markers] == [259, half_signal_step(cosine_z)]
    assert [row[0] for row in rows] == ["linear", "cosine + zero terminal SNR"]


def test_legends_sit_under_the_titles_and_name_each_schedule_once():
    """Three schedules ticked: each figure's legend hangs from a fixed point under its title, in the figure's own
    pixels (yref "container"), so Plotly reserves its rows above the plot and a legend that wraps onto more rows
    pushes the plot down, never up over the title. The signal-vs-noise figure lists each schedule once."""
    choices = ["linear", "cosine", "sigmoid"]
    figures = schedule_figures(choices, 1000, 1e-4, 0.02, 0.008, True)[:4]
    for fig in figures:
        legend, title, height = fig.layout.legend, fig.layout.title, fig.layout.height
        assert legend.yref == "container" and legend.yanchor == "top" and title.yref == "container"
        assert (title.y - legend.y) * height >= 2 * fig.layout.font.size  # a title's line lies between them
    amplitude = figures[2]
    assert [t.name for t in amplitude.data if t.showlegend is not False] == choices
    assert all(t.legendgroup == t.name for t in amplitude.data)  # one click hides a schedule's two curves


def test_the_log_beta_axis_writes_out_a_few_labels():
    """beta_t spans five decades: one label per decade, written out ("0.01"), not Plotly's "5 2 0.1 5 2 ..."."""
    beta = schedule_figures(["linear", "cosine"], 1000, 1e-4, 0.02, 0.008, True)[1]
    axis = beta.layout.yaxis
    assert axis.type == "log" and list(axis.tickvals) == [1e-4, 1e-3, 1e-2, 1e-1]
    assert list(axis.ticktext) == ["0.0001", "0.001", "0.01", "0.1"]
    assert schedule_figures(["linear"], 1000, 1e-4, 0.02, 0.008, False)[1].layout.yaxis.tickvals is None


def test_health_warnings_fire_on_schedules_that_deserve_them():
    sd = make_schedule("scaled_linear", 1000, beta_start=0.00085, beta_end=0.012)  # diffusers' / SD's defaults
    warnings = " ".join(health_warnings(sd))
    assert "not pure noise: 6.8%" in warnings and "Terminal SNR is 0.0047, not zero" in warnings
    for healthy in ("linear", "cosine", "sigmoid"):
        assert health_warnings(make_schedule(healthy)) == []
    for name in ("linear", "cosine", "sigmoid", "scaled_linear"):
        assert health_warnings(make_schedule(name, zero_terminal_snr=True)) == []
    gentle = " ".join(health_warnings(make_schedule("linear", 10)))
    assert "Too gentle" in gentle
    aggressive = " ".join(health_warnings(make_schedule("linear", 1000, beta_start=0.01, beta_end=0.5)))
    assert "Too aggressive: half the signal is gone by t = " in aggressive


def test_health_rows_report_the_numbers():
    rows = health_rows(
        build_schedules(["linear", "cosine", "scaled_linear + zero terminal SNR"], 1000, 1e-4, 0.02, 0.008)
    )
    linear, cosine, ztsnr = rows
    assert linear[1:5] == ["4.04e-05", "4.04e-05", 259, 0] and linear[5] == "✓ healthy"
    assert cosine[3] == 496 and cosine[4] == 1  # cosine's last beta is capped at 0.999
    assert ztsnr[1] == "0" and ztsnr[5] == "✓ healthy"


@pytest.mark.parametrize("choice", SCHEDULE_CHOICES)
def test_export_loads_in_diffusers_with_the_same_alphas(choice):
    path = export_config(choice, 700, 2e-4, 0.03, 0.008)
    config = json.loads(Path(path).read_text())
    theirs = DDPMScheduler.from_config(config)
    name, ztsnr = parse_choice(choice)
    ours = make_schedule(name, 700, beta_start=2e-4, beta_end=0.03, zero_terminal_snr=ztsnr)
    assert torch.allclose(theirs.alphas_cumprod.double(), ours.alphas_cumprod, atol=1e-6)


def test_export_refuses_cosine_with_another_s():
    with pytest.raises(gr.Error, match=r"s = 0\.008"):
        export_config("cosine", 1000, 1e-4, 0.02, 0.01)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((["linear"], 5, 1e-4, 0.02, 0.008, False), "T must be a whole number from 10 to 4000"),
        ((["linear"], 10.5, 1e-4, 0.02, 0.008, False), "T must be a whole number"),
        (([], 1000, 1e-4, 0.02, 0.008, False), "pick at least one schedule"),
        ((["quadratic"], 1000, 1e-4, 0.02, 0.008, False), "unknown schedule 'quadratic'"),
        ((["linear"], 1000, 0.03, 0.02, 0.008, False), "linear: beta_start (0.03) must be smaller than beta_end"),
        ((["cosine"], 1000, 1e-4, 0.02, 2.0, False), "cosine: cosine_s must be in (0, 1)"),
    ],
)
def test_bad_inputs_get_clear_messages(args, message):
    with pytest.raises(gr.Error) as error:
        schedule_figures(*args)
    assert message in str(error.value)


def test_train_with_this_schedule_carries_the_first_ticked_schedule_and_its_parameters():
    ticked = ["sigmoid + zero terminal SNR", "cosine"]  # the list's order decides: cosine comes first
    assert train_settings(ticked, 250, 2e-4, 0.03, 0.01, "eps") == ("cosine", "eps", 250, 2e-4, 0.03, 0.01, False)
    values = train_settings(["sigmoid + zero terminal SNR"], 300.0, 1e-4, 0.02, 0.008, "eps")
    assert values == ("sigmoid", "v", 300, 1e-4, 0.02, 0.008, True)  # eps cannot sample zero terminal SNR: v
    assert train_settings(["linear + zero terminal SNR"], 1000, 1e-4, 0.02, 0.008, "x0")[1] == "x0"
    with pytest.raises(gr.Error, match="tick a schedule to train with"):
        train_settings([], 1000, 1e-4, 0.02, 0.008, "x0")
    with pytest.raises(gr.Error, match=r"beta_start .* must be smaller than beta_end"):
        train_settings(["linear"], 1000, 0.05, 0.02, 0.008, "x0")


def test_the_carried_values_set_the_train_tabs_controls_and_open_it():
    """carry_schedule (wired in explorer.app) fills the Train tab's schedule controls, opens its Advanced group and
    selects the Train tab; those values make a TrainConfig that trains exactly the schedule shown."""
    *values, accordion, tabs = carry_schedule(["scaled_linear"], 400, 3e-4, 0.015, 0.008, "x0")
    assert tabs.selected == TAB_IDS["Train"] == "train" and accordion.open is True
    settings = dict(zip(TRAIN_SETTINGS, values, strict=True))
    page = dict(dataset_label=DEFAULT_DATASET, upload=None, preset_label=next(iter(PRESETS)), length_unit="steps")
    page.update(length=1, batch_size=8, lr=1e-3, ema_decay=0.9, seed=0, class_conditional=False)
    config = training_config(**page, **settings)
    shown = build_schedules(["scaled_linear"], 400, 3e-4, 0.015, 0.008)["scaled_linear"]
    assert torch.equal(config.noise_schedule().betas, shown.betas)
