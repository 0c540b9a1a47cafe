"""Reference implementation of the StereoVoxelSample op (docs/stereo_voxel_sample.md).

The whole 2D-to-3D lift of OccDepth in one function: Stereo-SFA over the feature
scales (nearest-pixel gathers, cosine-weighted two-view fusion, summed over
scales), the OAD occupancy prior (trilinear sampling of each view's depth
probabilities, averaged over the views that cover a voxel) and the x100 gate.
ONNX Runtime and TensorRT implementations follow the same written contract.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

COS_EPS = 1e-8  # torch.cosine_similarity's eps, as in OccDepth's SFA


def gather_views(features: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """features (B,V,C,h,w), index (B,V,N) -> sampled (B,V,C,N) zero where unseen, seen (B,V,N)."""
    b, v, c, h, w = features.shape
    seen = index >= 0
    flat = features.reshape(b, v, c, h * w)
    safe = index.clamp(min=0).unsqueeze(2).expand(b, v, c, index.shape[-1])
    sampled = torch.gather(flat, 3, safe) * seen.unsqueeze(2).to(features.dtype)
    return sampled, seen


def sfa_fuse(sampled: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """Stereo-SFA fusion of per-view samples (B,V,C,N) -> (B,C,N).

    Over each view pair (i, j): a voxel seen by both gets cos(f_i, f_j) * (f_i + f_j),
    one seen by only i gets f_i; the pair sum is divided by V(V-1). One view: f_0.
    """
    n_views = sampled.shape[1]
    if n_views == 1:
        return sampled[:, 0]
    dtype = sampled.dtype
    fused = torch.zeros_like(sampled[:, 0])
    for i in range(n_views):
        for j in range(i + 1, n_views):
            fi, fj = sampled[:, i], sampled[:, j]
            both = (seen[:, i] & seen[:, j]).to(dtype)
            cos = F.cosine_similarity(fi, fj, dim=1, eps=COS_EPS) * both
            wi = cos + (seen[:, i] & ~seen[:, j]).to(dtype)
            wj = cos + (~seen[:, i] & seen[:, j]).to(dtype)
            fused = fused + wi.unsqueeze(1) * fi + wj.unsqueeze(1) * fj
    return fused / (n_views * (n_views - 1))


def mean_fuse(sampled: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """Ablation fusion (not part of the op contract): the mean over the views that see
    the voxel, 0 where none does."""
    count = seen.sum(1, keepdim=True).clamp(min=1).to(sampled.dtype)  # (B, 1, N)
    return sampled.sum(1) / count


FUSIONS = {"cosine": sfa_fuse, "mean": mean_fuse}


def occupancy_prior(depth_prob: torch.Tensor, depth_coords: torch.Tensor) -> torch.Tensor:
    """OAD prior (B,N): trilinear samples of each view's depth probabilities (B,V,D,h,w)
    at continuous indices (B,V,N,3) [x=w, y=h, z=bin], zero outside, averaged over
    the views by their summed in-volume corner weights. One view: no averaging."""
    b, v, d, h, w = depth_prob.shape
    n = depth_coords.shape[2]
    size = depth_coords.new_tensor([w, h, d])
    grid = ((2.0 * depth_coords + 1.0) / size - 1.0).reshape(b * v, 1, 1, n, 3)
    volume = depth_prob.reshape(b * v, 1, d, h, w)
    prob = F.grid_sample(volume, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    prob = prob.reshape(b, v, n)
    if v == 1:
        return prob[:, 0]
    cover = F.grid_sample(torch.ones_like(volume), grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False).reshape(b, v, n).sum(1)
    total = prob.sum(1)
    return torch.where(cover > 0, total / torch.where(cover > 0, cover, torch.ones_like(cover)), torch.zeros_like(total))


def stereo_voxel_sample(
    features: Sequence[torch.Tensor],
    pixel_index: torch.Tensor,
    grid_dims: tuple[int, int, int],
    depth_prob: torch.Tensor | None = None,
    depth_coords: torch.Tensor | None = None,
    gate_scale: float = 100.0,
    fusion: str = "cosine",
) -> torch.Tensor:
    """Lift multi-scale stereo features to a voxel volume (B, C, X, Y, Z).

    features: one (B, V, C, h_s, w_s) tensor per scale s.
    pixel_index: (B, V, S, N) int, linear index into scale s's h_s*w_s map, -1 = unseen.
    depth_prob, depth_coords: (B, V, D, h, w) softmaxed depth and (B, V, N, 3)
        sampling indices; with both None the OAD gate is off (the 'flosp' variant).
    """
    if len(features) != pixel_index.shape[2]:
        raise ValueError(f"{len(features)} feature scales but pixel_index has {pixel_index.shape[2]}")
    x, y, z = grid_dims
    n = x * y * z
    if pixel_index.shape[-1] != n:
        raise ValueError(f"pixel_index has {pixel_index.shape[-1]} voxels, grid {grid_dims} has {n}")
    volume = None
    for s, feat in enumerate(features):
        fused = FUSIONS[fusion](*gather_views(feat, pixel_index[:, :, s]))
        volume = fused if volume is None else volume + fused
    if depth_prob is not None:
        if depth_coords is None:
            raise ValueError("depth_prob given without depth_coords")
        volume = volume * (occupancy_prior(depth_prob, depth_coords) * gate_scale).unsqueeze(1)
    return volume.reshape(volume.shape[0], volume.shape[1], x, y, z)
