"""The host lookups + lift op end to end against a re-derivation of the official
pipeline (OccDepth SFA.py with its zero column and ``projected_pix // s``; the float32
CaDDN frustum grid normalised by size - 1 and sampled with ``grid_sample``). Each
implementation of the op against the spec: tests/test_lift_implementations.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from occdepth_ros.geometry.calib import read_kitti_calib, rig_from_projections
from occdepth_ros.geometry.image_fit import ImageFit
from occdepth_ros.geometry.lookups import feature_size
from occdepth_ros.model.lift_lookup import build_lift_lookup
from occdepth_ros.model.config import load_preset
from occdepth_ros.ops import stereo_voxel_sample
from occdepth_ros.resources import config_path


# --- the official pipeline, re-derived --------------------------------------------
def small_kitti_config():
    """Compact-like config at a tiny image size, so the official path runs in seconds."""
    cfg = load_preset("compact")
    image = dataclasses.replace(cfg.image, height=48, width=160, fit="resize")
    grid = dataclasses.replace(cfg.grid, dims=(32, 32, 8), voxel_size=1.6)
    depth = dataclasses.replace(cfg.depth, d_step=4.0)
    return dataclasses.replace(cfg, image=image, grid=grid, depth=depth, context_prior=False)


def official_pixels(T: np.ndarray, K: np.ndarray, origin, dims, size, H, W):
    """vox2pix + cam2allpixs (pattern 0): float32 centres, float64 transform, f32 intrinsics."""
    idx = np.stack(np.meshgrid(*[np.arange(d) for d in dims], indexing="ij"), -1).reshape(-1, 3)
    centres = np.empty(idx.shape, dtype=np.float32)
    o32 = np.asarray(origin, dtype=np.float32)
    for j in range(3):
        centres[:, j] = o32[j].astype(np.float64) + size * idx[:, j].astype(np.float32).astype(np.float64) + size * 0.5
    homo = np.hstack([centres, np.ones((len(centres), 1), dtype=np.float32)])
    cam = (T @ homo.T).T[:, :3]
    k32 = K.astype(np.float32)
    fx, fy, cx, cy = (np.float64(k32[0, 0]), np.float64(k32[1, 1]), np.float64(k32[0, 2]), np.float64(k32[1, 2]))
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.round(cam[:, 0] * fx / cam[:, 2] + cx)
        v = np.round(cam[:, 1] * fy / cam[:, 2] + cy)
    fov = (u >= 0) & (u < W) & (v >= 0) & (v < H) & (cam[:, 2] > 0)
    pix = np.stack([np.where(fov, u, 0), np.where(fov, v, 0)], -1).astype(np.int64)
    return pix, fov


def official_sfa(x2d: torch.Tensor, projected_pix: torch.Tensor, fov_mask: torch.Tensor) -> torch.Tensor:
    """OccDepth SFA.forward semantics for pattern 0: zero column, NaN -> 0, pairwise cos."""
    n_views, c, h, w = x2d.shape
    feats, weights = [], []
    for v in range(n_views):
        src = torch.cat([x2d[v].reshape(c, -1), torch.zeros(c, 1)], 1)
        idx = projected_pix[v, :, 1] * w + projected_pix[v, :, 0]
        idx = torch.where(fov_mask[v], idx, torch.full_like(idx, h * w))
        sub = torch.gather(src, 1, idx.expand(c, -1))
        wsum = fov_mask[v].float()
        sub = torch.nan_to_num(sub / wsum, nan=0.0)
        feats.append(sub)
        weights.append(torch.nan_to_num(wsum / wsum, nan=0.0))
    total = torch.zeros(c, projected_pix.shape[1])
    for i in range(n_views):
        for j in range(i + 1, n_views):
            both = weights[i] * weights[j]
            diff = weights[i] - weights[j]
            cos = torch.cosine_similarity(feats[i], feats[j], 0) * both
            total += (cos + (diff > 0).float()) * feats[i] + (cos + (diff < 0).float()) * feats[j]
    return total / (n_views * (n_views - 1)) if n_views > 1 else feats[0]


def official_oad(depth: torch.Tensor, Ts: list[np.ndarray], Ks: list[np.ndarray], cfg) -> torch.Tensor:
    """FrustumGridGenerator + Sampler + mean aggregation, in float32 torch."""
    g, d = cfg.grid, cfg.depth
    X, Y, Z = g.feature_dims
    pc_min = torch.tensor(g.origin, dtype=torch.float32)
    vsize = torch.tensor([g.feature_voxel_size] * 3, dtype=torch.float32)
    ii = torch.stack(torch.meshgrid(torch.arange(X), torch.arange(Y), torch.arange(Z), indexing="ij"), -1).float() + 0.5
    grid_to_lidar = torch.eye(4)
    grid_to_lidar[:3, :3] = torch.diag(vsize)
    grid_to_lidar[:3, 3] = pc_min
    D = d.n_bins
    H, W = cfg.image.height, cfg.image.width
    probs, masks = [], []
    for v, (T, K) in enumerate(zip(Ts, Ks)):
        trans = torch.from_numpy(T).float() @ grid_to_lidar
        pts = torch.cat([ii, torch.ones(X, Y, Z, 1)], -1) @ trans.T
        proj = torch.zeros(3, 4)
        proj[:, :3] = torch.from_numpy(K).float()
        img = pts @ proj.T
        zc = img[..., 2:3]
        scale = torch.where(zc.abs() > 1e-8, 1.0 / zc, torch.ones_like(zc))
        uv = img[..., :2] * scale
        bin_size = 2 * (d.d_max - d.d_min) / (D * (1 + D))
        dbin = -0.5 + 0.5 * torch.sqrt(1 + 8 * (img[..., 2] - d.d_min) / bin_size)
        frustum = torch.cat([uv, dbin[..., None]], -1)
        shape = torch.tensor([W, H, D], dtype=torch.float32)
        norm = frustum / (shape - 1) * 2 - 1
        norm[~torch.isfinite(norm)] = -2
        gridn = norm[None]
        vol = depth[:, v : v + 1]
        probs.append(F.grid_sample(vol, gridn, mode="bilinear", padding_mode="zeros", align_corners=False))
        masks.append(F.grid_sample(torch.ones_like(vol), gridn, mode="bilinear", padding_mode="zeros", align_corners=False))
    agg = sum(probs)
    m = sum(masks)
    agg[m > 0] = agg[m > 0] / m[m > 0]
    return agg[:, 0]


def test_lookups_and_op_reproduce_the_official_lift() -> None:
    cfg = small_kitti_config()
    calib = read_kitti_calib(config_path("calib", "kitti_odometry_00-02.txt"))
    fit = ImageFit((370, 1241), (cfg.image.height, cfg.image.width), "resize")
    rig = rig_from_projections([fit.apply_projection(calib["P2"]), fit.apply_projection(calib["P3"])],
                               calib["Tr"], (cfg.image.height, cfg.image.width))
    lookup = build_lift_lookup(rig, cfg)
    lift = lookup.to_torch()
    H, W = cfg.image.height, cfg.image.width
    torch.manual_seed(0)
    feats = {s: torch.randn(1, 2, 6, *feature_size((H, W), s)) for s in cfg.sfa_scales}
    hd, wd = feature_size((H, W), cfg.depth.feature_scale)
    depth = torch.rand(1, 2, cfg.depth.n_bins, hd, wd).softmax(2)

    ours = stereo_voxel_sample([feats[s] for s in cfg.sfa_scales], lift.pixel_index, cfg.grid.feature_dims,
                               depth_prob=depth, depth_coords=lift.depth_coords, gate_scale=cfg.depth.gate_scale)

    g = cfg.grid
    pix, fov = zip(*[official_pixels(c.T_grid_to_cam, c.K, g.origin, g.feature_dims, g.feature_voxel_size, H, W)
                     for c in rig.cameras])
    pix_t, fov_t = torch.from_numpy(np.stack(pix)), torch.from_numpy(np.stack(fov))
    sfa = sum(official_sfa(feats[s][0], pix_t // s, fov_t) for s in cfg.sfa_scales)
    occ = official_oad(depth, [c.T_grid_to_cam for c in rig.cameras], [c.K for c in rig.cameras], cfg)
    official = (sfa.reshape(1, -1, *g.feature_dims) * occ * 100.0)

    assert fov_t.any(1).float().mean() > 0.3  # the case exercises seen and unseen voxels
    assert (~fov_t).any()
    scale = official.abs().max()
    np.testing.assert_allclose(ours.numpy(), official.numpy(), rtol=1e-4, atol=2e-5 * float(scale))
