"""The lift lookup of one model for one stereo rig: which pixel and depth-volume position
every voxel reads (docs/stereo_voxel_sample.md). Built once on the host per calibration."""

from __future__ import annotations

import numpy as np

from ..geometry.calib import CalibrationError, StereoRig
from ..geometry.lookups import (
    OUTSIDE,
    PIXEL_SIZE_SCALE,
    LiftLookup,
    feature_size,
    lid_bin_index,
    project_pixels_official,
    uniform_bin_coord,
)
from ..geometry.voxels import voxel_centres
from .config import ModelConfig


def depth_sampling_coords(rig: StereoRig, cfg: ModelConfig, flip: bool = False) -> np.ndarray:
    """(V, N, 3) continuous (x, y, z) indices into each view's depth-probability
    volume (bins, h8, w8), with grid_sample's align_corners=False convention and the
    official normalisation by (size - 1) of the full image already applied. The bin
    coordinate follows ``cfg.depth.sampler_bins`` (official: LID, with the same
    (size - 1) normalisation)."""
    g, d = cfg.grid, cfg.depth
    centres = voxel_centres(g.origin, g.feature_dims, g.feature_voxel_size)
    homo = np.concatenate([centres, np.ones((len(centres), 1))], axis=1)
    H, W = cfg.image.height, cfg.image.width
    h8, w8 = feature_size((H, W), d.feature_scale)
    D = d.n_bins
    out = []
    for cam in rig.cameras:
        pc = homo @ cam.T_grid_to_cam.T
        img = pc[:, :3] @ cam.K.T
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            safe = np.where(np.abs(img[:, 2]) > 1e-8, img[:, 2], 1.0)  # kornia's guard
            u, v = img[:, 0] / safe, img[:, 1] / safe
            if flip:  # official image-augmentation matrix: u' = W - u (sic, not W - 1 - u)
                u = W - u
            if d.sampler_bins == "uniform":
                zc = uniform_bin_coord(z, d.d_min, d.d_step)
            else:
                zc = lid_bin_index(z, d.d_min, d.d_max, D) * D / (D - 1) - 0.5
            coords = np.stack([u * w8 / (W - 1) - 0.5, v * h8 / (H - 1) - 0.5, zc], axis=1)
        coords[~np.isfinite(coords).all(axis=1)] = OUTSIDE  # behind the camera / below d_min
        limits = np.array([w8, h8, D], dtype=np.float64) + 1.0
        coords = np.clip(coords, OUTSIDE, limits)  # results unchanged; keeps floor() in range
        out.append(coords)
    return np.stack(out).astype(np.float32)


def build_lift_lookup(rig: StereoRig, cfg: ModelConfig, flip: bool = False) -> LiftLookup:
    """All calibration-dependent inputs of the lift for one rig at the network input size.

    ``flip``: the images are mirrored horizontally (training augmentation). Pixels map
    as OccDepth's dataset does it: u -> W - 1 - u for SFA, u -> W - u for OAD."""
    if rig.n_views != cfg.n_views:
        raise CalibrationError(f"model {cfg.name!r} expects {cfg.n_views} views, the rig has {rig.n_views}")
    if rig.image_size != (cfg.image.height, cfg.image.width):
        raise CalibrationError(
            f"rig is calibrated for {rig.image_size[1]}x{rig.image_size[0]} but the network input is "
            f"{cfg.image.width}x{cfg.image.height}; fit the calibration with ImageFit first"
        )
    H, W = cfg.image.height, cfg.image.width
    g = cfg.grid
    pix, fov, _ = project_pixels_official(rig, g.origin, g.feature_dims, g.feature_voxel_size)
    if flip:
        pix[..., 0] = np.where(fov, W - 1 - pix[..., 0], 0)
    scales = tuple(cfg.sfa_scales)
    sizes = tuple(feature_size((H, W), s) for s in scales)
    index = np.empty((rig.n_views, len(scales), pix.shape[1]), dtype=np.int32)
    for si, (s, (_, ws)) in enumerate(zip(scales, sizes)):
        index[:, si] = np.where(fov, (pix[..., 1] // s) * ws + pix[..., 0] // s, -1)
    if cfg.depth.enabled:
        coords = depth_sampling_coords(rig, cfg, flip)
        h8, w8 = feature_size((H, W), cfg.depth.feature_scale)
        volume = (cfg.depth.n_bins, h8, w8)
    else:
        coords = np.full((rig.n_views, pix.shape[1], 3), OUTSIDE, dtype=np.float32)
        volume = (0, 0, 0)
    pixel_size = np.array(
        [[np.hypot(*np.diag(np.linalg.inv(c.K))[:2]) * PIXEL_SIZE_SCALE] for c in rig.cameras],
        dtype=np.float32,
    )
    return LiftLookup(index, coords, pixel_size, scales, sizes, volume)
