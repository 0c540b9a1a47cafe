"""Calibration-derived inputs of the lift op, computed once on the host in float64: the
model-independent parts (projection, bins, the lookup's form); model.lift_lookup builds it.

See docs/stereo_voxel_sample.md for the contract these arrays satisfy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from .calib import StereoRig
from .voxels import official_voxel_centres

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
