"""Per-sample training targets (numpy), built by the dataset as OccDepth's dataset does.

* :func:`relation_matrix`: CRP ground truth (official ``compute_CP_mega_matrix``,
  occdepth/data/utils/helpers.py L6-91), laid out (relations, mega voxels, voxels) to
  match the model's ``P_logits`` (B, R, M, N3) directly.
* :func:`local_frustums`: frustum-proportion loss masks and class counts (official
  ``compute_local_frustums``, helpers.py L172-260, kitti branch).
* :func:`depth_labels`: stereo-depth "distillation" labels (official
  ``DepthClsLoss._get_downsampled_gt_depth`` + the nearest resize in
  ``get_depth_loss``, occdepth/loss/depth_loss.py).

All functions are vectorised; loops run over views or frustums only, never voxels.
"""

from __future__ import annotations

import numpy as np

IGNORE = 255
EMPTY = 0
# Official: patches without any non-zero depth get this value, which falls outside
# every bin (depth_loss.py, _get_downsampled_gt_depth).
NO_DEPTH = 1e5


# --- CRP relations -------------------------------------------------------------------


def _as_labels(target: np.ndarray, name: str) -> np.ndarray:
    """Integer labels in [0, 255] (targets are stored as float32 or uint8 upstream)."""
    t = np.asarray(target)
    if t.ndim != 3:
        raise ValueError(f"{name} must be a 3D grid, got shape {t.shape}")
    if t.size and not np.issubdtype(t.dtype, np.integer):
        if not np.all(np.isfinite(t)) or np.any(t != np.round(t)):
            raise ValueError(f"{name}: labels must be integral")
    t = t.astype(np.int64)
    if t.size and (t.min() < 0 or t.max() > IGNORE):
        raise ValueError(f"{name}: labels must lie in [0, 255], got [{t.min()}, {t.max()}]")
    return t


def _mega_presence(t: np.ndarray) -> np.ndarray:
    """(M, 256) bool: which labels occur in each 2x2x2 mega block, C-order over blocks.

    Odd trailing slices are dropped, as the official ``super_voxel_size = shape // 2``."""
    mx, my, mz = (s // 2 for s in t.shape)
    blocks = (
        t[: 2 * mx, : 2 * my, : 2 * mz]
        .reshape(mx, 2, my, 2, mz, 2)
        .transpose(0, 2, 4, 1, 3, 5)
        .reshape(mx * my * mz, 8)
    )
    presence = np.zeros((blocks.shape[0], IGNORE + 1), dtype=bool)
    presence[np.arange(blocks.shape[0])[:, None], blocks] = True
    return presence


def relation_matrix(target_coarse: np.ndarray, n_relations: int = 4) -> np.ndarray:
    """CRP relation ground truth, (n_relations, M, N3) uint8 in {0, 1}.

    Entry (r, m, n) is 1 when voxel n (C-order over ``target_coarse``) and at least one
    non-ignore voxel of mega block m (C-order over the halved grid) satisfy relation r.
    4 relations (official non-binary case): 0 same class, both non-empty; 1 different
    classes, both non-empty; 2 both empty; 3 one empty, the other not. 2 relations
    (official ``is_binary``): 0 different, 1 same. Ignore voxels (255) never relate.

    The official matrix is stored (R, N3, M); its loss transposes ``P_logits`` to match,
    so this (R, M, N3) layout pairs the same elements with no transpose.
    """
    t = _as_labels(target_coarse, "target_coarse")
    if any(s < 2 for s in t.shape):
        raise ValueError(f"target_coarse {t.shape}: every axis needs at least 2 voxels")
    row = t.reshape(-1)  # (N3,)
    presence = _mega_presence(t)  # (M, 256)
    member = presence[:, row]  # (M, N3): voxel n's own label occurs in block m
    row_valid = row != IGNORE
    if n_relations == 2:
        n_distinct = presence[:, :IGNORE].sum(axis=1)  # non-ignore labels per block
        diff = row_valid[None] & ((n_distinct[:, None] - member) > 0)
        same = row_valid[None] & member
        return np.stack([diff, same]).astype(np.uint8)
    if n_relations != 4:
        raise ValueError(f"n_relations must be 4 (or 2, the binary variant), got {n_relations}")
    row_empty = row == EMPTY
    row_full = row_valid & ~row_empty
    has_empty = presence[:, EMPTY]
    n_full = presence[:, EMPTY + 1 : IGNORE].sum(axis=1)  # distinct non-empty labels
    same_full = member & row_full[None]
    diff_full = row_full[None] & ((n_full[:, None] - same_full) > 0)
    both_empty = row_empty[None] & has_empty[:, None]
    mixed = (row_empty[None] & (n_full > 0)[:, None]) | (row_full[None] & has_empty[:, None])
    return np.stack([same_full, diff_full, both_empty, mixed]).astype(np.uint8)


# --- frustum proportion loss ---------------------------------------------------------


def _tile_index(coord: np.ndarray, extent: int, size: int) -> np.ndarray:
    """Tile of each integer pixel coordinate, -1 outside [0, extent).

    Tile i spans [i/size*extent, (i+1)/size*extent) with the official float bounds."""
    starts = np.array([(i * 1.0 / size) * extent for i in range(size)])
    idx = np.searchsorted(starts, coord.astype(np.float64), side="right") - 1
    inside = (coord >= 0) & (coord < extent)  # the last tile ends at 1.0 * extent
    return np.where(inside, idx, -1)


def local_frustums(
    pixels: np.ndarray,
    fov: np.ndarray,
    depth: np.ndarray,
    target: np.ndarray,
    image_hw: tuple[int, int],
    n_classes: int,
    frustum_size: int = 8,
    ignore_index: int = IGNORE,
) -> tuple[np.ndarray, np.ndarray]:
    """Local-frustum masks (F, X, Y, Z) bool and class counts (F, n_classes) float32.

    The image is cut into frustum_size x frustum_size tiles, row-major (tile index
    iy * size + ix). A voxel belongs to a tile's frustum when, in any view, it projects
    into that tile with positive depth, and its target is not ``ignore_index``.

    ``pixels``/``fov``/``depth`` are (V, N, 2)/(V, N)/(V, N) from
    ``project_pixels_official`` on the *output* grid (the official uses
    ``projected_pix_1``, the 0.2 m grid), computed before any flip augmentation (the
    official dataset builds the frustums before it flips the pixels). The official code
    tests only tile bounds and depth > 0; ``fov`` is also required here because
    ``project_pixels_official`` zeroes the pixels of unseen voxels.
    """
    pixels, fov, depth = np.asarray(pixels), np.asarray(fov, dtype=bool), np.asarray(depth)
    t = _as_labels(target, "target")
    n = t.size
    if pixels.ndim != 3 or pixels.shape[1:] != (n, 2):
        raise ValueError(f"pixels must be (V, {n}, 2) for target {t.shape}, got {pixels.shape}")
    if fov.shape != pixels.shape[:2] or depth.shape != pixels.shape[:2]:
        raise ValueError(f"fov {fov.shape} and depth {depth.shape} must be {pixels.shape[:2]}")
    if frustum_size < 1:
        raise ValueError(f"frustum_size must be >= 1, got {frustum_size}")
    labels = t.reshape(-1)
    valid = labels != ignore_index
    if valid.any() and labels[valid].max() >= n_classes:
        raise ValueError(f"target has label {labels[valid].max()} >= n_classes {n_classes}")
    h, w = image_hw
    n_frustums = frustum_size * frustum_size
    masks = np.zeros((n_frustums, n), dtype=bool)
    counts = np.zeros(n_frustums * n_classes, dtype=np.int64)
    seen_tiles: list[np.ndarray] = []
    for v in range(pixels.shape[0]):
        ix = _tile_index(pixels[v, :, 0], w, frustum_size)
        iy = _tile_index(pixels[v, :, 1], h, frustum_size)
        tile = np.where(fov[v] & (depth[v] > 0) & (ix >= 0) & (iy >= 0), iy * frustum_size + ix, -1)
        hit = (tile >= 0) & valid
        masks[tile[hit], np.nonzero(hit)[0]] = True
        # Count a voxel once per tile even when several views put it in the same tile.
        new = hit.copy()
        for earlier in seen_tiles:
            new &= tile != earlier
        counts += np.bincount(tile[new] * n_classes + labels[new], minlength=counts.size)
        seen_tiles.append(tile)
    class_dists = counts.reshape(n_frustums, n_classes).astype(np.float32)
    return masks.reshape(n_frustums, *t.shape), class_dists


# --- depth supervision ---------------------------------------------------------------


def _nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Source rows of torch's legacy ``mode="nearest"`` resize: floor(i * in/out) with
    a float32 scale and float32 product, clamped to in_size - 1."""
    scale = np.float32(np.float32(in_size) / np.float32(out_size))
    idx = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, in_size - 1)


def depth_labels(
    depth_m: np.ndarray,
    d_min: float,
    d_max: float,
    d_step: float,
    feature_scale: int,
    out_hw: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Depth-bin labels (h*w,) int64 and foreground mask (h*w,) bool, row-major.

    ``depth_m``: (H, W) metric depth of the *left* input image (0 = no depth), already
    cropped/flipped like the image. ``out_hw``: the depth logits' (h, w).
    Official pipeline: nearest resize to (h*s, w*s) (370x1220 -> 376x1224 for KITTI),
    per s x s patch the minimum non-zero depth, then a UNIFORM bin
    floor((d - d_min) / d_step). Quirk reproduced: the sampler reads the same channels
    as LID bins; the loss treats them as uniform 0.5 m bins.
    Background (d < d_min, d >= d_max, no depth) has fg False and label -1.
    """
    d = np.asarray(depth_m, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"depth_m must be (H, W), got shape {d.shape}")
    if feature_scale < 1:
        raise ValueError(f"feature_scale must be >= 1, got {feature_scale}")
    h, w = out_hw
    s = feature_scale
    up = d[np.ix_(_nearest_indices(d.shape[0], h * s), _nearest_indices(d.shape[1], w * s))]
    patches = np.where(up == 0.0, np.float32(NO_DEPTH), up).reshape(h, s, w, s)
    nearest = patches.min(axis=(1, 3)).reshape(-1)
    n_bins = int((d_max - d_min) / d_step)
    # Official arithmetic, in float32: shift by one bin so that index 0 means "outside",
    # keep [0, n_bins + 1), truncate, and drop one-hot column 0.
    g = (nearest - np.float32(d_min - d_step)) / np.float32(d_step)
    in_range = (g >= 0.0) & (g < n_bins + 1)
    shifted = np.where(in_range, g, np.float32(0.0)).astype(np.int64)
    fg = shifted >= 1
    return np.where(fg, shifted - 1, -1).astype(np.int64), fg
