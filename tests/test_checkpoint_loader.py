"""Checkpoint loading: strict, restricted, with readable errors."""

from __future__ import annotations

import dataclasses
import os
import sys
import types
import zipfile

import pytest
import torch

from occdepth_ros.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from occdepth_ros.model import OccDepth, load_preset


@pytest.fixture(scope="module")
def compact_model() -> OccDepth:
    torch.manual_seed(0)
    return OccDepth(load_preset("compact")).eval()


def _stand_in_module(name: str) -> types.ModuleType:
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    return sys.modules[name]


def _stand_in_class(module: str, name: str, base: type = object) -> type:
    cls = type(name, (base,), {})
    cls.__module__ = module
    setattr(_stand_in_module(module), name, cls)
    return cls


def fake_lightning_checkpoint(path, state_dict) -> None:
    """A file shaped like PyTorch Lightning 1.4 writes it for OccDepth: hyper-parameters
    in an AttributeDict (a dict subclass) holding an OmegaConf DictConfig (with a
    dataclass metadata object and typing.Any), callback states keyed by the callback
    class, a MultiStepLR whose milestones are a Counter. The classes come from stand-in
    modules that do not exist when the file is loaded."""
    import collections
    import typing

    before = set(sys.modules)
    try:
        attribute_dict = _stand_in_class("pytorch_lightning.utilities.parsing", "AttributeDict", dict)
        model_checkpoint = _stand_in_class("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint")
        dict_config = _stand_in_class("omegaconf.dictconfig", "DictConfig")
        metadata = _stand_in_class("omegaconf.base", "ContainerMetadata")
        meta = metadata()
        meta.ref_type, meta.object_type, meta.key_type = typing.Any, dict, typing.Any
        config = dict_config()
        config.__dict__.update({"_metadata": meta, "_content": {"feature": 32}, "_parent": None})
        hparams = attribute_dict(config=config, class_weights=torch.ones(20, dtype=torch.float64),
                                 project_res=["1", "2", "4", "8"])
        torch.save(
            {
                "epoch": 29,
                "global_step": 115020,
                "pytorch-lightning_version": "1.4.9",
                "state_dict": state_dict,
                "callbacks": {model_checkpoint: {"best_model_score": torch.tensor(12.84),
                                                 "best_model_path": "/x/epoch=029.ckpt"}},
                "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}},
                                      "param_groups": [{"lr": 2e-4, "betas": (0.9, 0.999)}]}],
                "lr_schedulers": [{"milestones": collections.Counter({18: 1, 24: 1}), "gamma": 0.4}],
                "hparams_name": "kwargs",
                "hyper_parameters": hparams,
            },
            path,
        )
    finally:
        for name in set(sys.modules) - before:
            del sys.modules[name]


def test_lightning_checkpoint_loads_strictly(tmp_path, compact_model) -> None:
    path = tmp_path / "official.ckpt"
    fake_lightning_checkpoint(path, compact_model.state_dict())
    model = load_model(path, preset="compact")
    for (k, a), b in zip(compact_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k
    _, cfg, meta = load_checkpoint(path)
    assert cfg is None and meta["epoch"] == 29


class _System:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


class _Eval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


class _Getattr:
    def __reduce__(self):
        return (getattr, (1, "real"))


@pytest.mark.parametrize("payload, name", [(_System(), "system"), (_Eval(), r"(__builtin__|builtins)\.eval"),
                                           (_Getattr(), r"(__builtin__|builtins)\.getattr")])
def test_malicious_pickle_is_refused(tmp_path, payload, name) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": payload}, path)
    with pytest.raises(CheckpointError, match=f"refusing to load '.*{name}'"):
        load_checkpoint(path)


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
