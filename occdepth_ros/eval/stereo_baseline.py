"""Classical stereo geometry baseline: OpenCV SGBM -> depth -> points -> voxel occupancy.

Why: the learned model's SC IoU (occupied vs empty) needs a reference that uses the
same two images and calibration but no learning. This baseline only knows the
surfaces the cameras see, so it scores well on SC precision and is limited in
recall (nothing behind a surface, nothing outside the left image); that is the
honest classical number. Its output is geometry only: ``sgbm_prediction`` gives
every occupied voxel one class id so ``SSCMetrics`` can score SC; the SSC mIoU
of such a prediction is meaningless.

Conventions follow ``geometry.calib``: ``StereoCalibration.projections`` are the
rectified P of the raw (left, right) images, pixel centres sit at integer
coordinates, and the left camera's pose is ``T = inv(K) @ P_left @ T_grid_to_ref``
(as ``rig_from_projections`` derives it).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..geometry.calib import StereoCalibration
from ..model.config import GridConfig

_MODES = {
    "sgbm": cv2.STEREO_SGBM_MODE_SGBM,  # 5 path directions, single pass
    "sgbm_3way": cv2.STEREO_SGBM_MODE_SGBM_3WAY,  # 3 directions, fastest, near-identical on KITTI
    "hh": cv2.STEREO_SGBM_MODE_HH,  # full 8-direction two-pass: slowest, much more memory
    "hh4": cv2.STEREO_SGBM_MODE_HH4,
}


@dataclass(frozen=True)
class SGBMConfig:
    """SGBM matcher and point filtering, tuned for KITTI-like stereo (~1241x376,
    fx ~718 px, baseline ~0.54 m, so fx * B ~ 388 px m).

    * ``num_disparities`` 192: depth = fx B / d, so the largest disparity 191
      reaches down to ~2.0 m, the model's own depth range start (DepthConfig.d_min);
      the road is first visible ~6 m ahead, so nearer matches are rarely needed.
      It must be a multiple of 16 (OpenCV). Columns left of it have no right-image
      partner and stay invalid.
    * ``block_size`` 5 and P1/P2 = 8/32 * channels * block_size**2: OpenCV's
      recommended smoothness for grayscale SGBM; small blocks keep thin poles.
    * ``uniqueness_ratio`` 10, ``disp12_max_diff`` 1, speckle window 100 px with
      range 2 (OpenCV multiplies it by 16): drop ambiguous, left-right
      inconsistent and small isolated disparity blobs, the main false-positive
      sources in the voxel grid.
    * ``max_depth`` 60 m: the 51.2 m deep grid's far corners are ~57 m away; at
      60 m a 0.25 px disparity error is already ~2.3 m of depth.
    * ``min_points_per_voxel`` 1: any matched pixel marks its voxel; raise it to
      trade recall for precision on noisy data.
    * ``fill_below_surface`` False: the pure visible-surface baseline. True also
      marks, in every (x, y) voxel column, the voxels between the column's lowest
      and highest occupied voxel (a 2.5D "solid under the seen top" prior); it is
      an extra heuristic, not part of the classical baseline.
    """

    min_disparity: int = 0
    num_disparities: int = 192
    block_size: int = 5
    p1_factor: int = 8  # P1 = p1_factor * channels * block_size**2 (small disparity changes)
    p2_factor: int = 32  # P2 = p2_factor * channels * block_size**2 (large jumps); P2 > P1
    disp12_max_diff: int = 1  # left-right check tolerance, px; < 0 disables
    pre_filter_cap: int = 63
    uniqueness_ratio: int = 10  # %, best cost must beat the second best by this margin
    speckle_window_size: int = 100  # px; 0 disables speckle filtering
    speckle_range: int = 2  # disparity variation inside a speckle component (x16 by OpenCV)
    mode: str = "sgbm_3way"
    min_depth: float = 2.0  # m, along the left camera's optical axis
    max_depth: float = 60.0  # m
    min_points_per_voxel: int = 1
    fill_below_surface: bool = False

    def __post_init__(self) -> None:
        if self.num_disparities <= 0 or self.num_disparities % 16:
            raise ValueError(f"num_disparities must be a positive multiple of 16, got {self.num_disparities}")
        if self.block_size < 1 or self.block_size % 2 == 0:
            raise ValueError(f"block_size must be odd and >= 1, got {self.block_size}")
        if not 0 <= self.p1_factor < self.p2_factor:
            raise ValueError(f"need 0 <= p1_factor < p2_factor, got {self.p1_factor}, {self.p2_factor}")
        if self.mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {self.mode!r}")
        if not 0 < self.min_depth < self.max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {self.min_depth}, {self.max_depth}")
        if self.min_points_per_voxel < 1:
            raise ValueError(f"min_points_per_voxel must be >= 1, got {self.min_points_per_voxel}")


def _gray(image: np.ndarray, name: str) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim != 2:
        raise ValueError(f"{name}: expected an (H, W, 3) RGB or (H, W) gray image, got shape {img.shape}")
    if img.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8 pixels, got {img.dtype}")
    return np.ascontiguousarray(img)


def sgbm_disparity(left_rgb: np.ndarray, right_rgb: np.ndarray, cfg: SGBMConfig | None = None) -> np.ndarray:
    """Left-image disparity in pixels, float32 (H, W), NaN where SGBM found no match.

    Runs on grayscale: colour adds little to census-like SGBM costs and triples the work.
    """
    cfg = cfg or SGBMConfig()
    left, right = _gray(left_rgb, "left"), _gray(right_rgb, "right")
    if left.shape != right.shape:
        raise ValueError(f"left {left.shape} and right {right.shape} images differ in size")
    area = cfg.block_size * cfg.block_size  # one channel
    matcher = cv2.StereoSGBM_create(
        minDisparity=cfg.min_disparity,
        numDisparities=cfg.num_disparities,
        blockSize=cfg.block_size,
        P1=cfg.p1_factor * area,
        P2=cfg.p2_factor * area,
        disp12MaxDiff=cfg.disp12_max_diff,
        preFilterCap=cfg.pre_filter_cap,
        uniquenessRatio=cfg.uniqueness_ratio,
        speckleWindowSize=cfg.speckle_window_size,
        speckleRange=cfg.speckle_range,
        mode=_MODES[cfg.mode],
    )
    raw = matcher.compute(left, right)  # int16, 4 fractional bits
    disp = raw.astype(np.float32) / np.float32(16.0)
    disp[(raw < cfg.min_disparity * 16) | (disp <= 0)] = np.nan
    return disp


def stereo_baseline_m(calib: StereoCalibration) -> float:
    """Baseline from the two projections, KITTI convention: -(P_R[0,3] - P_L[0,3]) / fx."""
    if len(calib.projections) < 2:
        raise ValueError("the stereo baseline needs two camera projections")
    P_l, P_r = (np.asarray(p, np.float64) for p in calib.projections[:2])
    baseline = -(P_r[0, 3] - P_l[0, 3]) / P_l[0, 0]
    if not baseline > 0:
        raise ValueError(f"right camera must sit right of the left one (baseline {baseline:.4f} m)")
    return float(baseline)


def grid_to_left_camera(calib: StereoCalibration) -> np.ndarray:
    """(4, 4) grid frame -> left rectified camera, as ``rig_from_projections`` builds it."""
    P = np.asarray(calib.projections[0], np.float64)
    T = np.eye(4)
    T[:3] = np.linalg.inv(P[:, :3]) @ P @ np.asarray(calib.T_grid_to_ref, np.float64)
    return T


def disparity_to_points(
    disparity: np.ndarray, calib: StereoCalibration, cfg: SGBMConfig | None = None
) -> np.ndarray:
    """Valid left-image disparities -> (N, 3) float64 points in the grid frame.

    depth = fx * B / d along the left optical axis (exact when the projections
    differ only in P[0, 3], as rectified KITTI/ROS pairs do up to millimetres);
    only min_depth <= depth <= max_depth is kept.
    """
    cfg = cfg or SGBMConfig()
    disp = np.asarray(disparity, dtype=np.float64)
    if disp.shape != tuple(calib.image_size):
        raise ValueError(f"disparity shape {disp.shape} != calibration image size {tuple(calib.image_size)}")
    K = np.asarray(calib.projections[0], np.float64)[:, :3]
    fb = K[0, 0] * stereo_baseline_m(calib)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(disp) & (disp > 0)
    v, u = np.nonzero(ok)
    z = fb / disp[v, u]
    keep = (z >= cfg.min_depth) & (z <= cfg.max_depth)
    u, v, z = u[keep], v[keep], z[keep]
    pix = np.stack([u, v, np.ones_like(u)], axis=0).astype(np.float64)
    pts_cam = (np.linalg.inv(K) @ pix) * z  # K's last row is [0, 0, 1], so ray z == 1
    cam_to_grid = np.linalg.inv(grid_to_left_camera(calib))
    return (cam_to_grid[:3, :3] @ pts_cam + cam_to_grid[:3, 3:]).T


def points_to_occupancy(points: np.ndarray, grid: GridConfig, min_points: int = 1) -> np.ndarray:
    """Bool (X, Y, Z): voxels holding at least ``min_points`` of the grid-frame points.

    Voxel i spans [origin + i * size, origin + (i + 1) * size) on each axis.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    dims = np.asarray(grid.dims, dtype=np.int64)
    idx = np.floor((pts - np.asarray(grid.origin, np.float64)) / grid.voxel_size)
    inside = np.all(np.isfinite(idx), axis=1) & np.all((idx >= 0) & (idx < dims), axis=1)
    idx = idx[inside].astype(np.int64)
    flat = np.ravel_multi_index(idx.T, tuple(dims))
    counts = np.bincount(flat, minlength=int(np.prod(dims)))
    return (counts >= max(int(min_points), 1)).reshape(tuple(dims))


def fill_columns(occupancy: np.ndarray) -> np.ndarray:
    """Mark, in each (x, y) column, every voxel between its lowest and highest occupied one."""
    occ = np.asarray(occupancy, dtype=bool)
    below_top = np.flip(np.logical_or.accumulate(np.flip(occ, axis=2), axis=2), axis=2)  # some occupied at >= z
    above_bottom = np.logical_or.accumulate(occ, axis=2)  # some occupied at <= z
    return below_top & above_bottom


def sgbm_occupancy(
    left_rgb: np.ndarray,
    right_rgb: np.ndarray,
    calib: StereoCalibration,
    grid: GridConfig | None = None,
    cfg: SGBMConfig | None = None,
) -> np.ndarray:
    """Bool (X, Y, Z) occupancy of the voxels SGBM sees a surface in (see module doc)."""
    cfg = cfg or SGBMConfig()
    grid = grid or GridConfig()
    disp = sgbm_disparity(left_rgb, right_rgb, cfg)
    occ = points_to_occupancy(disparity_to_points(disp, calib, cfg), grid, cfg.min_points_per_voxel)
    return fill_columns(occ) if cfg.fill_below_surface else occ


def sgbm_prediction(
    left_rgb: np.ndarray,
    right_rgb: np.ndarray,
    calib: StereoCalibration,
    grid: GridConfig | None = None,
    cfg: SGBMConfig | None = None,
    occupied_class: int = 1,
) -> np.ndarray:
    """uint8 (X, Y, Z) labels for ``SSCMetrics``: ``occupied_class`` where occupied, else 0.

    Only the SC scores (IoU / precision / recall) of this prediction mean
    anything: it carries no semantics, so its SSC class IoUs and mIoU do not.
    """
    if not 0 < occupied_class < 256:
        raise ValueError(f"occupied_class must be a non-empty uint8 class id, got {occupied_class}")
    occ = sgbm_occupancy(left_rgb, right_rgb, calib, grid, cfg)
    return (occ.astype(np.uint8) * np.uint8(occupied_class)).astype(np.uint8)
