"""Real diffusers models: a pipeline folder as DDPMPipeline.save_pretrained writes it loads as a Checkpoint
(core/diffusers_pipeline.py); its betas equal diffusers', our DDIM equals diffusers' own DDIM loop on the same model
from the same x_T; pickled weights are refused without being unpickled; the CLI samples it; the Sample tab opens it
zipped and samples RGB pictures step by step. Tiny UNet2DModels with random weights (fixed seed) saved locally: no
network anywhere here.

DDIM tolerance: both loops run the same float32 network; diffusers keeps its alpha-bars in float32 and we in
float64 (up to ~4e-7 relative apart, tests/test_samplers_vs_diffusers.py), so the two trajectories part by float
rounding only (`pytest -s` prints each case's difference).
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

pytest.importorskip("diffusers")
from diffusers import DDIMScheduler, DDPMScheduler
from tiny_pipelines import SIDE, T, save_pipeline, tiny_unet, zip_folder

from core.checkpoint import CheckpointError, build_model, load_checkpoint
from core.checkpoint_archive import unpack_model
from core.classic_samplers import DDIMSampler
from core.cli import build_parser, plan_sampling
from core.diffusers_pipeline import MODEL_TYPE, UNET_WEIGHTS, DiffusersUNet
from core.sampler_base import draw_noise
from core.samplers import sample
from core.schedules import schedule_from_diffusers_config
from explorer.gpu_memory import sampling_need
from explorer.models import load_entry
from explorer.sampling_run import check_request, max_count, sample_request, starting_noise
from explorer.sessions import SessionRegistry
from explorer.tabs.sample import SampleTab

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPE = (2, 3, SIDE, SIDE)
TOL = 1e-4  # the issue's bound on our DDIM against diffusers' (max abs difference of the final samples)
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
PREDICTION_TYPES = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}


class FakeRequest:
    def __init__(self, session_hash):
        self.session_hash = session_hash


@pytest.mark.parametrize("beta_schedule", BETA_SCHEDULES)
def test_betas_equal_diffusers(beta_schedule):
    config = {"num_train_timesteps": T, "beta_schedule": beta_schedule}
    if beta_schedule == "scaled_linear":
        config.update(beta_start=0.00085, beta_end=0.012)  # Stable Diffusion's
    reference = DDPMScheduler(**config)
    ours = schedule_from_diffusers_config(dict(reference.config))
    assert (ours.betas - reference.betas.double()).abs().max() < 1e-6
    assert (ours.alphas_cumprod - reference.alphas_cumprod.double()).abs().max() < 1e-6
    assert ours.to_diffusers_config()["beta_schedule"] == beta_schedule  # and back


def test_zero_terminal_snr_and_trained_betas_equal_diffusers():
    reference = DDPMScheduler(num_train_timesteps=T, rescale_betas_zero_snr=True)
    ours = schedule_from_diffusers_config(dict(reference.config))
    # diffusers rescales in float32, whose rounding the rescale amplifies in the betas (up to 2e-6), not in alpha-bar
    assert ours.has_zero_terminal_snr and (ours.alphas_cumprod - reference.alphas_cumprod.double()).abs().max() < 1e-6
    trained = [0.001 * (1 + i) for i in range(20)]
    custom = schedule_from_diffusers_config({"trained_betas": trained, "num_train_timesteps": 20})
    assert custom.num_timesteps == 20 and torch.allclose(custom.betas, torch.tensor(trained, dtype=torch.float64))
    with pytest.raises(ValueError, match="beta_schedule 'exponential'"):
        schedule_from_diffusers_config({"beta_schedule": "exponential"})


def test_a_pipeline_folder_loads_as_a_checkpoint(tmp_path):
    folder = save_pipeline(tmp_path / "pipe", prediction_type="v_prediction", clip_sample=False)
    checkpoint = load_checkpoint(folder)
    model = checkpoint.sampling_model
    assert isinstance(model, DiffusersUNet) and model.config["type"] == MODEL_TYPE
    assert checkpoint.objective == "v" and not checkpoint.clip_x0 and checkpoint.sample_shape == (3, SIDE, SIDE)
    assert checkpoint.schedule.num_timesteps == T and checkpoint.sampling_defaults.steps >= 1
    json.dumps(checkpoint.config)  # JSON-ready, like our own checkpoints' configs
    # the wrapper is the UNet itself, in the project's signature
    x, t = torch.randn(SHAPE), torch.tensor([999, 3])
    reference = tiny_unet()
    with torch.no_grad():
        assert torch.equal(model(x, t), reference(x, t).sample)
    with pytest.raises(ValueError, match="unconditional"):
        model(x, t, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="divisible by 2"):
        model.check_input(torch.randn(1, 3, 15, 15))
    # its config rebuilds it (build_model), so a run's GPU memory is estimated as for our own models
    rebuilt = build_model(model.config)
    assert rebuilt.config == model.config
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in model.parameters())
    one, four = (sampling_need(model, checkpoint.sample_shape, count) for count in (1, 4))
    assert one is not None and four > one > 0


def test_weights_with_diffusers_old_attention_names_load(tmp_path):
    """Pipelines saved before diffusers renamed its attention layers (query, key, value, proj_attn; the google/ddpm-*
    models on the Hub) load as diffusers loads them."""
    folder = save_pipeline(tmp_path / "pipe")
    tensors = load_file(str(folder / UNET_WEIGHTS))
    old_names = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
    renamed = {}
    for key, value in tensors.items():
        for new, old in old_names.items():
            key = key.replace(new, old)
        renamed[key] = value
    assert renamed.keys() != tensors.keys()
    save_file(renamed, str(folder / UNET_WEIGHTS))
    x, t = torch.randn(SHAPE), torch.tensor([500, 20])
    with torch.no_grad():
        assert torch.equal(load_checkpoint(folder).sampling_model(x, t), tiny_unet()(x, t).sample)


def diffusers_ddim(unet, folder: Path, x_T, steps: int, eta: float, spacing: str, noise_seed: int) -> torch.Tensor:
    """diffusers' own DDIM loop (as DDIMPipeline runs it) on the pipeline's scheduler config, the noise of each step
    drawn in the order our sampler draws it. use_clipped_model_output=True, as DDIMScheduler.step's documentation
    calls it "necessary" with clip_sample: the noise is recomputed from the clipped x_0 (our samplers always do; with
    DDIMPipeline's default, None, diffusers keeps the network's unclipped noise beside the clipped x_0)."""
    scheduler = DDIMScheduler.from_pretrained(folder / "scheduler", timestep_spacing=spacing)
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(noise_seed)
    x = x_T
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            output = unet(x, t).sample
            last = i == len(scheduler.timesteps) - 1  # our DDIM adds no noise on the last step (sigma = 0 there)
            noise = torch.zeros_like(x) if last else draw_noise(x.shape, generator, x.device, x.dtype)
            x = scheduler.step(output, t, x, eta=eta, use_clipped_model_output=True, variance_noise=noise).prev_sample
    return x


def ours_ddim(folder: Path, x_T, steps: int, eta: float, spacing: str, noise_seed: int) -> torch.Tensor:
    checkpoint = load_checkpoint(folder)
    sampler = DDIMSampler(
        checkpoint.schedule, eta, objective=checkpoint.objective, clip_x0=checkpoint.clip_x0, spacing=spacing
    )
    generator = torch.Generator().manual_seed(noise_seed)
    return sample(checkpoint.sampling_model, sampler, x_T, steps, generator=generator)


def assert_ddim_close(ours: torch.Tensor, reference: torch.Tensor) -> None:
    """max |ours - reference| <= TOL * max(1, max |reference|): absolute for samples in [-1, 1] (a trained model's,
    or clip_sample's), relative where a random unclipped network's samples reach hundreds (float32 has ~2e-4
    between neighbours at 2000)."""
    error, scale = (ours - reference).abs().max().item(), max(1.0, reference.abs().max().item())
    print(f"max |ours - diffusers| = {error:.2e}, max |diffusers| = {scale:.3g}")  # pytest -s shows it
    assert reference.abs().max() > 0.1  # a real trajectory, not everything at 0
    assert error <= TOL * scale, (error, scale)


DDIM_CASES = [
    pytest.param(prediction, schedule, clip, spacing, eta, id=f"{prediction}-{schedule}-clip{clip}-{spacing}-eta{eta}")
    for prediction in PREDICTION_TYPES
    for schedule, clip, spacing, eta in [
        ("linear", True, "leading", 0.0),  # DDIMPipeline's defaults on a DDPMScheduler config (google/ddpm-*)
        ("linear", False, "trailing", 0.0),
        ("squaredcos_cap_v2", False, "leading", 0.5),
        ("scaled_linear", True, "trailing", 1.0),
    ]
]


@pytest.mark.parametrize(("prediction", "beta_schedule", "clip", "spacing", "eta"), DDIM_CASES)
def test_our_ddim_equals_diffusers_ddim_from_the_same_x_T(tmp_path, prediction, beta_schedule, clip, spacing, eta):
    folder = save_pipeline(tmp_path / "pipe", beta_schedule=beta_schedule, prediction_type=prediction, clip_sample=clip)
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(7))
    steps = 20
    ours = ours_ddim(folder, x_T, steps, eta, spacing, noise_seed=8)
    reference = diffusers_ddim(tiny_unet(), folder, x_T, steps, eta, spacing, noise_seed=8)
    assert_ddim_close(ours, reference)


def test_zero_terminal_snr_v_prediction_with_diffusers_recommended_settings(tmp_path):
    """diffusers' DDIMScheduler docs (after Lin et al. 2023): rescale_betas_zero_snr with trailing timesteps, for a
    v-prediction model: the first step starts at pure noise (alpha-bar 0)."""
    folder = save_pipeline(tmp_path / "pipe", prediction_type="v_prediction", rescale_betas_zero_snr=True)
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    ours = ours_ddim(folder, x_T, 10, 0.0, "trailing", noise_seed=0)
    reference = diffusers_ddim(tiny_unet(), folder, x_T, 10, 0.0, "trailing", noise_seed=0)
    assert_ddim_close(ours, reference)


@pytest.mark.parametrize("clip", [True, False])
def test_the_sample_tab_samples_with_the_scheduler_s_clipping(tmp_path, clip):
    """The app's run of a pipeline (explorer.sampling_run) is our DDIM with the scheduler's clip_sample."""
    folder = save_pipeline(tmp_path / "pipe", clip_sample=clip)
    entry = load_entry("tiny", folder)
    request = check_request(entry, "DDIM", 5, 0.0, 4, 2, spacing="leading")
    *_, (_, trajectory) = sample_request(entry, request)
    expected = ours_ddim(folder, starting_noise(entry, 2, 4), 5, 0.0, "leading", noise_seed=0)
    assert torch.allclose(trajectory.final, expected, atol=1e-6)
    assert (trajectory.final.abs().max() > 1.0) != clip  # unclipped, this random network strays past [-1, 1]


def test_grey_256_px_pictures_load_one_at_a_time_and_larger_ones_are_refused(tmp_path):
    entry = load_entry("big", save_pipeline(tmp_path / "grey", channels=1, side=256))
    assert (
        entry.checkpoint.sample_shape == (1, 256, 256) and max_count(entry) == 1 and "256x256 gray" in entry.describe()
    )
    *_, (_, trajectory) = sample_request(entry, check_request(entry, "DDIM", 2, 0.0, 0, 1))
    assert trajectory.final.shape == (1, 1, 256, 256)
    with pytest.raises(CheckpointError, match="sample_size 512 must be a square side of 1 to 256 px"):
        load_checkpoint(save_pipeline(tmp_path / "huge", side=512))


@pytest.fixture
def no_unpickling(monkeypatch):
    """torch.load and pickle's loaders fail the test if anything calls them."""

    def forbidden(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)


def test_a_folder_with_pickled_weights_alone_is_refused_unread(tmp_path, no_unpickling):
    folder = save_pipeline(tmp_path / "pickled", safe=False)
    assert (folder / "unet" / "diffusion_pytorch_model.bin").is_file() and not (folder / UNET_WEIGHTS).exists()
    with pytest.raises(CheckpointError, match=r"only as diffusion_pytorch_model\.bin, a pickle format"):
        load_checkpoint(folder)
    with pytest.raises(CheckpointError, match="pickle format"):  # and zipped
        unpack_model(zip_folder(folder, tmp_path / "pickled.zip"), tmp_path / "out")
    assert not (tmp_path / "out" / "unet").exists()


def test_a_zip_keeps_only_the_pipeline_files_and_refuses_what_is_not_one(tmp_path, no_unpickling):
    folder = save_pipeline(tmp_path / "pipe")
    (folder / "README.md").write_text("# a model card")
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"a pickle, never written out")
    out = unpack_model(zip_folder(folder, tmp_path / "pipe.zip", inside="ddpm-tiny/"), tmp_path / "out")
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(["model_index.json", "unet/config.json", UNET_WEIGHTS, "scheduler/scheduler_config.json"])
    assert load_checkpoint(out).objective == "eps"
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("model_index.json", json.dumps({"_class_name": "DDPMPipeline"}))
        archive.writestr("../unet/config.json", "{}")
    with pytest.raises(CheckpointError, match=r"'\.\.'"):
        unpack_model(bad, tmp_path / "bad")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(CheckpointError, match="StableDiffusionPipeline"):
        load_checkpoint(folder)


def test_weights_that_do_not_fit_the_config_are_refused_before_loading(tmp_path):
    folder = save_pipeline(tmp_path / "pipe")
    config = json.loads((folder / "unet" / "config.json").read_text())
    (folder / "unet" / "config.json").write_text(json.dumps({**config, "block_out_channels": [64, 128]}))
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(folder)


def test_the_cli_samples_a_pipeline_folder(tmp_path):
    folder = save_pipeline(tmp_path / "pipe")
    out = tmp_path / "samples.png"
    argv = ["sample", "--checkpoint", str(folder), "--n", "4", "--steps", "3", "--device", "cpu", "--out", str(out)]
    result = subprocess.run([sys.executable, "-m", "core", *argv], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.mode == "RGB" and image.size == (2 * (SIDE + 2) + 2, 2 * (SIDE + 2) + 2)


@pytest.mark.parametrize(
    ("clip_sample", "flag", "clipped"), [(False, [], False), (True, [], True), (False, ["--clip-x0"], True)]
)
def test_the_cli_clips_as_the_scheduler_says_unless_told(tmp_path, clip_sample, flag, clipped):
    folder = save_pipeline(tmp_path / "pipe", clip_sample=clip_sample)
    parser = build_parser()
    argv = ["sample", "--checkpoint", str(folder), "--device", "cpu", "--out", str(tmp_path / "x.png"), *flag]
    args = parser.parse_args(argv)
    assert plan_sampling(args, parser).sampler.clip_x0 is clipped


def test_the_sample_tab_opens_a_zipped_pipeline_and_samples_rgb_step_by_step(tmp_path):
    zipped = zip_folder(save_pipeline(tmp_path / "pipe"), tmp_path / "tiny-ddpm.zip")
    registry = SessionRegistry(tmp_path / "sessions", max_jobs=1, compute_threads=1)
    tab, user = SampleTab(registry), FakeRequest("rita")
    menu, note = tab.upload_model(str(zipped), request=user)
    assert menu.value == "uploaded: tiny-ddpm" and "Added" in note
    about, *_, count, _paths, _spacing = tab.describe_model(menu.value, request=user)
    assert "diffusers DDPMPipeline" in about and "16x16 RGB" in about and count.maximum == 64
    controls = dict(
        model=menu.value,
        sampler="DDIM",
        steps=4,
        eta=0.0,
        seed=1,
        count=4,
        class_choice=None,
        guidance=1.0,
        spacing="leading",
    )
    updates = list(tab.sample(request=user, **controls))
    live = [u for u in updates if isinstance(u[1], np.ndarray)]
    assert len(live) >= 2  # the pictures change while it runs
    final_x_t = live[-1][1]
    assert final_x_t.ndim == 3 and final_x_t.shape[2] == 3  # RGB
    assert "4 of 4 steps" in updates[-1][0]
    assert len(tab.user_session(user).trajectory) == 4
    bad = tmp_path / "not-a-model.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("model_index.json", "not json")
    with pytest.raises(gr.Error, match="This checkpoint was refused"):
        tab.upload_model(str(bad), request=user)
    assert tab.model_names(tab.user_session(user))[-1] == "uploaded: tiny-ddpm"  # nothing lost


@pytest.mark.slow
def test_a_zipped_pipeline_samples_rgb_pictures_in_chromium(app_url, page, artifacts, tmp_path):
    """The page itself: upload the zip in the Sample tab, sample, see RGB pictures step by step (a screenshot lands in
    tests/artifacts/tab_sample_diffusers.png)."""
    zipped = zip_folder(save_pipeline(tmp_path / "pipe"), tmp_path / "tiny-ddpm.zip")
    page.goto(app_url)
    page.get_by_role("tab", name="Sample").click()
    page.get_by_text("Use a checkpoint you downloaded earlier, or a diffusers model").click()
    page.locator("#sample-upload input[type=file]").set_input_files(str(zipped))
    page.locator("#sample-upload-note").get_by_text("Added uploaded: tiny-ddpm").wait_for(timeout=60_000)
    page.get_by_text("a diffusers DDPMPipeline").wait_for(timeout=30_000)
    page.locator("#sample-run").click()
    page.locator("#sample-progress").get_by_text("Drag the slider").wait_for(timeout=120_000)
    page.locator("#sample-progress").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "tab_sample_diffusers.png"), full_page=True)
    source = page.locator("#sample-xt img").get_attribute("src")
    assert source
