"""Training targets: CRP relations, local frustums and depth labels.

Every expected value comes from an independent route: explicit per-voxel loops that
follow the official dataset code step by step (helpers.py compute_CP_mega_matrix and
compute_local_frustums, depth_loss.py), torch's own nearest resize, or hand arithmetic.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from occdepth_ros.train.targets import depth_labels, local_frustums, relation_matrix

# --- references --------------------------------------------------------------------


def ref_relation(target: np.ndarray, binary: bool = False) -> np.ndarray:
    """Official loop order: mega blocks, their 8 labels, then every row voxel.
    Returns the official (R, N, M) layout."""
    rows = target.reshape(-1)
    n = rows.size
    sx, sy, sz = (s // 2 for s in target.shape)
    mat = np.zeros((2 if binary else 4, n, sx * sy * sz), dtype=np.uint8)
    for xx in range(sx):
        for yy in range(sy):
            for zz in range(sz):
                col = xx * sy * sz + yy * sz + zz
                block = [
                    int(target[2 * xx + dx, 2 * yy + dy, 2 * zz + dz])
                    for dx, dy, dz in itertools.product((0, 1), repeat=3)
                ]
                for lab in block:
                    if lab == 255:
                        continue
                    for i in range(n):
                        row = int(rows[i])
                        if row == 255:
                            continue
                        if binary:
                            mat[0 if lab != row else 1, i, col] = 1
                            continue
                        if lab == row and lab != 0:
                            mat[0, i, col] = 1
                        if lab != row and lab != 0 and row != 0:
                            mat[1, i, col] = 1
                        if lab == row == 0:
                            mat[2, i, col] = 1
                        if lab != row and (lab == 0 or row == 0):
                            mat[3, i, col] = 1
    return mat


def random_labels(rng: np.random.Generator, shape, n_classes: int = 4, p_ignore: float = 0.15, p_empty=0.4):
    lab = rng.integers(1, n_classes, size=shape)
    u = rng.random(shape)
    lab[u < p_empty] = 0
    lab[u > 1 - p_ignore] = 255
    return lab.astype(np.uint8)


def ref_frustums(raw_pix, depth, target, img_w, img_h, n_classes, size):
    """Official compute_local_frustums (kitti), per voxel: tile bounds on the raw
    (un-zeroed) pixels and depth > 0, union over views, then target != 255."""
    labels = target.reshape(-1)
    n = labels.size
    masks, dists = [], []
    for iy in range(size):
        for ix in range(size):
            x0, x1 = ix * 1.0 / size * img_w, (ix * 1.0 + 1) / size * img_w
            y0, y1 = iy * 1.0 / size * img_h, (iy * 1.0 + 1) / size * img_h
            m = np.zeros(n, dtype=bool)
            for i in range(n):
                inside = any(
                    x0 <= raw_pix[v, i, 0] < x1 and y0 <= raw_pix[v, i, 1] < y1 and depth[v, i] > 0
                    for v in range(raw_pix.shape[0])
                )
                m[i] = inside and labels[i] != 255
            counts = np.zeros(n_classes)
            for i in np.nonzero(m)[0]:
                counts[labels[i]] += 1
            masks.append(m.reshape(target.shape))
            dists.append(counts)
    return np.array(masks), np.array(dists)


def ref_depth_labels(depth, d_min, d_max, d_step, s, out_hw):
    """Torch nearest resize, then a loop over patches with the official float32 steps."""
    h, w = out_hw
    up = F.interpolate(torch.from_numpy(depth)[None, None], (h * s, w * s), mode="nearest")[0, 0].numpy()
    n_bins = int((d_max - d_min) / d_step)
    labels = np.full(h * w, -1, dtype=np.int64)
    fg = np.zeros(h * w, dtype=bool)
    for i in range(h):
        for j in range(w):
            patch = up[i * s : (i + 1) * s, j * s : (j + 1) * s]
            nonzero = patch[patch != 0]
            d = np.float32(nonzero.min()) if nonzero.size else np.float32(1e5)
            g = (d - np.float32(d_min - d_step)) / np.float32(d_step)
            if 0 <= g < n_bins + 1 and int(g) >= 1:
                labels[i * w + j] = int(g) - 1
                fg[i * w + j] = True
    return labels, fg


# --- relation_matrix ---------------------------------------------------------------


@pytest.mark.parametrize("shape,seed", [((4, 4, 2), 0), ((4, 4, 2), 1), ((6, 4, 4), 2), ((5, 4, 2), 3)])
def test_relation_matrix_matches_official_loops(shape, seed):
    target = random_labels(np.random.default_rng(seed), shape)
    got = relation_matrix(target)
    want = ref_relation(target).transpose(0, 2, 1)
    assert got.shape == want.shape == (4, (shape[0] // 2) * (shape[1] // 2) * (shape[2] // 2), np.prod(shape))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
    assert got.any(axis=(1, 2)).sum() >= 3  # the random grid exercises the relations


def test_relation_matrix_binary_variant_matches_official_loops():
    target = random_labels(np.random.default_rng(7), (4, 4, 4))
    np.testing.assert_array_equal(relation_matrix(target, 2), ref_relation(target, binary=True).transpose(0, 2, 1))


def test_relation_matrix_index_order_by_hand():
    """A lone car voxel at (3, 0, 1) in an empty 4x4x2 grid: row C-order index
    3*8 + 0*2 + 1 = 25, its mega block (1, 0, 0) has C-order index 1*2*1 = 2."""
    t = np.zeros((4, 4, 2), dtype=np.uint8)
    t[3, 0, 1] = 1
    t[0, 0, 0] = 255
    rel = relation_matrix(t)
    assert rel.shape == (4, 4, 32)
    same = np.zeros((4, 32), dtype=np.uint8)
    same[2, 25] = 1
    np.testing.assert_array_equal(rel[0], same)
    assert not rel[1].any()  # only one non-empty class anywhere
    # both empty: every empty row with every block (all blocks hold an empty voxel)
    empty_rows = (t.reshape(-1) == 0).astype(np.uint8)
    np.testing.assert_array_equal(rel[2], np.tile(empty_rows, (4, 1)))
    # mixed: the car row with every block, and every empty row with block 2 only
    mixed = np.zeros((4, 32), dtype=np.uint8)
    mixed[:, 25] = 1
    mixed[2] |= empty_rows
    np.testing.assert_array_equal(rel[3], mixed)
    assert not rel[:, :, 0].any()  # the ignore voxel relates to nothing


def test_relation_matrix_all_ignore_block_and_errors():
    t = np.zeros((4, 2, 2), dtype=np.float32)
    t[:2] = 255  # block 0 is all ignore
    rel = relation_matrix(t)
    assert not rel[:, 0].any() and rel[2, 1].sum() == 8
    with pytest.raises(ValueError):
        relation_matrix(t, n_relations=3)
    with pytest.raises(ValueError):
        relation_matrix(np.full((4, 4, 2), 256))
    with pytest.raises(ValueError):
        relation_matrix(np.zeros((4, 4)))


def test_relation_matrix_matches_crp_logits_layout():
    """relation (R, M, N3) pairs element-wise with the model's P_logits (B, R, M, N3)."""
    from occdepth_ros.model.crp import ContextRelationPrior

    size = (4, 4, 2)
    crp = ContextRelationPrior(8, size, 4).eval()
    with torch.no_grad():
        _, p_logits = crp(torch.randn(1, 8, *size))
    rel = relation_matrix(random_labels(np.random.default_rng(0), size))
    assert tuple(p_logits.shape[1:]) == rel.shape


# --- local_frustums ----------------------------------------------------------------


def _random_projection(rng, n_views, n, img_h, img_w):
    u = rng.integers(-6, img_w + 6, size=(n_views, n))
    v = rng.integers(-4, img_h + 4, size=(n_views, n))
    raw = np.stack([u, v], -1)
    depth = rng.uniform(-3.0, 40.0, size=(n_views, n))
    fov = (raw[..., 0] >= 0) & (raw[..., 0] < img_w) & (raw[..., 1] >= 0) & (raw[..., 1] < img_h) & (depth > 0)
    zeroed = np.where(fov[..., None], raw, 0)  # what project_pixels_official returns
    return raw, zeroed, fov, depth


@pytest.mark.parametrize("n_views,size,hw,seed", [(2, 8, (12, 20), 0), (1, 3, (7, 10), 1), (2, 4, (370, 1220), 2)])
def test_local_frustums_match_official_loops(n_views, size, hw, seed):
    rng = np.random.default_rng(seed)
    shape, n_classes = (3, 4, 5), 5
    target = random_labels(rng, shape, n_classes=n_classes)
    raw, zeroed, fov, depth = _random_projection(rng, n_views, int(np.prod(shape)), *hw)
    masks, dists = local_frustums(zeroed, fov, depth, target, hw, n_classes, frustum_size=size)
    want_masks, want_dists = ref_frustums(raw, depth, target, hw[1], hw[0], n_classes, size)
    assert masks.shape == (size * size, *shape) and masks.dtype == bool
    assert dists.shape == (size * size, n_classes) and dists.dtype == np.float32
    np.testing.assert_array_equal(masks, want_masks)
    np.testing.assert_array_equal(dists, want_dists)
    assert masks.any()


def test_local_frustums_same_tile_in_both_views_counted_once():
    target = np.array([[[1, 2]]], dtype=np.uint8)  # (1, 1, 2): two voxels
    # (u, v) per view and voxel; 2x2 tiles of a 10x10 image: 0 = top-left, 1 = top-right,
    # 3 = bottom-right. Voxel 0 is in tile 0 in both views, voxel 1 in tiles 3 and 1.
    pix = np.array([[[0, 0], [5, 5]], [[1, 1], [9, 1]]])
    fov = np.ones((2, 2), dtype=bool)
    depth = np.ones((2, 2))
    masks, dists = local_frustums(pix, fov, depth, target, (10, 10), 3, frustum_size=2)
    assert dists.tolist() == [[0, 1, 0], [0, 0, 1], [0, 0, 0], [0, 0, 1]]
    assert masks.reshape(4, 2).tolist() == [[True, False], [False, True], [False, False], [False, True]]


def test_local_frustums_on_kitti_rig_cover_the_seen_voxels():
    from occdepth_ros.geometry.calib import kitti_stereo_rig, read_kitti_calib
    from occdepth_ros.geometry.lookups import project_pixels_official
    from occdepth_ros.resources import config_path

    rig = kitti_stereo_rig(read_kitti_calib(config_path("calib", "kitti_odometry_00-02.txt")), (370, 1220))
    dims = (32, 32, 4)
    pix, fov, depth = project_pixels_official(rig, (0.0, -25.6, -2.0), dims, 1.6)
    target = random_labels(np.random.default_rng(5), dims, n_classes=20)
    masks, dists = local_frustums(pix, fov, depth, target, (370, 1220), 20)
    valid = (target != 255).reshape(-1)
    np.testing.assert_array_equal(masks.reshape(64, -1).any(0), fov.any(0) & valid)
    np.testing.assert_array_equal(dists.sum(1), masks.reshape(64, -1).sum(1))
    assert (masks.reshape(64, -1).sum(0) <= 2).all()  # at most one tile per view
    assert (dists > 0).any(axis=1).sum() > 10


def test_local_frustums_rejects_bad_labels():
    target = np.full((1, 1, 2), 7, dtype=np.uint8)
    with pytest.raises(ValueError):
        local_frustums(np.zeros((1, 2, 2)), np.ones((1, 2), bool), np.ones((1, 2)), target, (4, 4), 5, 2)


# --- depth_labels ------------------------------------------------------------------


def _random_depth(rng, hw, p_zero=0.3):
    """Smooth-ish depth (4x4 pixel plateaus over 0.5-60 m, some plateaus empty) plus
    per-pixel jitter and dropouts, so patch minima land in and out of range."""
    coarse = rng.uniform(0.5, 60.0, size=(hw[0] // 4 + 1, hw[1] // 4 + 1))
    coarse[rng.random(coarse.shape) < 0.2] = 0.0
    d = np.kron(coarse, np.ones((4, 4)))[: hw[0], : hw[1]]
    d = (d + rng.uniform(-0.3, 0.3, size=hw) * (d > 0)).astype(np.float32)
    d[rng.random(hw) < p_zero] = 0.0
    return d


@pytest.mark.parametrize(
    "hw,out_hw,s",
    [
        ((370, 1220), (47, 153), 8),  # KITTI: 370x1220 -> 376x1224
        ((37, 50), (5, 7), 8),
        ((40, 24), (5, 3), 8),  # same size: no resize
        ((10, 12), (10, 12), 2),  # exactly 2x
        ((9, 13), (4, 5), 3),  # shrinking
    ],
)
def test_depth_labels_match_slow_patch_loop(hw, out_hw, s):
    rng = np.random.default_rng(sum(hw))
    depth = _random_depth(rng, hw)
    got_labels, got_fg = depth_labels(depth, 2.0, 54.0, 0.5, s, out_hw)
    want_labels, want_fg = ref_depth_labels(depth, 2.0, 54.0, 0.5, s, out_hw)
    assert got_labels.dtype == np.int64 and got_fg.dtype == bool
    assert got_labels.shape == got_fg.shape == (out_hw[0] * out_hw[1],)
    np.testing.assert_array_equal(got_fg, want_fg)
    np.testing.assert_array_equal(got_labels, want_labels)
    assert got_fg.any() and not got_fg.all()


@pytest.mark.parametrize(
    "d,label",
    [
        (0.0, None),  # no depth
        (1.99, None),  # below d_min
        (2.0, 0),
        (2.49, 0),
        (2.5, 1),  # uniform 0.5 m bins: floor((d - 2) / 0.5)
        (10.0, 16),  # the sampler's LID index is ~40.5 here; the loss uses uniform bins
        (53.99, 103),
        (54.0, None),  # d_max excluded
        (80.0, None),
    ],
)
def test_depth_labels_bins_by_hand(d, label):
    depth = np.zeros((8, 8), dtype=np.float32)
    depth[3, 4] = d  # one pixel per 8x8 patch carries the depth; zeros are "no depth"
    labels, fg = depth_labels(depth, 2.0, 54.0, 0.5, 8, (1, 1))
    assert bool(fg[0]) == (label is not None)
    assert labels[0] == (-1 if label is None else label)


def test_depth_labels_patch_minimum_ignores_zeros():
    depth = np.zeros((2, 4), dtype=np.float32)
    depth[0, 0], depth[1, 1] = 30.0, 12.2  # patch 0: min non-zero 12.2 -> bin 20
    depth[0, 3] = 60.0  # patch 1: beyond d_max
    labels, fg = depth_labels(depth, 2.0, 54.0, 0.5, 2, (1, 2))
    assert labels.tolist() == [20, -1] and fg.tolist() == [True, False]
    assert math.floor((12.2 - 2.0) / 0.5) == 20
