"""occdepth-predict: a model over whole sequences into a SemanticKITTI submission that the
benchmark's validator rules accept (tests/helpers/semantic_kitti_submission.py), each
frame predicted with its own sequence's calibration and image size; clear errors."""

from __future__ import annotations

import contextlib
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.semantic_kitti_submission import TEST_SEQUENCES, SubmissionRejected, check_completion_zip
from helpers.tiny_model import save_tiny_model

from occdepth_ros.checkpoint import load_model
from occdepth_ros.cli.predict import main as predict_main
from occdepth_ros.classes import load_class_set
from occdepth_ros.data.images import read_rgb
from occdepth_ros.data.kitti_odometry import KittiSequence
from occdepth_ros.data.semantic_kitti import SEMANTIC_KITTI_GRID, read_label, target_to_raw
from occdepth_ros.data.synth.cli import main as synth_main
from occdepth_ros.geometry.calib import kitti_calibration
from occdepth_ros.inference import StereoInference

# KITTI odometry's three image sizes (1226x370, 1241x376, 1242x375) scaled by 1/6, (H, W),
# spread over the test sequences; each synthetic sequence gets the calib.txt of its size.
SIZES = {(62, 204): TEST_SEQUENCES[:2], (63, 207): TEST_SEQUENCES[2:7], (62, 207): TEST_SEQUENCES[7:]}
LABEL_BYTES = 2 * int(np.prod(SEMANTIC_KITTI_GRID))


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = predict_main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny.safetensors")


@pytest.fixture(scope="module")
def test_split(tmp_path_factory) -> Path:
    """Sequences 11-21 laid out as the benchmark's test set: two frames each, voxels/ holds
    only the input scan (.bin) of frame 000000 (the hidden labels are not shipped)."""
    root = tmp_path_factory.mktemp("test_split")
    for (h, w), seqs in SIZES.items():
        assert synth_main(["--out", str(root), "--sequences", *seqs, "--frames", "2", "--seed", "3",
                           "--voxel-every", "2", "--image-size", str(h), str(w)]) == 0
    for path in root.glob("sequences/*/voxels/*"):
        if path.suffix != ".bin":
            path.unlink()
    return root


@pytest.fixture(scope="module")
def submission(test_split, tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("submission") / "out"
    code, stdout, stderr = run(["--data", str(test_split), "--split", "test", "--checkpoint", str(tiny),
                                "--out", str(out), "--zip"])
    assert code == 0, stderr
    return out, stdout, stderr


def test_the_zip_passes_the_benchmark_validator_rules(submission, test_split) -> None:
    out, stdout, stderr = submission
    labels = check_completion_zip(out / "submission.zip", test_split)
    assert len(labels) == len(TEST_SEQUENCES)  # one scored frame per sequence
    inverse = set(load_class_set().learning_map_inv.values())
    with zipfile.ZipFile(out / "submission.zip") as zf:
        for name in labels:
            data = zf.read(name)
            assert len(data) == LABEL_BYTES
            assert set(np.unique(np.frombuffer(data, dtype="<u2")).tolist()) <= inverse, name
            assert data == (out / name).read_bytes()
    assert "loaded once" in stdout and "frames" in stdout
    assert "occdepth-predict" in stderr and f"{len(TEST_SEQUENCES)}/{len(TEST_SEQUENCES)}" in stderr  # progress


def test_the_tree_holds_the_benchmark_layout_and_nothing_else(submission) -> None:
    out, _, _ = submission
    files = sorted(p.relative_to(out).as_posix() for p in (out / "sequences").rglob("*") if p.is_file())
    assert files == [f"sequences/{s}/predictions/000000.label" for s in TEST_SEQUENCES]  # 000001 has no voxels
    assert sorted(p.name for p in out.iterdir()) == ["sequences", "submission.zip"]  # no .npy, no pictures


def test_each_frame_uses_its_own_sequences_calibration_and_image_size(submission, test_split, tiny) -> None:
    out, _, _ = submission
    classes = load_class_set()
    engine = StereoInference(load_model(tiny))
    seen_sizes, seen_calibs = set(), set()
    for size, seqs in SIZES.items():
        seq = KittiSequence(test_split, seqs[-1])
        left, right = (read_rgb(p) for p in seq.image_paths("000000"))
        assert left.shape[:2] == size
        calib = kitti_calibration(seq.calib(), size)
        seen_sizes.add(size)
        seen_calibs.add(calib.projections[0].tobytes())
        engine.set_calibration(calib)
        labels = engine.predict([left, right], with_confidence=False).labels
        expected = target_to_raw(labels.repeat(4, 0).repeat(4, 1).repeat(4, 2), classes)
        written = read_label(out / "sequences" / seq.sequence / "predictions" / "000000.label")
        np.testing.assert_array_equal(written, expected)
    assert len(seen_sizes) == len(seen_calibs) == 3  # three sizes, three different calibrations


def _zip_variant(good: Path, bad: Path, drop=(), add=(), replace=None, directories=True) -> Path:
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            if info.filename in drop or (not directories and info.filename.endswith("/")):
                continue
            data = src.read(info) if not replace or info.filename != replace[0] else replace[1]
            dst.writestr(info.filename, data)
        for name, data in add:
            dst.writestr(name, data)
    return bad


@pytest.mark.parametrize("change, needle", [
    ({"add": [("sequences/11/predictions/000000.npy", b"x")]}, "unneeded predictions"),  # occdepth-infer's .npy
    ({"add": [("sequences/11/predictions/000001.label", b"\0" * LABEL_BYTES)]}, "unneeded predictions"),
    ({"add": [("description.txt", b"tiny model")]}, None),  # the one optional extra
    ({"drop": ["sequences/21/predictions/000000.label"]}, "000000.label\" is missing"),
    ({"replace": ("sequences/12/predictions/000000.label", b"\0" * (LABEL_BYTES // 2))}, "should have 2097152"),
    ({"directories": False}, 'directory "sequences/" missing'),
    ({"drop": ["sequences/15/predictions/"]}, 'directory "sequences/15/predictions/" missing'),
])
def test_the_rules_refuse_what_the_validator_refuses(submission, test_split, tmp_path, change, needle) -> None:
    """The written-down rules are only worth checking against if they fail where the
    validator fails: each broken submission here is one the validator rejects."""
    out, _, _ = submission
    bad = _zip_variant(out / "submission.zip", tmp_path / "bad.zip", **change)
    if needle is None:
        check_completion_zip(bad, test_split)
        return
    with pytest.raises(SubmissionRejected, match=needle):
        check_completion_zip(bad, test_split)


def test_the_rules_refuse_a_bundle_not_named_zip(submission, test_split, tmp_path) -> None:
    out, _, _ = submission
    with pytest.raises(SubmissionRejected, match="must end with"):
        check_completion_zip(shutil.copy(out / "submission.zip", tmp_path / "submission.zip.part"), test_split)


def test_extras_only_when_asked_and_outside_the_tree(test_split, tiny, tmp_path) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run(["--data", str(test_split), "--sequences", "11", "--checkpoint", str(tiny),
                                "--out", str(out), "--npy", "--png"])
    assert code == 0, stderr
    assert sorted(p.name for p in (out / "extras" / "11").iterdir()) == ["000000.npy", "000000.png"]
    labels = np.load(out / "extras" / "11" / "000000.npy")
    assert labels.shape == (64, 64, 8)
    raw = read_label(out / "sequences" / "11" / "predictions" / "000000.label")
    np.testing.assert_array_equal(raw[::4, ::4, ::4], target_to_raw(labels, load_class_set()))
    assert [p.name for p in (out / "sequences" / "11" / "predictions").iterdir()] == ["000000.label"]
    code, _, stderr = run(["--data", str(test_split), "--sequences", "11", "--checkpoint", str(tiny),
                           "--out", str(out), "--npy", "--extras", str(out / "sequences" / "x")])
    assert code == 2 and "inside the submission tree" in stderr


def test_all_frames_and_a_sequence_without_voxels(test_split, tiny, tmp_path) -> None:
    root = tmp_path / "root"
    shutil.copytree(test_split / "sequences" / "13", root / "sequences" / "13", ignore=shutil.ignore_patterns("voxels"))
    args = ["--data", str(root), "--sequences", "13", "--checkpoint", str(tiny), "--out", str(tmp_path / "o")]
    code, _, stderr = run(args)
    assert code == 2 and "voxels: no voxel files" in stderr and "--all-frames" in stderr
    code, _, stderr = run(args + ["--all-frames"])
    assert code == 0, stderr
    assert sorted(p.name for p in (tmp_path / "o" / "sequences" / "13" / "predictions").iterdir()) == [
        "000000.label", "000001.label"]


def test_a_frame_that_cannot_be_predicted_is_named(test_split, tiny, tmp_path) -> None:
    from PIL import Image

    root = tmp_path / "root"
    shutil.copytree(test_split / "sequences" / "12", root / "sequences" / "12")
    right = root / "sequences" / "12" / "image_3" / "000000.png"
    Image.fromarray(read_rgb(right)[:-2]).save(right)  # two rows short of the left image
    code, _, stderr = run(["--data", str(root), "--sequences", "12", "--checkpoint", str(tiny),
                           "--out", str(tmp_path / "o")])
    assert code == 2 and "sequence 12 frame 000000: stereo images differ in size" in stderr


def test_a_model_grid_off_the_benchmark_grid_is_an_error_naming_it(test_split, tmp_path) -> None:
    off = save_tiny_model(tmp_path / "off.safetensors", origin=(0.0, -25.6, -1.0))
    code, _, stderr = run(["--data", str(test_split), "--sequences", "11", "--checkpoint", str(off),
                           "--out", str(tmp_path / "o")])
    assert code == 2
    assert "model grid 64x64x8 of 0.8 m voxels from origin (0.0, -25.6, -1.0) does not map" in stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("stray, needle", [
    ("sequences/11/predictions/000005.label", "would not write, e.g."),  # a stale frame of an earlier run
    ("sequences/11/000000.npy", "not predictions, e.g."),  # what occdepth-infer once put beside labels
])
def test_files_that_would_spoil_the_submission_are_refused(test_split, tiny, tmp_path, stray, needle) -> None:
    out = tmp_path / "o"
    (out / stray).parent.mkdir(parents=True)
    (out / stray).write_bytes(b"")
    code, _, stderr = run(["--data", str(test_split), "--sequences", "11", "--checkpoint", str(tiny),
                           "--out", str(out)])
    assert code == 2 and needle in stderr and stray.split("/")[-1] in stderr
    assert not (out / "sequences" / "11" / "predictions" / "000000.label").exists()  # refused before inference


def test_zip_name_must_end_in_zip(test_split, tiny, tmp_path) -> None:
    code, _, stderr = run(["--data", str(test_split), "--sequences", "11", "--checkpoint", str(tiny),
                           "--out", str(tmp_path / "o"), "--zip", str(tmp_path / "sub.tar")])
    assert code == 2 and "must end with .zip" in stderr
    assert not (tmp_path / "o").exists()  # refused before any inference


def test_onnx_model_through_onnxruntime(test_split, tiny, tmp_path) -> None:
    """The exported model run by ONNX Runtime writes what eager torch writes."""
    from occdepth_export.onnx_export import export_onnx

    onnx_path = tmp_path / "tiny.onnx"
    export_onnx(load_model(tiny), onnx_path, source=str(tiny))
    seqs = ["11", "13"]  # two image sizes
    for backend, model, out in (("torch", tiny, "t"), ("onnxruntime", onnx_path, "o")):
        code, stdout, stderr = run(["--data", str(test_split), "--sequences", *seqs, "--checkpoint", str(model),
                                    "--backend", backend, "--out", str(tmp_path / out)])
        assert code == 0, stderr
        assert f"({backend})" in stdout
    for seq in seqs:
        rel = Path("sequences") / seq / "predictions" / "000000.label"
        a, b = read_label(tmp_path / "t" / rel), read_label(tmp_path / "o" / rel)
        assert np.mean(a == b) > 0.999, seq  # float32 kernels differ; labels flip only at near-ties


def test_engine_needs_tensorrt_on_a_gpu(test_split, tmp_path) -> None:
    engine = tmp_path / "tiny.engine"
    engine.write_bytes(b"not an engine")
    code, _, stderr = run(["--data", str(test_split), "--sequences", "11", "--checkpoint", str(engine),
                           "--backend", "onnxruntime", "--out", str(tmp_path / "o")])
    assert code == 2 and "TensorRT engine; use backend 'tensorrt'" in stderr


def test_released_lightning_checkpoint_format(test_split, tmp_path) -> None:
    """A Lightning .ckpt as the official release is shaped (here with the compact
    architecture's weights, named by --preset) predicts what the same weights predict."""
    from helpers.lightning_checkpoint import save_lightning_checkpoint

    from occdepth_ros.checkpoint import save_checkpoint
    from occdepth_ros.model import OccDepth, load_preset

    torch.manual_seed(5)
    model = OccDepth(load_preset("compact")).eval()
    ckpt = save_lightning_checkpoint(tmp_path / "occdepth.ckpt", model.state_dict())
    same = save_checkpoint(tmp_path / "same.safetensors", model)
    for name, args in (("l", ["--checkpoint", str(ckpt), "--preset", "compact"]), ("s", ["--checkpoint", str(same)])):
        code, _, stderr = run(["--data", str(test_split), "--sequences", "18", "--out", str(tmp_path / name), *args])
        assert code == 0, stderr
    rel = Path("sequences") / "18" / "predictions" / "000000.label"
    assert (tmp_path / "l" / rel).read_bytes() == (tmp_path / "s" / rel).read_bytes()
