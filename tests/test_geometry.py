"""Geometry: KITTI calibration, image fitting, voxel centres and the lift lookups.

Every expected value is computed here by an independent route (closed forms, P @ Tr
instead of K @ T, explicit loops) or written out by hand from the shipped KITTI
odometry calibration (sequences 00-02), never by calling the helper under test twice.

Shipped numbers used in the hand arithmetic below (config/calib/kitti_odometry_00-02.txt):

    fx = fy = 718.856, cx = 607.1928, cy = 185.2157            (P2 and P3 share K)
    P2[:, 3] = (45.38225, -0.1130887, 0.003779761)
    P3[:, 3] = (-337.2877, 2.369057, 0.004915215)
    Tr[:, 0] = (0.0004276802, -0.0072106265, 0.9999738646)     (velodyne x axis in cam0)
    Tr[:, 3] = (-0.0119845993, -0.0540398473, -0.2921968649)
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from occdepth_ros.geometry.calib import (
    GRID_TO_OPTICAL,
    CalibrationError,
    StereoCalibration,
    StereoRig,
    kitti_calibration,
    kitti_stereo_rig,
    load_calibration_file,
    parse_kitti_calib,
    read_kitti_calib,
    rig_from_projections,
    stereo_calibration_from_yaml,
)
from occdepth_ros.geometry.image_fit import ImageFit
from occdepth_ros.geometry.lookups import (
    OUTSIDE,
    feature_size,
    lid_bin_index,
)
from occdepth_ros.geometry.voxels import official_voxel_centres, voxel_indices
from occdepth_ros.model.config import ImageConfig, ModelConfig, load_preset
from occdepth_ros.model.lift_lookup import build_lift_lookup
from occdepth_ros.resources import config_path

KITTI_RAW_HW = (370, 1226)  # raw image_2 / image_3 size of sequences 00-02
NET_HW = (370, 1220)  # the released model's input (top-left crop)

FX = 718.856
CX = 607.1928
CY = 185.2157


# --- fixtures -----------------------------------------------------------------


@pytest.fixture(scope="module")
def kitti_calib_path() -> Path:
    return config_path("calib", "kitti_odometry_00-02.txt")


@pytest.fixture(scope="module")
def calib(kitti_calib_path: Path) -> dict[str, np.ndarray]:
    return read_kitti_calib(kitti_calib_path)


@pytest.fixture(scope="module")
def Tr4(calib: dict[str, np.ndarray]) -> np.ndarray:
    return np.vstack([calib["Tr"], [0.0, 0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def rig(calib: dict[str, np.ndarray]) -> StereoRig:
    return kitti_stereo_rig(calib, NET_HW)


@pytest.fixture(scope="module")
def b3_cfg() -> ModelConfig:
    return load_preset("kitti_b3_f32")


@pytest.fixture(scope="module")
def b3_lookup(rig: StereoRig, b3_cfg: ModelConfig):
    return build_lift_lookup(rig, b3_cfg)


def closed_form_T(P: np.ndarray, Tr4: np.ndarray) -> np.ndarray:
    """inv(K) @ P @ Tr for P = [K | p] with K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]].

    inv(K) @ [K | p] = [I | inv(K) p] and, back-substituting the triangular system,
        t_z = p34,  t_y = (p24 - cy*p34)/fy,  t_x = (p14 - cx*p34)/fx,
    so T = [[R_Tr, t_Tr + t], [0, 1]] (the rotation is Tr's, untouched).
    """
    fx, cx, fy, cy = P[0, 0], P[0, 2], P[1, 1], P[1, 2]
    p14, p24, p34 = P[:, 3]
    t = np.array([(p14 - cx * p34) / fx, (p24 - cy * p34) / fy, p34])
    T = Tr4.copy()
    T[:3, 3] += t
    return T


def official_centre(origin, idx: tuple[int, int, int], size: float) -> np.ndarray:
    """One voxel centre the way vox2world does it: float32 origin, float64 arithmetic,
    float32 result (scalar Python floats are float64)."""
    out = []
    for o, i in zip(origin, idx):
        o32 = float(np.float32(o))
        out.append(float(np.float32(o32 + size * float(i) + size * 0.5)))
    return np.array(out)


def hand_pixel(T: np.ndarray, K: np.ndarray, centre: np.ndarray) -> tuple[float, float, float]:
    """(u, v, z) of the spec's pixel lookup, unrounded: float32-rounded fx, fy, cx, cy."""
    x, y, z = (T @ np.append(centre, 1.0))[:3]
    fx, fy, cx, cy = (float(np.float32(K[i, j])) for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))
    return x * fx / z + cx, y * fy / z + cy, z


def flat(idx: tuple[int, int, int], dims: tuple[int, int, int]) -> int:
    return (idx[0] * dims[1] + idx[1]) * dims[2] + idx[2]


# --- KITTI calib.txt -> rig ----------------------------------------------------


def test_parse_shipped_calibration(calib: dict[str, np.ndarray]) -> None:
    assert set(calib) == {"P0", "P1", "P2", "P3", "Tr"}
    for m in calib.values():
        assert m.shape == (3, 4) and m.dtype == np.float64
    assert calib["P2"][0, 0] == FX and calib["P2"][0, 2] == CX and calib["P2"][1, 2] == CY
    assert calib["P3"][0, 3] == -337.2877
    assert calib["Tr"][2, 3] == pytest.approx(-0.2921968648686, abs=1e-15)


def test_rig_T_matches_closed_form(calib: dict[str, np.ndarray], Tr4: np.ndarray, rig: StereoRig) -> None:
    assert rig.n_views == 2 and rig.image_size == NET_HW
    for cam, key in zip(rig.cameras, ("P2", "P3")):
        P = calib[key]
        np.testing.assert_array_equal(cam.K, P[:, :3])  # K unchanged
        assert cam.T_grid_to_cam.shape == (4, 4)
        np.testing.assert_allclose(cam.T_grid_to_cam, closed_form_T(P, Tr4), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(cam.T_grid_to_cam[3], [0, 0, 0, 1])

    # P2: t_x = (45.38225 - 607.1928*0.003779761)/718.856 = (45.38225 - 2.2950437)/718.856
    #         = 43.0872063/718.856 = 0.0599386
    #     t_y = (-0.1130887 - 185.2157*0.003779761)/718.856 = -0.8131598/718.856 = -0.0011312
    #     T[:3, 3] = Tr[:, 3] + t = (-0.0119846 + 0.0599386, -0.0540398 - 0.0011312,
    #                               -0.2921969 + 0.0037798) = (0.0479540, -0.0551710, -0.2884171)
    np.testing.assert_allclose(rig.cameras[0].T_grid_to_cam[:3, 3], [0.0479540, -0.0551710, -0.2884171], atol=2e-7)
    # P3: t_x = (-337.2877 - 607.1928*0.004915215)/718.856 = -340.2721838/718.856 = -0.4733524
    #     t_y = (2.369057 - 185.2157*0.004915215)/718.856 = 1.4586822/718.856 = 0.0020292
    #     T[:3, 3] = (-0.0119846 - 0.4733524, -0.0540398 + 0.0020292, -0.2921969 + 0.0049152)
    #              = (-0.4853370, -0.0520106, -0.2872817)
    np.testing.assert_allclose(rig.cameras[1].T_grid_to_cam[:3, 3], [-0.4853370, -0.0520107, -0.2872817], atol=2e-7)


def test_baseline_from_P_columns(rig: StereoRig) -> None:
    # Both cameras carry Tr's rotation, so |c2 - c3| = |t2 - t3| with the t of the test above:
    #   dx = 0.0599386 - (-0.4733524) = 0.5332910
    #   dy = -0.0011312 - 0.0020292  = -0.0031604
    #   dz = 0.003779761 - 0.004915215 = -0.0011355
    #   sqrt(0.5332910^2 + 0.0031604^2 + 0.0011355^2) = sqrt(0.2843993 + 0.0000100 + 0.0000013)
    #   = sqrt(0.2844106) = 0.533302 m
    assert rig.baseline() == pytest.approx(0.533302, abs=5e-6)
    # and not MonoScene's Tr-only extrinsics (baseline 0) nor P1's cam0-cam1 386.1448/718.856 = 0.5372
    assert abs(rig.baseline() - 0.5372) > 3e-3


def test_single_view_rig_has_zero_baseline(calib: dict[str, np.ndarray]) -> None:
    mono = rig_from_projections([calib["P2"]], calib["Tr"], NET_HW)
    assert mono.n_views == 1 and mono.baseline() == 0.0


@pytest.mark.parametrize(
    ("point", "left_uv", "right_uv"),
    [
        # Tr @ (10, 0, 0, 1) = 10*Tr[:, 0] + Tr[:, 3] = (-0.0077078, -0.1261461, 9.7075418)
        # P2 @ [that; 1]: u_h = 718.856*(-0.0077078) + 607.1928*9.7075418 + 45.38225 = 5934.191
        #                 v_h = 718.856*(-0.1261461) + 185.2157*9.7075418 - 0.1130887 = 1707.195
        #                 w   = 9.7075418 + 0.003779761 = 9.7113216
        #   -> (611.059, 175.794); P3 likewise -> (571.588, 176.029).
        # Disparity 611.059 - 571.588 = 39.47 = fx*B/z = 718.856*0.5333/9.71 (consistent).
        ((10.0, 0.0, 0.0), (611.0591, 175.7943), (571.5877, 176.0293)),
        # 20 m ahead, 3 m left: Tr @ (20, 3, 0, 1) = (-3.0033327, -0.1740088, 19.7087383)
        #   P2 -> (9853.4225/19.7125180, 3525.1674/19.7125180) = (499.856, 178.829)
        ((20.0, 3.0, 0.0), (499.8561, 178.8289), (480.4159, 178.9445)),
    ],
)
def test_projection_of_grid_points(
    calib: dict[str, np.ndarray], Tr4: np.ndarray, rig: StereoRig, point, left_uv, right_uv
) -> None:
    X = np.array([*point, 1.0])
    for cam, key, expected in zip(rig.cameras, ("P2", "P3"), (left_uv, right_uv)):
        direct = calib[key] @ (Tr4 @ X)  # the raw KITTI chain, no K or T involved
        via_rig = cam.P_grid @ X
        np.testing.assert_allclose(direct[:2] / direct[2], expected, atol=1e-3)
        np.testing.assert_allclose(via_rig[:2] / via_rig[2], direct[:2] / direct[2], rtol=0, atol=1e-9)
        assert via_rig[2] == pytest.approx(direct[2], abs=1e-12)


# --- ImageFit ----------------------------------------------------------------------


def test_crop_keeps_intrinsics(calib: dict[str, np.ndarray]) -> None:
    fit = ImageFit(KITTI_RAW_HW, NET_HW, "crop")
    np.testing.assert_array_equal(fit.matrix, np.eye(3))
    for key in ("P2", "P3"):
        np.testing.assert_array_equal(fit.apply_projection(calib[key]), calib[key])


def test_resize_maps_pixel_centres() -> None:
    src, dst = KITTI_RAW_HW, (184, 608)
    fit = ImageFit(src, dst, "resize")
    sx, sy = 608 / 1226, 184 / 370
    for u, v in [(0.0, 0.0), (100.0, 50.0), (1225.0, 369.0), (613.3, 17.75)]:
        got = fit.matrix @ np.array([u, v, 1.0])
        np.testing.assert_allclose(got, [(u + 0.5) * sx - 0.5, (v + 0.5) * sy - 0.5, 1.0], rtol=0, atol=1e-12)
    # The outer image edges coincide (align_corners=False): -0.5 -> -0.5, 1225.5 -> 607.5, 369.5 -> 183.5.
    np.testing.assert_allclose(fit.matrix @ [-0.5, -0.5, 1.0], [-0.5, -0.5, 1.0], atol=1e-12)
    np.testing.assert_allclose(fit.matrix @ [1225.5, 369.5, 1.0], [607.5, 183.5, 1.0], atol=1e-12)


def test_resize_projection_equals_resized_coordinate(calib: dict[str, np.ndarray], Tr4: np.ndarray) -> None:
    fit = ImageFit(KITTI_RAW_HW, (184, 608), "resize")
    sx, sy = 608 / 1226, 184 / 370
    pts = np.array([[10.0, 0.0, 0.0, 1.0], [20.0, 3.0, 0.5, 1.0], [35.0, -12.0, 1.0, 1.0]])
    for key in ("P2", "P3"):
        P = calib[key]
        fitted = fit.apply_projection(P)
        for X in pts:
            raw = P @ Tr4 @ X
            u, v = raw[:2] / raw[2]
            new = fitted @ Tr4 @ X
            np.testing.assert_allclose(new[:2] / new[2], [(u + 0.5) * sx - 0.5, (v + 0.5) * sy - 0.5], atol=1e-9)
        # the depth row is untouched by an image-plane map
        np.testing.assert_array_equal(fitted[2], P[2])


def test_resize_convention_matches_image_resampling() -> None:
    """A linear ramp resized by the preprocessing holds, at each output pixel, the
    source coordinate that inv(ImageFit.matrix) assigns to it."""
    from occdepth_ros.inference.preprocess import to_network_input

    H, W, h, w = 40, 50, 16, 20
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = (5 * np.arange(W))[None, :]  # value = 5 * source column
    img[..., 1] = (5 * np.arange(H))[:, None]  # value = 5 * source row
    cfg = ImageConfig(height=h, width=w, fit="resize")
    fit = ImageFit((H, W), (h, w), "resize")
    x = to_network_input(img, fit, cfg).numpy()
    raw = x * (np.array(cfg.std) * 255.0)[:, None, None] + (np.array(cfg.mean) * 255.0)[:, None, None]
    back = np.linalg.inv(fit.matrix)
    cols = np.arange(w, dtype=np.float64)
    rows = np.arange(h, dtype=np.float64)
    src_u = (back @ np.stack([cols, np.zeros(w), np.ones(w)]))[0]
    src_v = (back @ np.stack([np.zeros(h), rows, np.ones(h)]))[1]
    # interior only (the antialias filter clamps at the border). The resized image is
    # rounded to whole grey levels (0.1 px at 5 levels per pixel) and torch's antialias
    # weights put it ~0.01 px off, while align_corners=True would be ~0.75 px off.
    np.testing.assert_allclose(raw[0, 8, 3:-3] / 5.0, src_u[3:-3], atol=0.12)
    np.testing.assert_allclose(raw[1, 3:-3, 10] / 5.0, src_v[3:-3], atol=0.12)


def test_crop_of_too_small_image_raises() -> None:
    with pytest.raises(CalibrationError) as err:
        ImageFit((300, 1000), NET_HW, "crop")
    msg = str(err.value)
    assert "1000x300" in msg and "1220x370" in msg and "resize" in msg
    # one dimension short is enough
    with pytest.raises(CalibrationError, match="1220x369"):
        ImageFit((369, 1220), NET_HW, "crop")
    # resize accepts a smaller source (upsampling)
    assert ImageFit((300, 1000), NET_HW, "resize").matrix[0, 0] == pytest.approx(1.22)


def test_image_fit_rejects_bad_sizes_and_modes() -> None:
    with pytest.raises(CalibrationError, match="positive"):
        ImageFit((0, 100), (10, 10), "resize")
    with pytest.raises(CalibrationError, match="unknown image fit mode 'pad'"):
        ImageFit((370, 1226), NET_HW, "pad")


# --- feature sizes and LID -------------------------------------------------------


@pytest.mark.parametrize(
    ("stride", "expected"),
    # the official decoder's outputs at 370x1220 (measured): 1_1, 1_2, 1_4, 1_8, 1_16
    [(1, (370, 1220)), (2, (185, 610)), (4, (93, 305)), (8, (47, 153)), (16, (24, 77))],
)
def test_feature_size_matches_measured_shapes(stride: int, expected: tuple[int, int]) -> None:
    assert feature_size(NET_HW, stride) == expected


def test_feature_size_odd_and_compact() -> None:
    # 184x608 (compact): 92x304, 46x152, 23x76; 23 -> ceil(11.5) = 12 at stride 16
    assert [feature_size((184, 608), s) for s in (2, 4, 8, 16)] == [(92, 304), (46, 152), (23, 76), (12, 38)]
    assert feature_size((1, 1), 8) == (1, 1)


def test_lid_bin_index() -> None:
    d_min, d_max, D = 2.0, 54.0, 104
    # Δ = 2*(54 - 2)/(104*105) = 104/10920 = 0.0095238 m
    delta = 2 * (d_max - d_min) / (D * (D + 1))
    assert delta == pytest.approx(0.0095238, abs=1e-7)
    # i(d_max) = -0.5 + 0.5*sqrt(1 + 8*52/Δ) = -0.5 + 0.5*sqrt(1 + 8*5460) = -0.5 + 0.5*209 = 104
    assert lid_bin_index(np.array(d_min), d_min, d_max, D) == pytest.approx(0.0, abs=1e-12)
    assert lid_bin_index(np.array(d_max), d_min, d_max, D) == pytest.approx(104.0, abs=1e-9)
    # edge k at d_min + Δ*k(k+1)/2: 1 + 4k(k+1) = (2k+1)^2, so i = k
    k = np.arange(D + 1, dtype=np.float64)
    edges = d_min + delta * k * (k + 1) / 2
    np.testing.assert_allclose(
        edges[[1, 2, 3, 102, 103]], [2.0095238, 2.0285714, 2.0571429, 52.0285714, 53.0095238], atol=1e-6
    )
    np.testing.assert_allclose(lid_bin_index(edges, d_min, d_max, D), k, atol=1e-9)
    # inside a bin the index is fractional and monotonic
    mid = lid_bin_index(np.array([10.0, 10.5, 30.0]), d_min, d_max, D)
    assert np.all(np.diff(mid) > 0) and not np.allclose(mid, np.round(mid))
    below = lid_bin_index(np.array([1.99, 0.0, -3.0]), d_min, d_max, D)
    assert np.isnan(below).all()


# --- voxel centres ----------------------------------------------------------------


def test_official_voxel_centres_vs_loop() -> None:
    origin, dims, size = (0.0, -25.6, -2.0), (6, 5, 4), 0.4
    got = official_voxel_centres(origin, dims, size)
    assert got.shape == (6 * 5 * 4, 3) and got.dtype == np.float64
    expected = []
    for ix in range(dims[0]):
        for iy in range(dims[1]):
            for iz in range(dims[2]):  # C order: n = (x*Y + y)*Z + z
                expected.append(official_centre(origin, (ix, iy, iz), size))
    np.testing.assert_array_equal(got, np.array(expected))
    # the result is exactly representable in float32
    np.testing.assert_array_equal(got, got.astype(np.float32).astype(np.float64))


def test_official_voxel_centres_full_grid() -> None:
    dims = (128, 128, 16)
    got = official_voxel_centres((0.0, -25.6, -2.0), dims, 0.4)
    assert got.shape == (128 * 128 * 16, 3)
    # the official first centre of the 0.4 m grid is (0.2, -25.4, -1.8) (as float32)
    np.testing.assert_array_equal(got[0], np.float32([0.2, -25.4, -1.8]).astype(np.float64))
    for idx in [(127, 127, 15), (64, 0, 8), (3, 100, 1)]:
        np.testing.assert_array_equal(got[flat(idx, dims)], official_centre((0.0, -25.6, -2.0), idx, 0.4))
    # last centre: 0.2 + 127*0.4 = 51.0, -25.4 + 127*0.4 = 25.4, -1.8 + 15*0.4 = 4.2
    np.testing.assert_allclose(got[-1], [51.0, 25.4, 4.2], atol=1e-5)
    # voxel_indices enumerates C-order
    np.testing.assert_array_equal(voxel_indices((2, 3, 4))[flat((1, 2, 3), (2, 3, 4))], [1, 2, 3])


# --- lift lookup, released configuration --------------------------------------------

# Voxels of the 128x128x16 feature grid (0.4 m; centre = (0.2, -25.4, -1.8) + 0.4*idx).
VISIBLE = [
    (25, 64, 4),  # (10.2, 0.2, -0.2): ahead, both views; left v = 190.5011 rounds up
    (50, 90, 5),  # (20.2, 10.6, 0.2): 10.6 m left
    (100, 20, 10),  # (40.2, -17.4, 2.2): far right, above
    (127, 127, 0),  # the far corner, 50.7 m deep
    (3, 64, 4),  # (1.4, 0.2, -0.2): 1.1 m deep, in view but nearer than d_min
]
LEFT_ONLY = (47, 103, 5)  # u_left = 2.49, u_right = -17.95
RIGHT_ONLY = (46, 24, 9)  # u_left = 1229.77, u_right = 1208.78
OUT_OF_VIEW = [(10, 0, 4), (60, 127, 15)]  # u = 5297.6 (right of the image), -156.2 (left)
BEHIND = (0, 64, 4)  # (0.2, 0.2, -0.2): z_cam = 0.2*0.99997 - 0.28842 + ... = -0.0885 < 0


def test_lookup_shapes(b3_lookup, b3_cfg: ModelConfig) -> None:
    N = 128 * 128 * 16
    assert b3_lookup.pixel_index.shape == (2, 4, N) and b3_lookup.pixel_index.dtype == np.int32
    assert b3_lookup.depth_coords.shape == (2, N, 3) and b3_lookup.depth_coords.dtype == np.float32
    assert b3_lookup.scales == (1, 2, 4, 8)
    assert b3_lookup.feature_sizes == ((370, 1220), (185, 610), (93, 305), (47, 153))
    assert b3_lookup.depth_volume == (104, 47, 153)
    # pixel size: ||(1/718.856, 1/718.856)|| * 1000 = sqrt(2)*1000/718.856 = 1.96731 (the official code prints 1.967)
    np.testing.assert_allclose(b3_lookup.pixel_size, [[1.967311], [1.967311]], atol=2e-6)
    # scale-s indices stay within the scale-s map
    for si, (h, w) in enumerate(b3_lookup.feature_sizes):
        assert b3_lookup.pixel_index[:, si].max() < h * w
    # the field of view is the same at every scale
    for si in range(4):
        np.testing.assert_array_equal(b3_lookup.pixel_index[:, si] >= 0, b3_lookup.seen)


def test_lookup_first_voxel_literal(b3_lookup) -> None:
    # (25, 64, 4), left view: u = 596.6009 -> 597, v = 190.5011 -> 191
    #   s=1: 191*1220 + 597 = 233617;  s=2: 95*610 + 298 = 58248
    #   s=4: 47*305 + 149 = 14484;     s=8: 23*153 + 74 = 3593
    n = flat((25, 64, 4), (128, 128, 16))
    assert b3_lookup.pixel_index[0, :, n].tolist() == [233617, 58248, 14484, 3593]
    # right view: u = 557.9336 -> 558, v = 190.7297 -> 191
    #   s=1: 191*1220 + 558 = 233578; s=2: 95*610 + 279 = 58229; s=4: 47*305 + 139 = 14474; s=8: 23*153 + 69 = 3588
    assert b3_lookup.pixel_index[1, :, n].tolist() == [233578, 58229, 14474, 3588]


def test_lookup_pixels_by_hand(b3_lookup, calib: dict[str, np.ndarray], Tr4: np.ndarray) -> None:
    dims, W, H = (128, 128, 16), 1220, 370
    widths = {1: 1220, 2: 610, 4: 305, 8: 153}
    Ts = [closed_form_T(calib["P2"], Tr4), closed_form_T(calib["P3"], Tr4)]
    Ks = [calib["P2"][:, :3], calib["P3"][:, :3]]
    checked_seen = 0
    for idx in VISIBLE + [LEFT_ONLY, RIGHT_ONLY] + OUT_OF_VIEW:
        n = flat(idx, dims)
        centre = official_centre((0.0, -25.6, -2.0), idx, 0.4)
        for v_ in range(2):
            u, v, z = hand_pixel(Ts[v_], Ks[v_], centre)
            ui, vi = int(np.round(u)), int(np.round(v))
            in_view = z > 0 and 0 <= ui < W and 0 <= vi < H
            assert bool(b3_lookup.seen[v_, n]) == in_view, (idx, v_, u, v, z)
            for si, s in enumerate((1, 2, 4, 8)):
                expected = (vi // s) * widths[s] + ui // s if in_view else -1
                assert b3_lookup.pixel_index[v_, si, n] == expected, (idx, v_, s)
            checked_seen += in_view
    assert checked_seen == 2 * len(VISIBLE) + 2  # both views of VISIBLE, one of each single-view voxel
    nl, nr = flat(LEFT_ONLY, dims), flat(RIGHT_ONLY, dims)
    assert b3_lookup.seen[:, nl].tolist() == [True, False]
    assert b3_lookup.seen[:, nr].tolist() == [False, True]


@pytest.mark.parametrize(
    ("cx", "cy", "u", "v"),
    [
        (2.5, 11.0, 2, 10),  # u = 2.5 -> 2, v = 11 - 0.5 = 10.5 -> 10 (half to even, not half up)
        (3.5, 12.0, 4, 12),  # u = 3.5 -> 4, v = 11.5 -> 12
        # float32(2.5 + 1e-9) = 2.5 -> 2 (float64 would give 3); float32(12 - 1e-9) = 12 -> 11.5 -> 12
        # (float64 would give 11.499999999 -> 11): cx, cy are rounded to float32 first
        (2.5 + 1e-9, 12.0 - 1e-9, 2, 12),
    ],
)
def test_lookup_rounding_official(b3_cfg: ModelConfig, cx: float, cy: float, u: int, v: int) -> None:
    """Synthetic rig whose voxel (0, 0, 0) lands exactly on a pixel boundary."""
    grid = dataclasses.replace(b3_cfg.grid, origin=(0.0, -0.5, 0.0), dims=(32, 32, 32), voxel_size=0.5)
    cfg = dataclasses.replace(b3_cfg, grid=grid)
    # feature grid 16^3 of 1 m voxels; voxel (0, 0, 0) has centre (0.5, 0.0, 0.5), exact in float32.
    # Camera at grid (-0.5, 0, 0) looking along +x: x_cam = -y = 0, y_cam = -z = -0.5, z_cam = x + 0.5 = 1
    T = GRID_TO_OPTICAL.copy()
    T[2, 3] = 0.5
    P = np.array([[1.0, 0.0, cx, 0.0], [0.0, 1.0, cy, 0.0], [0.0, 0.0, 1.0, 0.0]])
    lk = build_lift_lookup(rig_from_projections([P, P], T, NET_HW), cfg)
    n = flat((0, 0, 0), (16, 16, 16))  # so u = 0*1/1 + cx, v = -0.5*1/1 + cy
    assert lk.pixel_index[:, 0, n].tolist() == [v * 1220 + u] * 2
    assert lk.pixel_index[0, 1, n] == (v // 2) * 610 + u // 2


def test_lookup_depth_coords_by_hand(b3_lookup, calib: dict[str, np.ndarray], Tr4: np.ndarray) -> None:
    """x = u*w_d/(W-1) - 0.5, y = v*h_d/(H-1) - 0.5, z = bin*D/(D-1) - 0.5 from exact
    float64 centres projected with P @ Tr (docs/stereo_voxel_sample.md)."""
    dims, W, H, D, hd, wd = (128, 128, 16), 1220, 370, 104, 47, 153
    delta = 2 * (54.0 - 2.0) / (D * (D + 1))
    for idx in VISIBLE + [LEFT_ONLY, RIGHT_ONLY]:
        n = flat(idx, dims)
        X = np.array([0.2 + 0.4 * idx[0], -25.4 + 0.4 * idx[1], -1.8 + 0.4 * idx[2], 1.0])
        for v_, key in enumerate(("P2", "P3")):
            h = calib[key] @ Tr4 @ X
            u, v, z = h[0] / h[2], h[1] / h[2], h[2]
            expected = [u * wd / (W - 1) - 0.5, v * hd / (H - 1) - 0.5]
            if z >= 2.0:
                dbin = -0.5 + 0.5 * math.sqrt(1 + 8 * (z - 2.0) / delta)
                expected.append(dbin * D / (D - 1) - 0.5)
            else:  # nearer than d_min: NaN bin -> the whole position is OUTSIDE
                expected = [OUTSIDE, OUTSIDE, OUTSIDE]
            # step 5: clip to [-2, size + 1] (LEFT_ONLY's right-view x = -2.75 becomes -2)
            expected = np.clip(expected, OUTSIDE, [wd + 1, hd + 1, D + 1])
            np.testing.assert_allclose(b3_lookup.depth_coords[v_, n], expected, rtol=2e-6, atol=2e-5)
    # (25, 64, 4) left, by hand: z = 9.9129, bin = -0.5 + 0.5*sqrt(1 + 8*7.9129/0.0095238) = 40.270
    #   -> 40.270*104/103 - 0.5 = 40.160; x = 596.60*153/1219 - 0.5 = 74.38; y = 190.50*47/369 - 0.5 = 23.76
    np.testing.assert_allclose(
        b3_lookup.depth_coords[0, flat((25, 64, 4), dims)], [74.381, 23.764, 40.158], atol=2e-3
    )
    # the near voxel (3, 64, 4) is seen by SFA but outside the OAD depth window
    assert b3_lookup.seen[:, flat((3, 64, 4), dims)].all()
    assert (b3_lookup.depth_coords[:, flat((3, 64, 4), dims), 2] == OUTSIDE).all()


def test_lookup_out_of_view_depth_coords_are_clipped(b3_lookup) -> None:
    # (10, 0, 4): u = 5297.6 -> x = 5297.6*153/1219 - 0.5 = 664.4, clipped to w_d + 1 = 154
    # (60, 127, 15): u = -156.2 -> x = -20.1, clipped to -2
    dc = b3_lookup.depth_coords
    assert dc[0, flat((10, 0, 4), (128, 128, 16)), 0] == 154.0
    assert dc[0, flat((60, 127, 15), (128, 128, 16)), 0] == OUTSIDE
    assert dc.min() >= OUTSIDE and dc[..., 0].max() <= 154 and dc[..., 1].max() <= 48 and dc[..., 2].max() <= 105


def test_lookup_behind_camera_in_released_grid(b3_lookup, rig: StereoRig) -> None:
    n = flat(BEHIND, (128, 128, 16))
    centre = np.array([0.2, 0.2, -0.2, 1.0])
    for v_ in range(2):
        assert (rig.cameras[v_].T_grid_to_cam @ centre)[2] < 0  # z_cam ≈ -0.088 / -0.087
        assert (b3_lookup.pixel_index[v_, :, n] == -1).all()
        assert b3_lookup.depth_coords[v_, n, 2] == OUTSIDE  # NaN bin
    # no voxel of the first x slice (x = 0.2 m, behind both cameras) is seen
    assert not b3_lookup.seen.reshape(2, 128, 128, 16)[:, 0].any()


def test_lookup_behind_camera_custom_grid(calib: dict[str, np.ndarray], Tr4: np.ndarray, b3_cfg: ModelConfig) -> None:
    """A grid reaching 12.8 m behind the sensor: every voxel with z_cam <= 0 is -1 at all
    scales and has depth bin -2, even those whose mirror image lands inside the picture."""
    grid = dataclasses.replace(b3_cfg.grid, origin=(-12.8, -6.4, -2.0), dims=(128, 32, 32))
    cfg = dataclasses.replace(b3_cfg, grid=grid)
    dims = cfg.grid.feature_dims
    assert dims == (64, 16, 16)  # x centres -12.6 ... 12.6 m
    rig2 = kitti_stereo_rig(calib, NET_HW)
    lk = build_lift_lookup(rig2, cfg)
    centres = official_voxel_centres(cfg.grid.origin, dims, 0.4)
    exact = cfg.grid.origin + (voxel_indices(dims) + 0.5) * 0.4
    mirrored_inside = 0
    for v_, key in enumerate(("P2", "P3")):
        T = closed_form_T(calib[key], Tr4)
        z = (np.c_[centres, np.ones(len(centres))] @ T.T)[:, 2]
        behind = z <= 0
        assert 0 < behind.sum() < len(z)
        assert (lk.pixel_index[v_][:, behind] == -1).all()
        assert not lk.seen[v_, behind].any()
        h = np.c_[exact, np.ones(len(exact))] @ (calib[key] @ Tr4).T
        assert (lk.depth_coords[v_, h[:, 2] <= 0, 2] == OUTSIDE).all()
        # the check z > 0 matters: without it these voxels would land in the image
        with np.errstate(divide="ignore", invalid="ignore"):
            u, v = h[:, 0] / h[:, 2], h[:, 1] / h[:, 2]
        mirrored_inside += int((behind & (u >= 0) & (u < 1220) & (v >= 0) & (v < 370)).sum())
        assert lk.seen[v_].any()
    assert mirrored_inside > 0


def test_behind_camera_depth_coords_are_all_outside(b3_lookup) -> None:
    np.testing.assert_array_equal(b3_lookup.depth_coords[:, flat(BEHIND, (128, 128, 16))], OUTSIDE)


def test_lookup_rejects_mismatched_rig(calib: dict[str, np.ndarray], b3_cfg: ModelConfig) -> None:
    with pytest.raises(ValueError, match="expects 2 views, the rig has 1"):
        build_lift_lookup(rig_from_projections([calib["P2"]], calib["Tr"], NET_HW), b3_cfg)
    with pytest.raises(ValueError, match="1226x370 but the network input is 1220x370"):
        build_lift_lookup(kitti_stereo_rig(calib, KITTI_RAW_HW), b3_cfg)


# --- calibration errors ----------------------------------------------------------------

GOOD_LINE = "P2: " + " ".join(["1"] * 12)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (GOOD_LINE + "\nP3 7.1 0 6.0 0 0 7.1 1.8 0 0 0 1 0", "f.txt:2: expected 'KEY: v1 ... v12'"),
        (GOOD_LINE + "\n\nP3: 1 2 3 4 5 6 7 8 9 10 11", "f.txt:3: P3 has 11 numbers, expected 12"),
        ("P3: 1 2 3 4 5 6 7 8 9 10 11 12 13", "P3 has 13 numbers, expected 12"),
        ("Tr: 1 0 0 0 0 1 0 0 0 0 1 zero", "f.txt:1: Tr has a non-numeric entry"),
        ("P0:", "P0 has 0 numbers"),
    ],
)
def test_parse_errors(text: str, needle: str) -> None:
    with pytest.raises(CalibrationError) as err:
        parse_kitti_calib(text, "f.txt")
    assert needle in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="calibration file not found"):
        read_kitti_calib(tmp_path / "nope.txt")
    with pytest.raises(CalibrationError, match="calibration file not found"):
        load_calibration_file(tmp_path / "nope.yaml", KITTI_RAW_HW)


def test_negative_focal_length(calib: dict[str, np.ndarray]) -> None:
    bad = dict(calib)
    bad["P3"] = calib["P3"].copy()
    bad["P3"][1, 1] = -718.856
    with pytest.raises(CalibrationError, match=r"camera 1: focal lengths must be positive .*fy=-718.856"):
        kitti_stereo_rig(bad, NET_HW)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda P: P.__setitem__((2, 2), 2.0), "last row of K must be [0, 0, 1]"),
        (lambda P: P.__setitem__((1, 0), 0.3), "K[1, 0] must be 0"),
        (lambda P: P.__setitem__((0, 3), np.nan), "non-finite"),
    ],
)
def test_invalid_projection(calib: dict[str, np.ndarray], mutate, needle: str) -> None:
    P = calib["P2"].copy()
    mutate(P)
    with pytest.raises(CalibrationError) as err:
        rig_from_projections([P, calib["P3"]], calib["Tr"], NET_HW)
    assert needle in str(err.value)


def test_rig_argument_errors(calib: dict[str, np.ndarray]) -> None:
    with pytest.raises(CalibrationError, match="at least one camera"):
        rig_from_projections([], calib["Tr"], NET_HW)
    with pytest.raises(CalibrationError, match=r"expected a 3x4 projection matrix, got shape \(3, 3\)"):
        rig_from_projections([calib["P2"][:, :3]], calib["Tr"], NET_HW)
    with pytest.raises(CalibrationError, match="image size must be positive"):
        rig_from_projections([calib["P2"]], calib["Tr"], (0, 1220))
    with pytest.raises(CalibrationError, match=r"T_grid_to_ref: expected a finite 3x4 or 4x4 transform"):
        rig_from_projections([calib["P2"]], np.eye(3), NET_HW)


@pytest.mark.parametrize("missing", [("P3",), ("Tr",), ("P3", "Tr")])
def test_missing_kitti_matrices(calib: dict[str, np.ndarray], missing: tuple[str, ...]) -> None:
    partial = {k: v for k, v in calib.items() if k not in missing}
    needle = "KITTI calibration lacks " + ", ".join(missing)
    with pytest.raises(CalibrationError, match=needle):
        kitti_stereo_rig(partial, NET_HW)
    with pytest.raises(CalibrationError, match=needle):
        kitti_calibration(partial, KITTI_RAW_HW)


def test_non_rigid_Tr(calib: dict[str, np.ndarray]) -> None:
    bad = dict(calib)
    bad["Tr"] = calib["Tr"].copy()
    bad["Tr"][:, :3] *= 1.1  # a scaled rotation
    with pytest.raises(CalibrationError, match="Tr: rotation part is not a proper rotation"):
        kitti_calibration(bad, KITTI_RAW_HW)


# --- stereo YAML -------------------------------------------------------------------------


def yaml_dict(calib: dict[str, np.ndarray], **extra) -> dict:
    d = {
        "left_projection": calib["P2"].reshape(-1).tolist(),
        "right_projection": calib["P3"].reshape(-1).tolist(),
        "grid_to_camera": calib["Tr"].reshape(-1).tolist(),
        "image_width": 1226,
        "image_height": 370,
    }
    d.update(extra)
    return d


def test_yaml_equals_kitti(tmp_path: Path, calib: dict[str, np.ndarray], kitti_calib_path: Path) -> None:
    path = tmp_path / "stereo.yaml"
    path.write_text(yaml.safe_dump(yaml_dict(calib)))
    from_yaml = load_calibration_file(path, KITTI_RAW_HW)
    from_txt = load_calibration_file(kitti_calib_path, KITTI_RAW_HW)
    assert isinstance(from_yaml, StereoCalibration) and isinstance(from_txt, StereoCalibration)
    assert len(from_yaml.projections) == len(from_txt.projections) == 2
    for a, b in zip(from_yaml.projections, from_txt.projections):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(from_yaml.T_grid_to_ref, from_txt.T_grid_to_ref)
    assert from_yaml.T_grid_to_ref.shape == (4, 4)
    assert tuple(from_yaml.image_size) == tuple(from_txt.image_size) == KITTI_RAW_HW
    assert from_yaml.key() == from_txt.key()
    # a 4x4 (16 numbers, nested) grid_to_camera is the same calibration
    nested = yaml_dict(calib, grid_to_camera=np.vstack([calib["Tr"], [0, 0, 0, 1]]).tolist())
    assert stereo_calibration_from_yaml(nested, KITTI_RAW_HW).key() == from_txt.key()


def test_yaml_default_pose_is_grid_to_optical() -> None:
    # fx = 500, cx = 320, cy = 240, right camera 0.1 m to the right (P[0, 3] = -fx*B = -50)
    P_left = [500, 0, 320, 0, 0, 500, 240, 0, 0, 0, 1, 0]
    P_right = [500, 0, 320, -50, 0, 500, 240, 0, 0, 0, 1, 0]
    cal = stereo_calibration_from_yaml({"left_projection": P_left, "right_projection": P_right}, (480, 640))
    np.testing.assert_array_equal(cal.T_grid_to_ref, GRID_TO_OPTICAL)
    rig2 = rig_from_projections(cal.projections, cal.T_grid_to_ref, (480, 640))
    assert rig2.baseline() == pytest.approx(0.1, abs=1e-12)
    # grid (x fwd, y left, z up): 10 m ahead -> principal point; 1 m left -> u = 320 - 500*1/10 = 270;
    # 1 m up -> v = 240 - 50 = 190; right view: u = 320 - 50/10 = 315
    for X, uv_left, uv_right in [
        ((10, 0, 0), (320, 240), (315, 240)),
        ((10, 1, 0), (270, 240), (265, 240)),
        ((10, 0, 1), (320, 190), (315, 190)),
    ]:
        for cam, uv in zip(rig2.cameras, (uv_left, uv_right)):
            h = cam.P_grid @ np.array([*X, 1.0])
            np.testing.assert_allclose(h[:2] / h[2], uv, atol=1e-9)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"right_projection": [0] * 12}, "missing left_projection"),
        ({"left_projection": [0] * 12}, "missing right_projection"),
        ("just a string", "expected a mapping"),
    ],
)
def test_yaml_missing_keys(data, needle: str) -> None:
    with pytest.raises(CalibrationError, match=needle):
        stereo_calibration_from_yaml(data, KITTI_RAW_HW, "cam.yaml")


def test_yaml_errors(calib: dict[str, np.ndarray]) -> None:
    with pytest.raises(CalibrationError, match="image_height is 370 but the images are 1241x376"):
        stereo_calibration_from_yaml(yaml_dict(calib), (376, 1241), "cam.yaml")
    with pytest.raises(CalibrationError, match="cam.yaml: right_projection needs 12 numbers, got 9"):
        stereo_calibration_from_yaml(yaml_dict(calib, right_projection=[1.0] * 9), KITTI_RAW_HW, "cam.yaml")
    with pytest.raises(CalibrationError, match="grid_to_camera needs 12 numbers, got 9"):
        stereo_calibration_from_yaml(yaml_dict(calib, grid_to_camera=np.eye(3).tolist()), KITTI_RAW_HW, "cam.yaml")
    neg = calib["P2"].copy()
    neg[0, 0] = -1.0
    with pytest.raises(CalibrationError, match="cam.yaml camera 0: focal lengths must be positive"):
        stereo_calibration_from_yaml(
            yaml_dict(calib, left_projection=neg.reshape(-1).tolist()), KITTI_RAW_HW, "cam.yaml"
        )


@pytest.mark.parametrize(
    "T",
    [
        np.diag([1.0, 1.0, -1.0, 1.0]),  # a reflection (det -1)
        np.diag([2.0, 2.0, 2.0, 1.0]),  # a scaling
        np.array([[1, 0.2, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]),  # a shear
    ],
)
def test_yaml_non_rigid_grid_to_camera(calib: dict[str, np.ndarray], T: np.ndarray) -> None:
    with pytest.raises(CalibrationError, match="cam.yaml grid_to_camera: rotation part is not a proper rotation"):
        stereo_calibration_from_yaml(yaml_dict(calib, grid_to_camera=T.tolist()), KITTI_RAW_HW, "cam.yaml")


def test_yaml_grid_to_camera_bottom_row_must_be_0001(calib: dict[str, np.ndarray]) -> None:
    T = np.vstack([calib["Tr"], [0.0, 0.0, 0.0, 2.0]])
    with pytest.raises(CalibrationError):
        stereo_calibration_from_yaml(yaml_dict(calib, grid_to_camera=T.tolist()), KITTI_RAW_HW, "cam.yaml")


def test_yaml_non_numeric_raises_calibration_error(calib: dict[str, np.ndarray]) -> None:
    with pytest.raises(CalibrationError, match="left_projection"):
        stereo_calibration_from_yaml(yaml_dict(calib, left_projection=["a"] * 12), KITTI_RAW_HW, "cam.yaml")


def test_yaml_single_declared_dimension_is_checked(calib: dict[str, np.ndarray]) -> None:
    data = yaml_dict(calib)
    del data["image_height"]
    with pytest.raises(CalibrationError, match="1226"):
        stereo_calibration_from_yaml(data, (370, 1220), "cam.yaml")


def test_stereo_calibration_equality(calib: dict[str, np.ndarray]) -> None:
    a = kitti_calibration(calib, KITTI_RAW_HW)
    b = kitti_calibration({k: v.copy() for k, v in calib.items()}, KITTI_RAW_HW)
    assert a == b


# --- CameraInfo pairs -------------------------------------------------------------------

def test_camera_info_pair_gives_the_baseline_and_the_grid_pose() -> None:
    from occdepth_ros.geometry.calib import GRID_TO_OPTICAL, calibration_from_camera_info

    fx, cx, cy, B = 700.0, 640.0, 360.0, 0.12
    left = [fx, 0, cx, 0, 0, fx, cy, 0, 0, 0, 1, 0]
    right = [fx, 0, cx, -fx * B, 0, fx, cy, 0, 0, 0, 1, 0]
    cal = calibration_from_camera_info(left, right, 1280, 720)
    rig = rig_from_projections(cal.projections, cal.T_grid_to_ref, cal.image_size)
    assert rig.baseline() == pytest.approx(B, abs=1e-12)
    # a point 5 m ahead of the camera (grid x) and 1 m to its left (grid y) projects at
    # u = cx + fx * (-1) / 5 = 500 in the left image and 500 - fx * B / 5 = 483.2 in the right
    for cam, u_expected in zip(rig.cameras, (500.0, 500.0 - fx * B / 5.0)):
        p = cam.P_grid @ np.array([5.0, 1.0, 0.0, 1.0])
        assert p[0] / p[2] == pytest.approx(u_expected) and p[1] / p[2] == pytest.approx(cy)
    np.testing.assert_array_equal(cal.T_grid_to_ref, GRID_TO_OPTICAL)


def test_camera_info_pair_errors() -> None:
    from occdepth_ros.geometry.calib import calibration_from_camera_info

    left = [700.0, 0, 640, 0, 0, 700, 360, 0, 0, 0, 1, 0]
    right = [700.0, 0, 640, -84.0, 0, 700, 360, 0, 0, 0, 1, 0]
    with pytest.raises(CalibrationError, match="swapped"):
        calibration_from_camera_info(right, left, 1280, 720)
    with pytest.raises(CalibrationError, match="swapped"):
        calibration_from_camera_info(left, left, 1280, 720)  # zero baseline
    with pytest.raises(CalibrationError, match="needs 12 numbers"):
        calibration_from_camera_info(left[:9], right, 1280, 720)
    with pytest.raises(CalibrationError, match="focal lengths must be positive"):
        calibration_from_camera_info([0.0] * 12, right, 1280, 720)


def test_kitti_p2_p3_as_camera_info_equal_the_calib_file(calib: dict[str, np.ndarray]) -> None:
    """KITTI camera_infos carry P2/P3 (non-zero p[3]: both relative to cam0) and Tr."""
    from occdepth_ros.geometry.calib import calibration_from_camera_info

    cal = calibration_from_camera_info(calib["P2"].ravel(), calib["P3"].ravel(), 1241, 376, calib["Tr"])
    assert cal == kitti_calibration(calib, (376, 1241))
