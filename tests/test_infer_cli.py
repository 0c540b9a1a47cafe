"""occdepth-infer end to end on the compact preset: files written, labels consistent
with the library call, benchmark .label round trip, clear errors with exit code 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from occdepth_ros.checkpoint import load_model, save_checkpoint
from occdepth_ros.cli.infer import main as infer_main, to_benchmark_grid
from occdepth_ros.classes import load_class_set
from occdepth_ros.data.semantic_kitti import read_label
from occdepth_ros.geometry.calib import load_calibration_file
from occdepth_ros.inference import StereoInference
from occdepth_ros.model import OccDepth, load_preset
from occdepth_ros.model.config import GridConfig
from occdepth_ros.resources import config_path

RAW_HW = (376, 1241)
CALIB = config_path("calib", "kitti_odometry_00-02.txt")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    rng = np.random.default_rng(3)
    left = rng.integers(0, 256, (*RAW_HW, 3), dtype=np.uint8)
    right = np.roll(left, -12, axis=1)
    Image.fromarray(left).save(d / "l.png")
    Image.fromarray(right).save(d / "r.png")
    return d, left, right


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("ckpt") / "compact.safetensors"
    return save_checkpoint(path, OccDepth(load_preset("compact")))


def test_cli_writes_labels_label_file_and_picture(tmp_path, pair, checkpoint, capsys) -> None:
    d, left, right = pair
    out = tmp_path / "out"
    code = infer_main(["--left", str(d / "l.png"), "--right", str(d / "r.png"), "--calib", str(CALIB),
                       "--checkpoint", str(checkpoint), "--out", str(out)])
    assert code == 0
    labels = np.load(out / "prediction.npy")
    assert labels.shape == (128, 128, 16) and labels.dtype == np.uint8

    engine = StereoInference(load_model(checkpoint))
    engine.set_calibration(load_calibration_file(CALIB, RAW_HW))
    np.testing.assert_array_equal(engine.predict([left, right]).labels, labels)

    classes = load_class_set()
    # the .label in a predictions/ folder of its own: nothing beside it a validator would refuse
    assert sorted(p.name for p in out.iterdir()) == ["prediction.npy", "prediction.png", "predictions"]
    assert [p.name for p in (out / "predictions").iterdir()] == ["prediction.label"]
    raw = read_label(out / "predictions" / "prediction.label")  # 256x256x32 uint16 raw SemanticKITTI ids
    back = classes.remap_lut()[raw]
    np.testing.assert_array_equal(back[::2, ::2, ::2], labels)
    np.testing.assert_array_equal(back[1::2, 1::2, 1::2], labels)
    with Image.open(out / "prediction.png") as im:
        assert im.width > 500 and im.height > 500
    assert "inference" in capsys.readouterr().out


def test_benchmark_grid_only_for_the_same_volume() -> None:
    labels = np.arange(8, dtype=np.uint8).reshape(2, 2, 2)
    assert to_benchmark_grid(labels, GridConfig(dims=(2, 2, 2), voxel_size=0.2)) is None  # other volume
    coarse = np.ones((128, 128, 16), dtype=np.uint8)
    assert to_benchmark_grid(coarse, GridConfig(dims=(128, 128, 16), voxel_size=0.4)).shape == (256, 256, 32)
    assert to_benchmark_grid(coarse[:, :, :8], GridConfig(origin=(0, -25.6, 1.2), dims=(128, 128, 8),
                                                          voxel_size=0.4)) is None


def test_no_label_is_never_silent(tmp_path, pair, capsys) -> None:
    """A model whose grid is off the benchmark volume gets its .npy and picture, and a
    line naming the grid instead of a .label."""
    import dataclasses

    d, _, _ = pair
    cfg = load_preset("compact")
    cfg = dataclasses.replace(cfg, grid=dataclasses.replace(cfg.grid, origin=(0.0, -25.6, -1.6)))
    torch.manual_seed(2)
    ckpt = save_checkpoint(tmp_path / "shifted.safetensors", OccDepth(cfg))
    out = tmp_path / "out"
    assert infer_main(["--left", str(d / "l.png"), "--right", str(d / "r.png"), "--calib", str(CALIB),
                       "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "no .label written: model grid 128x128x16 of 0.4 m voxels from origin (0.0, -25.6, -1.6)" in err
    assert sorted(p.name for p in out.iterdir()) == ["prediction.npy", "prediction.png"]


@pytest.mark.parametrize("problem", ["size_mismatch", "missing_calib", "not_an_image", "bad_checkpoint"])
def test_cli_errors_exit_2_with_a_reason(tmp_path, pair, checkpoint, capsys, problem) -> None:
    d, left, _ = pair
    args = {"--left": str(d / "l.png"), "--right": str(d / "r.png"), "--calib": str(CALIB),
            "--checkpoint": str(checkpoint), "--out": str(tmp_path / "o")}
    if problem == "size_mismatch":
        Image.fromarray(left[:300]).save(tmp_path / "small.png")
        args["--right"], needle = str(tmp_path / "small.png"), "stereo images differ in size"
    elif problem == "missing_calib":
        args["--calib"], needle = str(tmp_path / "nope.txt"), "calibration file not found"
    elif problem == "not_an_image":
        (tmp_path / "x.png").write_bytes(b"\x89PNG garbage")
        args["--left"], needle = str(tmp_path / "x.png"), "cannot read image"
    else:
        (tmp_path / "m.safetensors").write_bytes(b"\x00" * 64)
        args["--checkpoint"], needle = str(tmp_path / "m.safetensors"), "cannot read safetensors"
    assert infer_main([x for kv in args.items() for x in kv]) == 2
    assert needle in capsys.readouterr().err
