"""Official PyTorch Lightning 1.4.9 checkpoints through the restricted loader.

Fixtures are written by torch.save (pickle protocol 2) from the official KITTI and NYU
config structures (tests/helpers/lightning_checkpoint.py), with every storage tagged
``cuda:0`` as a GPU training run leaves them. torch.load, with the stand-in OmegaConf /
Lightning classes importable, is the independent reference for what must come back.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import io
import os
import pickle

import numpy as np
import pytest
import torch
from helpers.lightning_checkpoint import (KITTI_CONFIG, KITTI_RUN, NYU_CONFIG, NYU_RUN, reference_load,
                                          save_lightning_checkpoint)

from occdepth_ros.checkpoint import CheckpointError, load_checkpoint, load_model
from occdepth_ros.checkpoint.restricted_unpickler import RestrictedUnpickler, python3_name
from occdepth_ros.cli.infer import main as infer_main
from occdepth_ros.cli.inspect import main as inspect_main
from occdepth_ros.model import OccDepth, load_preset
from occdepth_ros.resources import config_path

NESTED = {"optim": {"name": "AdamW", "milestones": [18, 24], "betas": [0.9, 0.999]}}


@pytest.fixture(scope="module")
def compact_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return OccDepth(load_preset("compact")).state_dict()


def _plain_reference(value):
    """The reference's OmegaConf objects as plain data, walked independently of the loader."""
    kind = type(value).__name__
    if kind == "DictConfig":
        return {k: _plain_reference(v) for k, v in value._content.items()}
    if kind == "ListConfig":
        return [_plain_reference(v) for v in value._content]
    if kind == "AnyNode":
        return value._val
    return value


@pytest.mark.parametrize("run, extra, expected", [
    (KITTI_RUN, None, KITTI_CONFIG), (NYU_RUN, None, NYU_CONFIG),
    (KITTI_RUN, NESTED, {**KITTI_CONFIG, **NESTED}),
], ids=["kitti", "nyu", "kitti-nested-group"])
def test_official_lightning_files_load(tmp_path, compact_state, run, extra, expected) -> None:
    path = save_lightning_checkpoint(tmp_path / "official.ckpt", compact_state, run, extra_config=extra)
    ref = reference_load(path)
    sd, cfg, meta = load_checkpoint(path)

    assert cfg is None and list(sd) == list(ref["state_dict"])
    for key, value in ref["state_dict"].items():
        assert sd[key].device.type == "cpu" and sd[key].dtype == value.dtype
        assert torch.equal(sd[key], value), key
    assert meta["epoch"] == ref["epoch"] and meta["pytorch-lightning_version"] == "1.4.9"

    hp, ref_hp = meta["hyper_parameters"], ref["hyper_parameters"]
    assert hp["config"] == _plain_reference(ref_hp["config"]) == expected
    assert hp["config"]["full_scene_size"] == hp["full_scene_size"] == expected["full_scene_size"]
    for name in ("class_weights", "class_weights_occ"):
        assert hp[name].dtype == torch.float64 and torch.equal(hp[name], ref_hp[name])
    assert hp["class_names"] == ref_hp["class_names"] and hp["project_res"] == ["1", "2", "4", "8"]
    assert hp["distributed_backend"] == ref_hp["distributed_backend"].value == "ddp"


def test_the_file_is_what_torch_save_writes_at_protocol_2(tmp_path, compact_state) -> None:
    """The fixture carries the names the released file does: Python 2 spellings from
    protocol 2 and the real OmegaConf/Lightning module paths."""
    import pickletools
    import zipfile

    path = save_lightning_checkpoint(tmp_path / "official.ckpt", compact_state)
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    listing = io.StringIO()
    pickletools.dis(data, listing)
    text = listing.getvalue()
    assert data[:2] == b"\x80\x02"
    for name in ("__builtin__ long", "omegaconf.listconfig ListConfig", "omegaconf.dictconfig DictConfig",
                 "omegaconf.base ContainerMetadata", "typing Any", "torch DoubleStorage",
                 "pytorch_lightning.callbacks.model_checkpoint ModelCheckpoint",
                 "pytorch_lightning.utilities.enums DistributedType"):
        assert f"GLOBAL     '{name}'" in text, name
    assert "'cuda:0'" in text


@pytest.mark.parametrize("old", sorted(_compat_pickle.NAME_MAPPING) + [("__builtin__", "dict"), ("copy_reg", "x")])
def test_python2_names_map_as_the_standard_unpickler_maps_them(old) -> None:
    """Every entry of the standard library's Python 2 table, against pickle's own
    find_class on a protocol-2 stream."""
    module, name = python3_name(*old)
    try:
        expected = pickle.Unpickler(io.BytesIO(b"\x80\x02.")).find_class(*old)
    except (ImportError, AttributeError):  # a name that no longer exists: ours must not resolve either
        with pytest.raises((ImportError, AttributeError)):
            getattr(importlib.import_module(module), name)
        return
    assert getattr(importlib.import_module(module), name) is expected


def _global_stream(module: str, name: str, protocol: int) -> bytes:
    """A stream that names one global and calls it with no arguments."""
    return b"\x80" + bytes([protocol]) + f"c{module}\n{name}\n".encode() + b")R."


class _Eval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


class _Getattr:
    def __reduce__(self):
        return (getattr, (1, "real"))


class _System:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("payload, protocol, pattern", [
    (_System(), 2, r"refusing to load '(posix|os)\.system'"),
    (_Eval(), 2, r"refusing to load '__builtin__\.eval' \(Python 3: 'builtins\.eval'\)"),
    (_Eval(), 4, r"refusing to load 'builtins\.eval'"),
    (_Getattr(), 2, r"refusing to load '__builtin__\.getattr'"),
], ids=["os.system", "__builtin__.eval", "builtins.eval", "getattr"])
def test_dangerous_globals_are_refused_by_name(tmp_path, payload, protocol, pattern) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": payload}, path, pickle_protocol=protocol)
    with pytest.raises(CheckpointError, match=pattern):
        load_checkpoint(path)


@pytest.mark.parametrize("module, name, protocol, pattern", [
    ("__builtin__", "eval", 2, r"'__builtin__\.eval' \(Python 3: 'builtins\.eval'\)"),
    ("__builtin__", "reduce", 2, r"'__builtin__\.reduce' \(Python 3: 'functools\.reduce'\)"),
    ("__builtin__", "long", 4, r"'__builtin__\.long'"),  # protocol 3+ streams are not translated
])
def test_mapping_never_widens_the_allow_list(module, name, protocol, pattern) -> None:
    unpickler = RestrictedUnpickler(_global_stream(module, name, protocol), storages=None, source="s")
    with pytest.raises(CheckpointError, match=pattern):
        unpickler.load()


def test_python2_long_loads_as_int() -> None:
    assert RestrictedUnpickler(_global_stream("__builtin__", "long", 2), storages=None, source="s").load() == 0


@pytest.fixture(scope="module")
def released_shape(tmp_path_factory):
    """kitti_b3_f32 with random weights in a file shaped like the released checkpoint."""
    torch.manual_seed(7)
    model = OccDepth(load_preset("kitti_b3_f32")).eval()
    path = tmp_path_factory.mktemp("released") / "occdepth.ckpt"
    return save_lightning_checkpoint(path, model.state_dict()), model


def test_released_shape_loads_strictly_and_inspects(released_shape, capsys) -> None:
    path, original = released_shape
    loaded = load_model(path, preset="kitti_b3_f32")
    for (key, a), b in zip(original.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), key
    assert inspect_main(["--checkpoint", str(path), "--preset", "kitti_b3_f32", "--diff"]) == 0
    assert "fits preset 'kitti_b3_f32': 1264 entries" in capsys.readouterr().out
    assert inspect_main(["--checkpoint", str(path)]) == 0
    assert "'backbone_2d_name': 'tf_efficientnet_b3_ns'" in capsys.readouterr().out
    assert inspect_main(["--checkpoint", str(path), "--preset", "compact", "--diff"]) == 1


def test_released_shape_runs_through_occdepth_infer(released_shape, tmp_path, capsys) -> None:
    """One stereo pair at KITTI's raw size through the released architecture (CPU, slow)."""
    from PIL import Image

    path, _ = released_shape
    rng = np.random.default_rng(3)
    left = rng.integers(0, 256, (376, 1241, 3), dtype=np.uint8)
    Image.fromarray(left).save(tmp_path / "l.png")
    Image.fromarray(np.roll(left, -12, axis=1)).save(tmp_path / "r.png")
    out = tmp_path / "out"
    code = infer_main(["--left", str(tmp_path / "l.png"), "--right", str(tmp_path / "r.png"),
                       "--calib", str(config_path("calib", "kitti_odometry_00-02.txt")),
                       "--checkpoint", str(path), "--preset", "kitti_b3_f32", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    labels = np.load(out / "prediction.npy")
    assert labels.shape == (256, 256, 32) and labels.max() < 20
    assert (out / "predictions" / "prediction.label").is_file() and (out / "prediction.png").is_file()
