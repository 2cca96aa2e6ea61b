"""Checkpoints: exact round trip, atomic saves, clear refusals of anything broken; never unpickle."""

import json

import pytest
import torch

import core.checkpoint as checkpoint_module
from core.checkpoint import (
    CONFIG_FILE,
    EMA_FILE,
    MODEL_FILE,
    STATE_FILE,
    CheckpointError,
    load_checkpoint,
    load_training_state,
    save_checkpoint,
)
from core.schedules import make_schedule
from core.unet import UNet


def tiny_unet(seed=0, **kwargs):
    torch.manual_seed(seed)
    net = UNet(in_channels=1, base_channels=8, channel_mults=(1, 2), time_emb_dim=16, **kwargs)
    torch.nn.init.normal_(net.output_conv.weight, std=0.1)
    return net


def run_config():
    return {"schedule": make_schedule("cosine", 100).params, "objective": "v", "step": 5}


def test_round_trip_is_exact(tmp_path):
    model, ema = tiny_unet(0, num_classes=3), tiny_unet(1, num_classes=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 1, 8, 8), torch.tensor([1, 2])).sum().backward()
    optimizer.step()
    rng = torch.Generator().manual_seed(7).get_state()
    save_checkpoint(tmp_path, model, run_config(), ema_model=ema, optimizer=optimizer, rng_states={"g": rng})
    loaded = load_checkpoint(tmp_path)
    for original, restored in ((model, loaded.model), (ema, loaded.ema_model)):
        assert all(
            torch.equal(a, b)
            for a, b in zip(original.state_dict().values(), restored.state_dict().values(), strict=True)
        )
    assert loaded.objective == "v" and loaded.step == 5 and loaded.schedule.num_timesteps == 100
    assert loaded.sampling_model is loaded.ema_model
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([3, 50]), torch.tensor([0, 2])
    assert torch.equal(loaded.model(x, t, y), model(x, t, y))
    fresh = torch.optim.AdamW(loaded.model.parameters(), lr=1e-3)
    states = load_training_state(tmp_path, fresh)
    assert torch.equal(states["g"], rng)
    saved_state, restored_state = optimizer.state_dict()["state"], fresh.state_dict()["state"]
    assert saved_state.keys() == restored_state.keys()
    for index, entry in saved_state.items():
        assert all(torch.equal(entry[k], restored_state[index][k]) for k in ("exp_avg", "exp_avg_sq", "step"))
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert config["package_version"] and config["model"]["type"] == "unet"
    assert set(config["files"]) == {MODEL_FILE, EMA_FILE, STATE_FILE}


def test_a_failure_mid_save_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    first = tiny_unet(0)
    save_checkpoint(tmp_path, first, run_config(), ema_model=tiny_unet(1))
    before = sorted(p.name for p in tmp_path.iterdir())
    real_save, calls = checkpoint_module.save_file, []

    def failing_save(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:  # the model file is written, then the EMA file fails half-way
            with open(path, "wb") as f:
                f.write(b"partial")
            raise OSError("disk full")
        real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(checkpoint_module, "save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, tiny_unet(5), {**run_config(), "step": 6}, ema_model=tiny_unet(6))
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "no temp file may be left behind"
    loaded = load_checkpoint(tmp_path)
    assert loaded.step == 5
    assert all(
        torch.equal(a, b) for a, b in zip(first.state_dict().values(), loaded.model.state_dict().values(), strict=True)
    )


def test_nan_weights_are_never_saved(tmp_path):
    model = tiny_unet()
    with torch.no_grad():
        model.input_conv.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="non-finite weights"):
        save_checkpoint(tmp_path / "ck", model, run_config())
    assert not (tmp_path / "ck" / CONFIG_FILE).exists()


@pytest.fixture
def saved(tmp_path):
    save_checkpoint(tmp_path, tiny_unet(), run_config(), ema_model=tiny_unet(1))
    return tmp_path


def rewrite_config(directory, change):
    config = json.loads((directory / CONFIG_FILE).read_text())
    change(config)
    (directory / CONFIG_FILE).write_text(json.dumps(config))


def test_truncated_weights_are_refused(saved):
    data = (saved / MODEL_FILE).read_bytes()
    (saved / MODEL_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"does not match config\.json"):
        load_checkpoint(saved)
    # even with a matching hash, a truncated safetensors file is refused by its header check
    rewrite_config(saved, lambda c: c["files"].update({MODEL_FILE: checkpoint_module._sha256(saved / MODEL_FILE)}))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(saved)


def test_mismatched_config_is_refused(saved):
    rewrite_config(saved, lambda c: c["model"].update({"base_channels": 16}))
    with pytest.raises(CheckpointError, match="has shape"):
        load_checkpoint(saved)


def test_a_config_asking_for_an_enormous_network_is_refused_before_building_it(saved):
    """10^6 base channels would need terabytes; the shapes are compared on the meta device first."""
    rewrite_config(saved, lambda c: c["model"].update({"base_channels": 1_000_000}))
    with pytest.raises(CheckpointError, match="has shape"):
        load_checkpoint(saved)


def test_nan_in_a_file_is_refused(saved, tmp_path):
    other = tmp_path / "other"
    model = tiny_unet()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["input_conv.bias"][0] = float("nan")
    checkpoint_module.save_file(state, str(saved / MODEL_FILE))
    rewrite_config(saved, lambda c: c["files"].update({MODEL_FILE: checkpoint_module._sha256(saved / MODEL_FILE)}))
    with pytest.raises(CheckpointError, match="NaN or inf"):
        load_checkpoint(saved)
    assert not other.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "pickle"}', "not a ddpm-explorer-checkpoint"),
        ('{"format": "ddpm-explorer-checkpoint"}', "lacks 'model'"),
    ],
)
def test_bad_config_files_are_refused(saved, content, message):
    (saved / CONFIG_FILE).write_text(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(saved)


def test_missing_folder_and_unknown_model_type(saved, tmp_path):
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        load_checkpoint(tmp_path / "nowhere")
    rewrite_config(saved, lambda c: c["model"].update({"type": "transformer"}))
    with pytest.raises(CheckpointError, match="unknown model type"):
        load_checkpoint(saved)


def test_a_pickle_is_never_loaded(saved):
    """A crafted .pt beside the weights would run code if unpickled; the loader reads only safetensors + JSON."""
    marker = saved / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"state": Exploit()}, saved / "model.pt")
    (saved / MODEL_FILE).write_bytes((saved / "model.pt").read_bytes())
    with pytest.raises(CheckpointError):
        load_checkpoint(saved)
    assert not marker.exists()


def test_resume_needs_training_state(saved):
    with pytest.raises(CheckpointError, match="no training state"):
        load_training_state(saved, None)


def test_saved_files_are_readable_by_others(saved):
    import stat

    for path in saved.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name
