"""Shared inputs for the lift-op tests: random StereoVoxelSample inputs with every edge
case of the contract (docs/stereo_voxel_sample.md), a slow float64 implementation written
from the spec with explicit loops (the independent reference), and the torch reference's
answer (for the TensorRT builds)."""

from __future__ import annotations

import math

import numpy as np
import torch

from occdepth_ros.ops import stereo_voxel_sample

GATE_SCALE = 100.0
COS_EPS = 1e-8  # the spec's clamp of each norm in the cosine


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


def lift_slow(features, pixel_index, grid, depth_prob=None, depth_coords=None, gate=GATE_SCALE) -> np.ndarray:
    """The op in float64, voxel by voxel, straight from the spec: (B, C, X, Y, Z)."""
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
                        cos = 0.0
                        if seen[i] and seen[j]:
                            cos = f[i] @ f[j] / (max(np.linalg.norm(f[i]), COS_EPS) * max(np.linalg.norm(f[j]), COS_EPS))
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


def feature_sizes(height: int, width: int, scales: int) -> list[tuple[int, int]]:
    """Stride 2**s maps: the image halved s times with ceil, as in the network."""
    return [(-(-height // 2**s), -(-width // 2**s)) for s in range(scales)]


def make_case(rng, B, V, S, C, zero_view0=False, grid=(3, 4, 5), image=(9, 13), D=6, hd=4, wd=5,
              p_unseen=0.3):
    """Random inputs plus every edge case of the contract at fixed voxels."""
    N = int(np.prod(grid))
    sizes = feature_sizes(*image, S)
    features = [rng.standard_normal((B, V, C, h, w)).astype(np.float32) for h, w in sizes]
    # One full-resolution pixel per (view, voxel), divided by the stride at each scale.
    u = rng.integers(0, image[1], size=(B, V, N))
    v = rng.integers(0, image[0], size=(B, V, N))
    seen = rng.random((B, V, N)) > p_unseen
    seen[:, :, 0] = False  # seen by no view
    seen[:, :, 1], seen[:, 0, 1] = False, True  # seen by the first view only
    seen[:, :, 2], seen[:, -1, 2] = False, True  # seen by the last view only
    seen[:, :, 3] = True  # seen by all
    index = np.empty((B, V, S, N), dtype=np.int32)
    for s, (_, w) in enumerate(sizes):
        index[:, :, s] = np.where(seen, (v // 2**s) * w + u // 2**s, -1)
    if zero_view0:
        for feat in features:
            feat[:, 0] = 0.0  # |f| = 0: the clamped norm keeps cos finite (= 0)
    else:
        for s, feat in enumerate(features):  # one zero feature column where all views see it
            feat[0, 0, :].reshape(C, -1)[:, index[0, 0, s, 3]] = 0.0
    depth_prob = rng.random((B, V, D, hd, wd)).astype(np.float32)
    depth_prob /= depth_prob.sum(2, keepdims=True)
    coords = np.stack([rng.uniform(-2, size + 1, (B, V, N)) for size in (wd, hd, D)], -1).astype(np.float32)
    coords[:, :, 4] = [0.0, 0.0, 0.0]  # exact first corner
    coords[:, :, 5] = [wd - 1, hd - 1, D - 1]  # exact last corner
    coords[:, :, 6] = [2.0, 1.0, 3.0]  # exact interior corner
    coords[:, :, 7] = [-0.5, 1.25, D - 0.5]  # half outside in x and z: fractional weight
    coords[:, 0, 8] = -2.0  # behind-camera sentinel in the first view only
    coords[:, :, 9] = -2.0  # sentinel in every view: no coverage, occ = 0
    coords[:, :, 10] = [1.5, 1.5, D + 0.5]  # beyond the last bin
    return features, index, depth_prob, coords, grid


def run_reference(features, index, grid, depth_prob=None, coords=None) -> np.ndarray:
    t = torch.from_numpy
    out = stereo_voxel_sample([t(f) for f in features], t(index.astype(np.int64)), grid,
                              depth_prob=None if depth_prob is None else t(depth_prob),
                              depth_coords=None if coords is None else t(coords), gate_scale=GATE_SCALE)
    return out.reshape(out.shape[0], out.shape[1], -1).numpy()


CASES = [  # (batch, views, scales, channels, with_depth, zero_view0)
    (1, 1, 1, 1, True, False),
    (2, 1, 4, 5, True, False),
    (1, 1, 4, 3, False, False),
    (2, 2, 1, 3, True, False),
    (1, 2, 4, 32, True, False),
    (2, 2, 4, 8, False, False),
    (1, 2, 1, 5, True, True),
    (2, 3, 4, 7, True, False),
    (1, 3, 1, 4, True, True),
    (1, 3, 4, 6, False, False),
]
