"""The lift op (docs/stereo_voxel_sample.md) against independent implementations.

1. A slow NumPy float64 implementation written from the spec with explicit loops.
2. A re-derivation of the official pipeline (OccDepth SFA.py with its zero column and
   ``projected_pix // s``; the float32 CaDDN frustum grid normalised by size - 1 and
   sampled with ``grid_sample``), compared with our host lookups + op end to end.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from occdepth_ros.geometry.calib import read_kitti_calib, rig_from_projections
from occdepth_ros.geometry.image_fit import ImageFit
from occdepth_ros.geometry.lookups import feature_size
from occdepth_ros.model.lift_lookup import build_lift_lookup
from occdepth_ros.model.config import load_preset
from occdepth_ros.ops import stereo_voxel_sample
from occdepth_ros.resources import config_path

EPS = 1e-8


# --- 1. slow float64 reference, straight from the spec --------------------------------
def trilinear_np(vol: np.ndarray, x: float, y: float, z: float) -> tuple[float, float]:
    """(sample, in-range weight) of vol (D, h, w) at continuous (x=w, y=h, z=D), zero padding."""
    d, h, w = vol.shape
    x0, y0, z0 = math.floor(x), math.floor(y), math.floor(z)
    value = weight = 0.0
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                cx, cy, cz = x0 + dx, y0 + dy, z0 + dz
                wgt = (x - x0 if dx else 1 - (x - x0)) * (y - y0 if dy else 1 - (y - y0)) * (z - z0 if dz else 1 - (z - z0))
                if 0 <= cx < w and 0 <= cy < h and 0 <= cz < d:
                    value += wgt * vol[cz, cy, cx]
                    weight += wgt
    return value, weight


def lift_slow(features, pixel_index, grid, depth_prob=None, depth_coords=None, gate=100.0):
    B, V, S, N = pixel_index.shape
    C = features[0].shape[2]
    out = np.zeros((B, C, N))
    for b in range(B):
        for n in range(N):
            total = np.zeros(C)
            for s in range(S):
                f = []
                seen = []
                for v in range(V):
                    i = pixel_index[b, v, s, n]
                    fm = features[s][b, v].reshape(C, -1)
                    f.append(fm[:, i].astype(np.float64) if i >= 0 else np.zeros(C))
                    seen.append(i >= 0)
                if V == 1:
                    total += f[0]
                    continue
                acc = np.zeros(C)
                for i in range(V):
                    for j in range(i + 1, V):
                        both = seen[i] and seen[j]
                        cos = 0.0
                        if both:
                            cos = f[i] @ f[j] / (max(np.linalg.norm(f[i]), EPS) * max(np.linalg.norm(f[j]), EPS))
                        acc += (cos + (seen[i] and not seen[j])) * f[i] + (cos + (seen[j] and not seen[i])) * f[j]
                total += acc / (V * (V - 1))
            if depth_prob is not None:
                ps, ms = [], []
                for v in range(V):
                    p, m = trilinear_np(depth_prob[b, v].astype(np.float64), *depth_coords[b, v, n].astype(np.float64))
                    ps.append(p)
                    ms.append(m)
                occ = ps[0] if V == 1 else (sum(ps) / sum(ms) if sum(ms) > 0 else 0.0)
                total = total * occ * gate
            out[b, :, n] = total
    return out.reshape(B, C, *grid)


def random_case(rng, B=1, V=2, C=5, grid=(3, 4, 5), sizes=((6, 10), (3, 5)), D=7, hd=4, wd=6, p_unseen=0.35):
    N = int(np.prod(grid))
    S = len(sizes)
    features = [rng.standard_normal((B, V, C, h, w)).astype(np.float32) for h, w in sizes]
    # One full-res pixel per (view, voxel), shared by all scales as in the real lookup.
    h0, w0 = sizes[0]
    u = rng.integers(0, w0, size=(B, V, N))
    v = rng.integers(0, h0, size=(B, V, N))
    seen = rng.random((B, V, N)) > p_unseen
    seen[:, :, 0] = False  # a voxel seen by no view
    seen[:, 0, 1], seen[:, 1:, 1] = True, False  # seen by the left view only
    index = np.empty((B, V, S, N), dtype=np.int64)
    for s, (h, w) in enumerate(sizes):
        stride = h0 // h
        index[:, :, s] = np.where(seen, (v // stride) * w + u // stride, -1)
    depth_prob = rng.random((B, V, D, hd, wd)).astype(np.float32)
    depth_prob /= depth_prob.sum(2, keepdims=True)
    coords = np.stack(
        [rng.uniform(-2, wd + 1, (B, V, N)), rng.uniform(-2, hd + 1, (B, V, N)), rng.uniform(-2, D + 1, (B, V, N))], -1
    ).astype(np.float32)
    coords[:, :, 2] = [0.0, 0.0, 0.0]  # exact corner
    coords[:, :, 3] = [wd - 1, hd - 1, D - 1]  # last corner
    coords[:, :, 4] = [-0.5, 1.25, 2.5]  # half outside: fractional in-range weight
    coords[:, 0, 5] = -2.0  # the behind-camera sentinel in one view
    return features, index, depth_prob, coords, grid


def run_op(features, index, grid, depth_prob=None, coords=None):
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    out = stereo_voxel_sample(
        [t(f) for f in features], t(index), grid,
        depth_prob=None if depth_prob is None else t(depth_prob),
        depth_coords=None if coords is None else t(coords),
    )
    return out.double().numpy()


@pytest.mark.parametrize("views", [1, 2, 3])
@pytest.mark.parametrize("with_depth", [True, False])
def test_op_matches_slow_float64_reference(views: int, with_depth: bool) -> None:
    rng = np.random.default_rng(100 * views + with_depth)
    features, index, depth_prob, coords, grid = random_case(rng, B=2, V=views)
    if not with_depth:
        depth_prob = coords = None
    got = run_op(features, index, grid, depth_prob, coords)
    want = lift_slow(features, index, grid, depth_prob, coords)
    scale = np.abs(want).max()
    assert scale > 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * scale)


def test_edge_cases_by_hand() -> None:
    """Two views, one scale, 1x1 feature maps: every seen/unseen combination by hand."""
    f0 = np.array([3.0, 4.0], dtype=np.float32)  # |f0| = 5
    f1 = np.array([4.0, 3.0], dtype=np.float32)  # |f1| = 5, f0.f1 = 24 -> cos = 0.96
    feats = [np.stack([f0, f1])[None, :, :, None, None]]  # (1, 2, 2, 1, 1)
    # voxels: both seen, left only, right only, neither
    index = np.array([[[[0, 0, -1, -1]], [[0, -1, 0, -1]]]], dtype=np.int64)  # (1, 2, 1, 4)
    out = run_op(feats, index, (1, 1, 4))[0, :, 0, 0, :]
    np.testing.assert_allclose(out[:, 0], 0.96 * (f0 + f1) / 2, rtol=1e-6)
    np.testing.assert_allclose(out[:, 1], f0 / 2, rtol=1e-6)
    np.testing.assert_allclose(out[:, 2], f1 / 2, rtol=1e-6)
    np.testing.assert_allclose(out[:, 3], 0.0)


def test_occupancy_prior_by_hand() -> None:
    """1 feature, D=2 bins on a 1x2 map; view 0 samples half-way, view 1 half outside."""
    feats = [np.ones((1, 2, 1, 1, 1), dtype=np.float32)]
    index = np.zeros((1, 2, 1, 1), dtype=np.int64)
    prob = np.zeros((1, 2, 2, 1, 2), dtype=np.float32)
    prob[0, 0, 0, 0] = [0.2, 0.6]  # bin 0, columns 0 and 1
    prob[0, 1, 1, 0] = [0.8, 0.4]  # bin 1
    coords = np.array([[[[0.5, 0.0, 0.0]], [[-0.5, 0.0, 1.0]]]], dtype=np.float32)  # (1, 2, 1, 3)
    # view 0: (0.2 + 0.6) / 2 = 0.4 with weight 1; view 1: only column 0 in range, weight 0.5, 0.5 * 0.8 = 0.4
    # occ = (0.4 + 0.4) / (1 + 0.5); SFA of identical unit features seen by both: cos 1 -> (1 + 1) / 2 = 1
    got = run_op(feats, index, (1, 1, 1), prob, coords).item()
    assert got == pytest.approx(0.8 / 1.5 * 100.0, rel=1e-6)


def test_zero_feature_gives_zero_cosine_not_nan() -> None:
    feats = [np.zeros((1, 2, 3, 1, 1), dtype=np.float32)]
    feats[0][0, 1, :, 0, 0] = [1.0, 2.0, 2.0]
    index = np.zeros((1, 2, 1, 1), dtype=np.int64)
    out = run_op(feats, index, (1, 1, 1))
    assert np.isfinite(out).all() and np.abs(out).max() == 0.0


# --- 2. the official pipeline, re-derived --------------------------------------------
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
