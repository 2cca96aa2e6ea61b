"""Checkpoints: exact round trip, atomic saves (a failure or a kill at any moment leaves a checkpoint that loads),
clear refusals of anything broken; never unpickle."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

import core.checkpoint as checkpoint_module
from core.checkpoint import (
    CONFIG_FILE,
    EMA_FILE,
    MODEL_FILE,
    STATE_FILE,
    CheckpointError,
    checkpoint_file,
    load_checkpoint,
    load_training_state,
    read_config,
    save_checkpoint,
    weight_file_role,
)
from core.samplers import SamplingDefaults
from core.schedules import make_schedule
from core.unet import UNet, UNetConfig


def tiny_unet(seed=0, **kwargs):
    torch.manual_seed(seed)
    net = UNet(UNetConfig(in_channels=1, base_channels=8, channel_mults=(1, 2), time_emb_dim=16, **kwargs))
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
    assert {weight_file_role(name) for name in config["files"]} == {MODEL_FILE, EMA_FILE, STATE_FILE}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CONFIG_FILE, *config["files"]])


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


def rehash(directory, path):
    """Make config.json vouch for the file at `path` as it is now."""
    rewrite_config(directory, lambda c: c["files"].update({path.name: checkpoint_module._sha256(path)}))


def test_truncated_weights_are_refused(saved):
    weights = checkpoint_file(saved)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"does not match config\.json"):
        load_checkpoint(saved)
    # even with a matching hash, a truncated safetensors file is refused by its header check
    rehash(saved, weights)
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
    weights = checkpoint_file(saved)
    checkpoint_module.save_file(state, str(weights))
    rehash(saved, weights)
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
    checkpoint_file(saved).write_bytes((saved / "model.pt").read_bytes())
    with pytest.raises(CheckpointError):
        load_checkpoint(saved)
    assert not marker.exists()


def test_resume_needs_training_state(saved):
    with pytest.raises(CheckpointError, match="no training state"):
        load_training_state(saved, None)


def test_sampling_defaults_round_trip(tmp_path):
    record = SamplingDefaults("heun", 40, 0.5, "trailing")
    save_checkpoint(tmp_path, tiny_unet(), {**run_config(), "sampling_defaults": record.to_dict()})
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["sampling_defaults"] == {
        "sampler": "heun",
        "steps": 40,
        "eta": 0.5,
        "spacing": "trailing",
    }
    assert load_checkpoint(tmp_path).sampling_defaults == record


def test_a_sampling_record_without_the_spacing_samples_as_it_was_written(saved):
    """Records older than the spacing field sampled on DDIM's "leading" timesteps, and still do."""
    rewrite_config(saved, lambda c: c.update({"sampling_defaults": {"sampler": "ddim", "steps": 50, "eta": 1.0}}))
    assert load_checkpoint(saved).sampling_defaults == SamplingDefaults("ddim", 50, 1.0, "leading")


def test_a_schedule_record_without_the_parameters_gets_todays_defaults(saved):
    """A record with only the name and T (as older tools wrote it) rebuilds make_schedule's defaults exactly."""
    rewrite_config(saved, lambda c: c.update({"schedule": {"name": "linear", "num_timesteps": 100}}))
    schedule = load_checkpoint(saved).schedule
    assert torch.equal(schedule.betas, make_schedule("linear", 100).betas) and not schedule.has_zero_terminal_snr


@pytest.mark.parametrize("objective", ["x0", "eps", "v"])
def test_a_checkpoint_without_the_record_gets_the_defaults(saved, objective):
    """Checkpoints saved before the record existed load, and sample with the defaults: DPM-Solver++(2M) SDE,
    10 steps on trailing timesteps."""
    rewrite_config(saved, lambda c: c.update({"objective": objective}))
    assert "sampling_defaults" not in read_config(saved)
    assert load_checkpoint(saved).sampling_defaults == SamplingDefaults("dpmpp_2m_sde", 10, 0.0, "trailing")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("ddim", "must be an object with sampler, steps, eta"),
        ({"sampler": "ddim", "steps": 50}, "missing ['eta']"),
        ({"sampler": "ddim", "steps": 50, "eta": 1, "cfg": 2}, "unknown ['cfg']"),
        ({"sampler": "plms", "steps": 50, "eta": 0}, "unknown sampler 'plms'; choose one of ddpm, ddim, euler"),
        ({"sampler": "ddim", "steps": 0, "eta": 0}, "steps must be a positive integer, got 0"),
        ({"sampler": "ddim", "steps": 12.5, "eta": 0}, "steps must be a positive integer, got 12.5"),
        ({"sampler": "ddim", "steps": 101, "eta": 0}, "steps must be at most 100 (the model's T), got 101"),
        ({"sampler": "ddim", "steps": 50, "eta": 1.5}, "eta must be in [0, 1]"),
        ({"sampler": "ddim", "steps": 50, "eta": "1"}, "eta must be in [0, 1]"),
        ({"sampler": "ddim", "steps": 50, "eta": 0, "spacing": "uniform"}, "unknown timestep spacing 'uniform'"),
    ],
)
def test_a_bad_sampling_record_is_refused_with_what_is_wrong(saved, tmp_path, record, message):
    rewrite_config(saved, lambda c: c.update({"sampling_defaults": record}))
    with pytest.raises(CheckpointError, match=r"config\.json: sampling_defaults") as error:
        load_checkpoint(saved)
    assert message in str(error.value)
    with pytest.raises(CheckpointError, match="sampling_defaults"):  # nor is it ever saved
        save_checkpoint(tmp_path / "new", tiny_unet(), {**run_config(), "sampling_defaults": record})
    assert not (tmp_path / "new").exists()


def test_saved_files_are_readable_by_others(saved):
    import stat

    for path in saved.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name


# A child process saves step 6 over a saved step 5 and SIGKILLs itself at one moment of the save: while a weight
# file is half written, before each rename, or after the commit while it deletes the previous files.
KILLED_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    import core.checkpoint as checkpoint_module
    from core.schedules import make_schedule
    from core.unet import UNet, UNetConfig

    directory, where, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    calls = {"write": 0, "replace": 0, "unlink": 0}

    def die_at(kind, real):
        def wrapped(*args, **kwargs):
            calls[kind] += 1
            if calls[kind] == count and kind == where:
                if kind == "write":  # leave a half-written file, as a kill during the write would
                    with open(args[1], "wb") as f:
                        f.write(b"half")
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        return wrapped

    checkpoint_module.save_file = die_at("write", checkpoint_module.save_file)
    os.replace = die_at("replace", os.replace)
    checkpoint_module.Path.unlink = die_at("unlink", checkpoint_module.Path.unlink)
    torch.manual_seed(6)
    model = UNet(UNetConfig(in_channels=1, base_channels=8, channel_mults=(1, 2), time_emb_dim=16))
    config = {"schedule": make_schedule("cosine", 100).params, "objective": "v", "step": 6}
    checkpoint_module.save_checkpoint(directory, model, config, ema_model=model)
    print("not killed")
    """
)


@pytest.mark.parametrize(
    ("where", "count", "survivor"),
    [
        ("write", 1, 5),  # the new model file half written
        ("write", 2, 5),  # the new EMA file half written
        ("replace", 2, 5),  # the model file in place under its new name, the EMA file not yet
        ("replace", 3, 5),  # both weight files in place, config.json not yet replaced
        ("unlink", 1, 6),  # committed; the previous files not yet deleted
    ],
)
def test_a_save_killed_at_any_moment_leaves_a_checkpoint_that_loads(tmp_path, where, count, survivor):
    save_checkpoint(tmp_path, tiny_unet(0), run_config(), ema_model=tiny_unet(1))
    child = subprocess.run(
        [sys.executable, "-c", KILLED_SAVE, str(tmp_path), where, str(count)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    loaded = load_checkpoint(tmp_path)  # config.json names complete files: the previous save's or the new one's
    assert loaded.step == survivor
    torch.manual_seed(6)
    expected = (
        tiny_unet(0)
        if survivor == 5
        else UNet(UNetConfig(in_channels=1, base_channels=8, channel_mults=(1, 2), time_emb_dim=16))
    )
    assert all(
        torch.equal(a, b)
        for a, b in zip(expected.state_dict().values(), loaded.model.state_dict().values(), strict=True)
    )
    # what the killed save left behind is never read, and the next save into the folder removes it
    save_checkpoint(tmp_path, tiny_unet(2), {**run_config(), "step": 7})
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CONFIG_FILE, *config["files"]])
    assert load_checkpoint(tmp_path).step == 7
