"""Checkpoint loading: strict, with readable errors. Official Lightning files and
refused globals: test_lightning_checkpoint.py."""

from __future__ import annotations

import dataclasses
import zipfile

import pytest
import torch

from occdepth_ros.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from occdepth_ros.model import OccDepth, load_preset


@pytest.fixture(scope="module")
def compact_model() -> OccDepth:
    torch.manual_seed(0)
    return OccDepth(load_preset("compact")).eval()


def test_wrong_architecture_is_reported(tmp_path, compact_model) -> None:
    cfg = load_preset("compact")
    other = OccDepth(dataclasses.replace(cfg, feature=24, name="compact-f24"))
    path = tmp_path / "other.ckpt"
    torch.save(other.state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        load_model(path, preset="compact")
    msg = str(err.value)
    assert "does not fit model 'compact'" in msg and "shape mismatches" in msg and "feature 24" in msg


def test_missing_crp_keys_are_named(tmp_path, compact_model) -> None:
    """The official ONNX 'infer mode' drops CRP; loading such weights must say so."""
    sd = {k: v for k, v in compact_model.state_dict().items() if "CP_mega_voxels" not in k}
    path = tmp_path / "nocrp.ckpt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"missing keys in net_3d_decoder.CP_mega_voxels"):
        load_model(path, preset="compact")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "drop_storage"])
def test_corrupt_files_give_clear_errors(tmp_path, compact_model, damage) -> None:
    good = tmp_path / "good.ckpt"
    torch.save(compact_model.state_dict(), good)
    bad = tmp_path / "bad.ckpt"
    if damage == "truncate":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif damage == "garbage":
        bad.write_bytes(b"not a checkpoint at all" * 100)
    else:
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
            for item in src.infolist():
                if not item.filename.endswith("/data/0"):
                    dst.writestr(item, src.read(item.filename))
    with pytest.raises(CheckpointError, match="bad.ckpt"):
        load_model(bad, preset="compact")


def test_native_format_round_trip_carries_config(tmp_path, compact_model) -> None:
    path = save_checkpoint(tmp_path / "m.safetensors", compact_model, meta={"note": "test"})
    model = load_model(path)
    assert model.cfg == compact_model.cfg
    for a, b in zip(compact_model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    _, _, meta = load_checkpoint(path)
    assert meta == {"note": "test"}


def test_native_half_storage_loads_as_float32(tmp_path, compact_model) -> None:
    path = save_checkpoint(tmp_path / "h.safetensors", compact_model, half=True)
    model = load_model(path)
    for (k, a), b in zip(compact_model.state_dict().items(), model.state_dict().values()):
        assert b.dtype == a.dtype
        if a.is_floating_point():
            torch.testing.assert_close(b, a.half().float(), rtol=0, atol=0)


def test_foreign_safetensors_is_refused(tmp_path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not an occdepth_ros checkpoint"):
        load_checkpoint(path)
