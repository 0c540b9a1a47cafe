"""StereoInference: input validation, calibration caching and the Prediction contract.

Uses the ``compact`` preset (EfficientNet-B0, 184x608 resized input, 128x128x16 output
grid) with random weights; the network runs forward once per module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from occdepth_ros.geometry.calib import (
    CalibrationError,
    StereoCalibration,
    kitti_calibration,
    load_calibration_file,
    read_kitti_calib,
    write_kitti_calib,
)
from occdepth_ros.inference import InputError, Prediction, StereoInference
from occdepth_ros.model.config import load_preset
from occdepth_ros.model.occdepth import OccDepth
from occdepth_ros.resources import config_path

RAW_HW = (370, 1226)  # KITTI odometry 00-02 image size
COMPACT_HW = (184, 608)


@pytest.fixture(scope="module")
def kitti() -> dict[str, np.ndarray]:
    return read_kitti_calib(config_path("calib", "kitti_odometry_00-02.txt"))


@pytest.fixture(scope="module")
def calibration(kitti: dict[str, np.ndarray]) -> StereoCalibration:
    return kitti_calibration(kitti, RAW_HW)


@pytest.fixture(scope="module")
def model() -> OccDepth:
    torch.manual_seed(0)
    return OccDepth(load_preset("compact"))


@pytest.fixture()
def engine(model: OccDepth) -> StereoInference:
    """A fresh, uncalibrated StereoInference around the shared network."""
    return StereoInference(model)


@pytest.fixture()
def calibrated(engine: StereoInference, calibration: StereoCalibration) -> StereoInference:
    engine.set_calibration(calibration)
    return engine


def rgb(hw: tuple[int, int] = RAW_HW, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def prediction(model: OccDepth, calibration: StereoCalibration) -> tuple[Prediction, StereoInference]:
    eng = StereoInference(model)
    eng.set_calibration(calibration)
    return eng.predict([rgb(seed=1), rgb(seed=2)]), eng


# --- calibration -------------------------------------------------------------------


def test_inference_before_calibration(engine: StereoInference) -> None:
    with pytest.raises(CalibrationError, match=r"set_calibration\(\) must be called before inference"):
        engine.predict([rgb(), rgb()])
    with pytest.raises(CalibrationError, match="no calibration set"):
        engine.seen_mask()
    with pytest.raises(CalibrationError, match="no calibration set"):
        _ = engine.rig_lookup


@pytest.mark.parametrize("n", [1, 3])
def test_wrong_number_of_cameras(engine: StereoInference, kitti: dict[str, np.ndarray], n: int) -> None:
    cal = StereoCalibration(tuple([kitti["P2"], kitti["P3"], kitti["P2"]][:n]),
                            np.vstack([kitti["Tr"], [0, 0, 0, 1]]), RAW_HW)
    with pytest.raises(CalibrationError, match=f"model expects 2 cameras, calibration has {n}"):
        engine.set_calibration(cal)
    with pytest.raises(CalibrationError):  # nothing was half-set
        _ = engine.rig_lookup


def test_grid_behind_the_cameras_is_rejected(calibrated: StereoInference, kitti: dict[str, np.ndarray],
                                             calibration: StereoCalibration) -> None:
    before = calibrated.rig_lookup
    # turn the grid around: velodyne x (forward) -> camera -z, so every voxel is behind both cameras
    flip = np.diag([-1.0, 1.0, -1.0, 1.0])
    cal = StereoCalibration(calibration.projections, flip @ calibration.T_grid_to_ref, RAW_HW)
    with pytest.raises(CalibrationError, match="no voxel of the grid is visible from any camera"):
        calibrated.set_calibration(cal)
    assert calibrated.rig_lookup is before  # the previous calibration stays in force


def test_negative_focal_length_in_kitti_file(engine: StereoInference, kitti: dict[str, np.ndarray],
                                             tmp_path: Path) -> None:
    bad = {k: v.copy() for k, v in kitti.items()}
    bad["P2"][0, 0] = -718.856
    path = tmp_path / "calib.txt"
    write_kitti_calib(path, bad)
    with pytest.raises(CalibrationError, match="P2: focal lengths must be positive"):
        load_calibration_file(path, RAW_HW)  # rejected when the file is read


def test_calibration_caching(engine: StereoInference, kitti: dict[str, np.ndarray]) -> None:
    first = engine.set_calibration(kitti_calibration(kitti, RAW_HW))
    # an equal calibration built from fresh arrays: same lookup object, no rebuild
    again = engine.set_calibration(kitti_calibration({k: v.copy() for k, v in kitti.items()}, RAW_HW))
    assert again is first and engine.rig_lookup is first
    # a different calibration (P3's baseline column moved 1 px) rebuilds
    moved = {k: v.copy() for k, v in kitti.items()}
    moved["P3"][0, 3] -= 1.0
    other = engine.set_calibration(kitti_calibration(moved, RAW_HW))
    assert other is not first and engine.rig_lookup is other
    assert not np.array_equal(other.depth_coords[1], first.depth_coords[1])
    np.testing.assert_array_equal(other.depth_coords[0], first.depth_coords[0])  # left view unchanged
    # a different image size also rebuilds, and the images must follow it
    bigger = engine.set_calibration(kitti_calibration(kitti, (376, 1241)))
    assert bigger is not other
    with pytest.raises(InputError, match="images are 1226x370 but the calibration is for 1241x376"):
        engine.prepare([rgb(), rgb()])
    # and going back to the first calibration builds again (only the latest is cached)
    back = engine.set_calibration(kitti_calibration(kitti, RAW_HW))
    assert back is not first
    np.testing.assert_array_equal(back.pixel_index, first.pixel_index)


def test_lookup_uses_resized_intrinsics(calibrated: StereoInference, kitti: dict[str, np.ndarray]) -> None:
    """compact resizes 1226x370 -> 608x184: the scale-1 index of a voxel is the rounded
    resized coordinate (u + 0.5)*608/1226 - 0.5 of its raw KITTI projection."""
    lk = calibrated.rig_lookup
    assert lk.feature_sizes == ((184, 608), (92, 304), (46, 152), (23, 76))
    assert lk.depth_volume == (52, 23, 76)  # (54 - 2)/1.0 bins at 1/8 of 184x608
    Tr = np.vstack([kitti["Tr"], [0, 0, 0, 1]])
    dims = (64, 64, 8)  # feature grid of 0.8 m voxels; centre = (0.4, -25.2, -1.6) + 0.8*idx
    cases = {
        # (12, 32, 2) = (10.0, 0.4, 0.0): P2 -> (581.452, 176.034) -> (288.102, 87.290) -> (288, 87)
        #                                 P3 -> (541.984, 176.269) -> (268.530, 87.407) -> (269, 87)
        (12, 32, 2): [(288, 87), (269, 87)],
        # (40, 20, 5) = (32.4, -9.2, 2.4): P2 -> (814.234, 123.319) -> (403.544, 61.075) -> (404, 61)
        #                                  P3 -> (802.280, 123.392) -> (397.616, 61.111) -> (398, 61)
        (40, 20, 5): [(404, 61), (398, 61)],
    }
    for idx, expected in cases.items():
        n = (idx[0] * dims[1] + idx[1]) * dims[2] + idx[2]
        X = np.array([0.4 + 0.8 * idx[0], -25.2 + 0.8 * idx[1], -1.6 + 0.8 * idx[2], 1.0])
        for v_, key in enumerate(("P2", "P3")):
            h = kitti[key] @ Tr @ X
            u = (h[0] / h[2] + 0.5) * 608 / 1226 - 0.5
            v = (h[1] / h[2] + 0.5) * 184 / 370 - 0.5
            assert (round(u), round(v)) == expected[v_]
            assert lk.pixel_index[v_, 0, n] == expected[v_][1] * 608 + expected[v_][0]
            assert lk.pixel_index[v_, 3, n] == (expected[v_][1] // 8) * 76 + expected[v_][0] // 8


# --- images -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right", "needle"),
    [
        (rgb().astype(np.float32), rgb(), "left: expected uint8 pixels, got float32"),
        (rgb(), rgb().astype(np.uint16), "right: expected uint8 pixels, got uint16"),
        (rgb()[..., 0], rgb(), r"left: expected an \(H, W, 3\) RGB image, got shape \(370, 1226\)"),
        (rgb(), np.concatenate([rgb(), rgb()[..., :1]], axis=2),
         r"right: expected an \(H, W, 3\) RGB image, got shape \(370, 1226, 4\)"),
        ([[[0, 0, 0]]], rgb(), "left: expected a numpy array, got list"),
        (rgb((1, 1226)), rgb((1, 1226)), "left: image 1226x1 is too small"),
        (rgb(), rgb((370, 1220)), "stereo images differ in size: 1226x370, 1220x370"),
        (rgb((376, 1241)), rgb((376, 1241)), "images are 1241x376 but the calibration is for 1226x370"),
        (rgb((370, 1220)), rgb((370, 1220)), "images are 1220x370 but the calibration is for 1226x370"),
    ],
)
def test_invalid_images(calibrated: StereoInference, left, right, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        calibrated.prepare([left, right])
    with pytest.raises(InputError, match=needle):  # predict validates before running the network
        calibrated.predict([left, right])


def test_wrong_number_of_images(calibrated: StereoInference) -> None:
    with pytest.raises(InputError, match="expected 2 images, got 1"):
        calibrated.prepare([rgb()])
    with pytest.raises(InputError, match="expected 2 images, got 3"):
        calibrated.prepare([rgb(), rgb(), rgb()])


def test_input_errors_are_value_errors() -> None:
    # callers (the CLI, the ROS node) may catch ValueError for every bad input
    assert issubclass(InputError, ValueError) and issubclass(CalibrationError, ValueError)


def test_prepare_valid_pair(calibrated: StereoInference) -> None:
    left, right = rgb(seed=3), rgb(seed=4)
    grey = np.full(RAW_HW + (3,), 124, np.uint8)  # ≈ ImageNet mean*255 = (123.7, 116.3, 103.5)
    x = calibrated.prepare([left, grey])
    assert x.shape == (1, 2, 3, *COMPACT_HW) and x.dtype == torch.float32
    # a constant image stays constant: (124 - 0.485*255)/(0.229*255) = 0.3 / 58.395 = 0.0051 etc.
    np.testing.assert_allclose(x[0, 1, :, 50, 50].numpy(),
                               [(124 - 123.675) / 58.395, (124 - 116.28) / 57.12, (124 - 103.53) / 57.375],
                               atol=1e-4)
    # non-contiguous views (BGR -> RGB flips) are accepted and give the same tensor as a copy
    bgr = np.ascontiguousarray(right[..., ::-1])
    x2 = calibrated.prepare([left, bgr[..., ::-1]])
    x3 = calibrated.prepare([left, right])
    torch.testing.assert_close(x2, x3, rtol=0, atol=0)


# --- prediction ------------------------------------------------------------------------


def test_prediction_contract(prediction: tuple[Prediction, StereoInference]) -> None:
    pred, eng = prediction
    grid = eng.cfg.grid.dims
    assert grid == (128, 128, 16)
    assert pred.labels.shape == grid and pred.labels.dtype == np.uint8
    assert pred.labels.max() < eng.cfg.n_classes
    assert pred.confidence.shape == grid and pred.confidence.dtype == np.float32
    assert np.isfinite(pred.confidence).all()
    # the max of a 20-way softmax lies in [1/20, 1]
    assert pred.confidence.min() >= 1.0 / eng.cfg.n_classes - 1e-6 and pred.confidence.max() <= 1.0
    assert pred.seen.shape == grid and pred.seen.dtype == np.bool_


def test_prediction_seen_is_fov_upsampled(prediction: tuple[Prediction, StereoInference]) -> None:
    pred, eng = prediction
    lk = eng.rig_lookup
    feat = (lk.pixel_index[:, 0] >= 0).any(axis=0).reshape(64, 64, 8)  # union of both views' FOV
    # output voxel (i, j, k) lies in feature voxel (i//2, j//2, k//2)
    i, j, k = np.meshgrid(np.arange(128), np.arange(128), np.arange(16), indexing="ij")
    np.testing.assert_array_equal(pred.seen, feat[i // 2, j // 2, k // 2])
    assert 0.3 < pred.seen.mean() < 0.95  # a frustum, neither empty nor everything
    # first feature slice: centre x = 0.4 m, z_cam = 0.4 - 0.288 = 0.11 m, so any lateral offset
    # of >= 0.35 m lands > 2000 px off-centre; the second (x = 1.2 m) is partly seen
    assert not pred.seen[:2].any() and pred.seen[2:4].any()
    # output voxels are 0.4 m: x 11.2-12.8 m, y -0.8..0.8 m, z -0.4..1.2 m is straight ahead
    assert pred.seen[28:32, 62:66, 4:8].all()
    np.testing.assert_array_equal(eng.seen_mask(), pred.seen)


def test_warm_up_runs_and_leaves_predictions_unchanged(engine: StereoInference, kitti: dict[str, np.ndarray]) -> None:
    engine.set_calibration(kitti_calibration(kitti, RAW_HW))
    rng = np.random.default_rng(5)
    left = rng.integers(0, 256, (*RAW_HW, 3), dtype=np.uint8)
    before = engine.predict([left, left]).labels
    assert engine.warm_up() > 0
    np.testing.assert_array_equal(engine.predict([left, left]).labels, before)


def test_postprocess_against_float64_softmax(calibrated: StereoInference) -> None:
    """Labels and confidence from logits, against a float64 NumPy softmax; without the
    confidence the labels are the same and no softmax is computed."""
    rng = np.random.default_rng(4)
    logits = torch.from_numpy(rng.normal(0, 3, (1, 20, 6, 5, 4)).astype(np.float32))
    x = logits[0].double().numpy()
    prob = np.exp(x - x.max(0)) / np.exp(x - x.max(0)).sum(0)
    calibrated.seen_mask = lambda: np.ones((6, 5, 4), bool)  # the grid here is not the model's
    pred = calibrated.postprocess(logits, with_confidence=True)
    np.testing.assert_array_equal(pred.labels, prob.argmax(0))
    np.testing.assert_allclose(pred.confidence, prob.max(0), rtol=1e-5)
    bare = calibrated.postprocess(logits, with_confidence=False)
    assert bare.confidence is None
    np.testing.assert_array_equal(bare.labels, pred.labels)
    # a backend may hand over a permuted view (ONNX Runtime's CPU layout): same results,
    # as C-ordered arrays
    stored = logits.permute(0, 1, 4, 2, 3).contiguous()  # (1, K, Z, X, Y) in memory
    view = stored.permute(0, 1, 3, 4, 2)
    assert torch.equal(view, logits) and not view.is_contiguous()
    permuted = calibrated.postprocess(view, with_confidence=True)
    np.testing.assert_array_equal(permuted.labels, pred.labels)
    np.testing.assert_array_equal(permuted.confidence, pred.confidence)
    assert permuted.labels.flags.c_contiguous and permuted.confidence.flags.c_contiguous
    # class-last (OpenVINO's layout: the class axis innermost in memory), with ties that
    # must go to the lower class as in argmax
    tied = logits.clone()
    tied[0, 7] = tied[0, 3] = tied[0].max(0).values + 1  # classes 3 and 7 tie for the top everywhere
    class_last = tied.permute(0, 2, 3, 4, 1).contiguous().permute(0, 4, 1, 2, 3)
    assert torch.equal(class_last, tied) and class_last.stride(1) == 1
    for given in (class_last, logits.permute(0, 2, 3, 4, 1).contiguous().permute(0, 4, 1, 2, 3)):
        want = np.argmax(given[0].double().numpy(), axis=0)  # NumPy: the first maximal index
        got = calibrated.postprocess(given, with_confidence=True)
        np.testing.assert_array_equal(got.labels, want)
        assert got.labels.flags.c_contiguous and got.confidence.flags.c_contiguous
    assert (calibrated.postprocess(class_last, with_confidence=False).labels == 3).all()
    np.testing.assert_array_equal(got.confidence, pred.confidence)  # the last given is logits' values
