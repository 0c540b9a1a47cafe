"""Calibration-derived inputs of the lift op, computed once on the host in float64.

See docs/stereo_voxel_sample.md for the contract these arrays satisfy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ..model.config import ModelConfig
from .calib import CalibrationError, StereoRig
from .voxels import official_voxel_centres, voxel_centres

# Depth-sampling coordinate for voxels with no valid frustum position: far enough
# outside the volume that no trilinear corner is inside.
OUTSIDE = -2.0
# The depth net's camera embedding: ||diag(K^-1)[:2]|| times this (OccDepth DepthNet).
PIXEL_SIZE_SCALE = 1000.0


def feature_size(image_hw: tuple[int, int], stride: int) -> tuple[int, int]:
    """Feature-map size at ``stride``: TF-'SAME' stride-2 convs halve with ceil."""
    h, w = image_hw
    s = 1
    while s < stride:
        h, w, s = math.ceil(h / 2), math.ceil(w / 2), s * 2
    return h, w


class LiftTensors(NamedTuple):
    """Batched torch form: pixel_index (B,V,S,N) int64, depth_coords (B,V,N,3) float32,
    pixel_size (B,V,1) float32."""

    pixel_index: torch.Tensor
    depth_coords: torch.Tensor
    pixel_size: torch.Tensor


@dataclass(frozen=True)
class LiftLookup:
    pixel_index: np.ndarray  # (V, S, N) int32 linear index into the scale-s map, -1 = unseen
    depth_coords: np.ndarray  # (V, N, 3) float32 (x=w, y=h, z=bin) continuous indices
    pixel_size: np.ndarray  # (V, 1) float32 camera embedding for the depth net
    scales: tuple[int, ...]
    feature_sizes: tuple[tuple[int, int], ...]  # (h, w) per scale
    depth_volume: tuple[int, int, int]  # (bins, h, w) of the depth probabilities

    @property
    def seen(self) -> np.ndarray:
        """(V, N) bool: voxel centre inside the view's image with positive depth."""
        return self.pixel_index[:, 0] >= 0

    def to_torch(self, device: torch.device | str = "cpu", batch: int = 1) -> LiftTensors:
        def rep(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            t = torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)
            return t.unsqueeze(0).expand(batch, *t.shape)

        return LiftTensors(
            rep(self.pixel_index, torch.int64),
            rep(self.depth_coords, torch.float32),
            rep(self.pixel_size, torch.float32),
        )


def project_pixels_official(
    rig: StereoRig, origin, dims: tuple[int, int, int], voxel_size: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest pixel (u, v) of every voxel centre in every view, the field-of-view mask
    and the camera depth, with OccDepth's rounding (vox2pix / cam2allpixs): float32
    centres and intrinsics, float64 arithmetic, round half to even.
    Returns pixels (V, N, 2) int64 (0 where unseen), fov (V, N) bool, depth (V, N)."""
    centres = official_voxel_centres(origin, dims, voxel_size)
    homo = np.concatenate([centres, np.ones((len(centres), 1))], axis=1)
    h, w = rig.image_size
    pix, fov, depth = [], [], []
    for cam in rig.cameras:
        pts = homo @ cam.T_grid_to_cam.T
        x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
        fx, fy, cx, cy = (float(np.float32(v)) for v in (cam.K[0, 0], cam.K[1, 1], cam.K[0, 2], cam.K[1, 2]))
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.round(x * fx / z + cx)
            v = np.round(y * fy / z + cy)
        ok = (z > 0) & np.isfinite(u) & np.isfinite(v)
        ok &= (u >= 0) & (u < w) & (v >= 0) & (v < h)
        pix.append(np.where(ok[:, None], np.stack([u, v], axis=1), 0).astype(np.int64))
        fov.append(ok)
        depth.append(z)
    return np.stack(pix), np.stack(fov), np.stack(depth)


def lid_bin_index(depth: np.ndarray, d_min: float, d_max: float, n_bins: int) -> np.ndarray:
    """Continuous linear-increasing-discretisation bin index (CaDDN, target=False);
    NaN below d_min."""
    bin_size = 2.0 * (d_max - d_min) / (n_bins * (1 + n_bins))
    with np.errstate(invalid="ignore"):
        return -0.5 + 0.5 * np.sqrt(1.0 + 8.0 * (depth - d_min) / bin_size)


def uniform_bin_coord(depth: np.ndarray, d_min: float, d_step: float) -> np.ndarray:
    """Continuous channel coordinate of the depth loss's uniform bins (bin k's centre at
    k, grid_sample's align_corners=False convention); NaN below d_min."""
    with np.errstate(invalid="ignore"):
        return np.where(depth >= d_min, (depth - d_min) / d_step - 0.5, np.nan)


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
