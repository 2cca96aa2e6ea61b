"""core/checkpoint_archive.py: a checkpoint zips and unzips to the same model; anything that is not a checkpoint zip
made by this project (pickles, paths out of the folder, extra files, too many or too large members) is refused
before a byte is written."""

import io
import pickle
import zipfile

import pytest
import torch

import core.checkpoint_archive as archive_module
from core.checkpoint import EMA_FILE, MODEL_FILE, CheckpointError, load_checkpoint, save_checkpoint, weight_file_role
from core.checkpoint_archive import pack_checkpoint, unpack_checkpoint
from core.schedules import make_schedule
from core.unet import UNet, UNetConfig


@pytest.fixture
def checkpoint_dir(tmp_path):
    torch.manual_seed(0)
    model = UNet(UNetConfig(in_channels=1, base_channels=8, channel_mults=(1, 2), time_emb_dim=16))
    config = {"schedule": make_schedule("cosine", 100).params, "objective": "x0", "step": 3}
    return save_checkpoint(tmp_path / "run", model, config, ema_model=model)


def test_round_trip_gives_the_same_weights(checkpoint_dir, tmp_path):
    path = pack_checkpoint(checkpoint_dir, tmp_path / "run.zip")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    assert names[0] == "config.json" and sorted(weight_file_role(name) for name in names[1:]) == [EMA_FILE, MODEL_FILE]
    restored = load_checkpoint(unpack_checkpoint(path, tmp_path / "back"))
    original = load_checkpoint(checkpoint_dir)
    for a, b in zip(original.model.state_dict().values(), restored.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert restored.step == 3 and restored.objective == "x0"


def test_a_zip_of_the_folder_itself_is_accepted(checkpoint_dir, tmp_path):
    path = tmp_path / "folder.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("run/", b"")
        for file in checkpoint_dir.iterdir():
            archive.write(file, f"run/{file.name}")
    assert load_checkpoint(unpack_checkpoint(path, tmp_path / "out")).step == 3


def zip_with(tmp_path, members: dict[str, bytes], name="bad.zip"):
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return path


class WritesMarker:
    """Unpickling this would create a file: the test checks it never appears."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt"])
def test_pickles_are_refused_and_never_run(checkpoint_dir, tmp_path, suffix):
    marker = tmp_path / "pwned"
    payload = io.BytesIO()
    pickle.dump(WritesMarker(marker), payload)
    path = zip_with(
        tmp_path,
        {"config.json": (checkpoint_dir / "config.json").read_bytes(), f"model{suffix}": payload.getvalue()},
    )
    with pytest.raises(CheckpointError, match="pickle file, which can run code"):
        unpack_checkpoint(path, tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("../../x/config.json", "absolute path or '..'"),
        ("/etc/config.json", "absolute path or '..'"),
        ("C:/config.json", "absolute path or '..'"),
        ("notes.txt", "not part of a DDPM Explorer checkpoint"),
        ("a/b/config.json", "not part of a DDPM Explorer checkpoint"),
    ],
)
def test_foreign_members_are_refused_before_writing(checkpoint_dir, tmp_path, member, message):
    path = zip_with(tmp_path, {member: b"{}", "model.safetensors": b"x"})
    with pytest.raises(CheckpointError, match=message):
        unpack_checkpoint(path, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "x").exists()


def test_incomplete_too_many_too_large_and_not_a_zip(checkpoint_dir, tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match=r"needs config\.json and model\.safetensors"):
        unpack_checkpoint(zip_with(tmp_path, {"config.json": b"{}"}), tmp_path / "a")
    many = zip_with(tmp_path, {f"d{i}/": b"" for i in range(20)}, "many.zip")
    with pytest.raises(CheckpointError, match="entries"):
        unpack_checkpoint(many, tmp_path / "b")
    monkeypatch.setattr(archive_module, "MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(CheckpointError, match="would unpack to"):
        unpack_checkpoint(pack_checkpoint(checkpoint_dir, tmp_path / "big.zip"), tmp_path / "c")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError, match=r"not a readable \.zip"):
        unpack_checkpoint(junk, tmp_path / "d")


def test_a_tampered_weight_file_is_caught_on_load(checkpoint_dir, tmp_path):
    members = {f.name: f.read_bytes() for f in checkpoint_dir.iterdir()}
    weights = next(name for name in members if weight_file_role(name) == MODEL_FILE)
    members[weights] = members[weights][:-8] + b"\x00" * 8
    folder = unpack_checkpoint(zip_with(tmp_path, members), tmp_path / "out")
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(folder)
