"""SemanticKITTI voxel files: bit-packed .bin/.invalid/.occluded and uint16 .label.

Layout (OccDepth io_data.py): C-order [x, y, z] over 256x256x32 voxels; bit
files pack 8 voxels per byte, most significant bit first.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..classes import ClassSet

SEMANTIC_KITTI_GRID = (256, 256, 32)
SEMANTIC_KITTI_VOXEL = 0.2  # m
SEMANTIC_KITTI_ORIGIN = (0.0, -25.6, -2.0)  # velodyne frame, corner of voxel (0, 0, 0)
SEMANTIC_KITTI_EXTENT = tuple(d * SEMANTIC_KITTI_VOXEL for d in SEMANTIC_KITTI_GRID)
#: The benchmark's splits by sequence folder: labels exist for 00-10 (08 is the validation
#: split); 11-21 are the hidden test set a submission must cover.
SEMANTIC_KITTI_SPLITS = {
    "train": ("00", "01", "02", "03", "04", "05", "06", "07", "09", "10"),
    "val": ("08",),
    "test": tuple(f"{s:02d}" for s in range(11, 22)),
}


def pack_bits(mask: np.ndarray) -> np.ndarray:
    """Bool/0-1 array (any shape, C-order) -> uint8 bytes, MSB first."""
    flat = np.asarray(mask).reshape(-1).astype(bool)
    if flat.size % 8:
        raise ValueError(f"bit-packed voxel files need a multiple of 8 voxels, got {flat.size}")
    return np.packbits(flat, bitorder="big")


def unpack_bits(packed: np.ndarray) -> np.ndarray:
    """uint8 bytes -> flat bool array, MSB first."""
    return np.unpackbits(np.asarray(packed, dtype=np.uint8), bitorder="big").astype(bool)


def read_bit_voxels(path: str | Path, grid: tuple[int, int, int] = SEMANTIC_KITTI_GRID) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.uint8)
    n = int(np.prod(grid))
    if raw.size * 8 != n:
        raise ValueError(f"{path}: {raw.size} bytes do not hold {n} voxels of grid {grid}")
    return unpack_bits(raw).reshape(grid)


def write_bit_voxels(path: str | Path, mask: np.ndarray) -> None:
    pack_bits(mask).tofile(path)


def read_label(path: str | Path, grid: tuple[int, int, int] = SEMANTIC_KITTI_GRID) -> np.ndarray:
    """A uint16 ``.label`` file as a grid; any other size is refused, naming the file."""
    n = int(np.prod(grid))
    size = Path(path).stat().st_size
    if size != 2 * n:
        raise ValueError(f"{path}: {size} bytes; a .label of grid {grid} holds {n} uint16 labels ({2 * n} bytes)")
    return np.fromfile(path, dtype="<u2").reshape(grid)


def write_label(path: str | Path, labels: np.ndarray, class_set: ClassSet | None = None) -> None:
    """Raw SemanticKITTI ids -> uint16 ``.label``. Ids outside uint16, or unknown to the
    class set's learning map (default: SemanticKITTI's), are refused before anything is
    written: a cast would wrap them (70000 -> 4464, -1 -> 65535) into wrong labels."""
    raw = _as_int_array(labels, str(path)).reshape(-1)
    if raw.size and (raw.min() < 0 or raw.max() > np.iinfo(np.uint16).max):
        raise ValueError(f"{path}: raw label ids must lie in [0, 65535] (uint16), "
                         f"got range [{int(raw.min())}, {int(raw.max())}]")
    check_raw_ids(raw, str(path), class_set)
    raw.astype("<u2").tofile(path)


def known_raw_ids(class_set: ClassSet) -> np.ndarray:
    """Raw id -> bool: the id is a key of the class set's learning map."""
    known = np.zeros(max(class_set.learning_map) + 1, dtype=bool)
    known[list(class_set.learning_map)] = True
    return known


def check_raw_ids(raw: np.ndarray, where: str, class_set: ClassSet | None = None) -> None:
    """Refuse ids that are not raw label ids of the class set (default: SemanticKITTI)."""
    if class_set is None:
        from ..classes import load_class_set

        class_set = load_class_set()
    flat = np.asarray(raw).reshape(-1)
    known = known_raw_ids(class_set)
    inside = flat < known.size
    bad = ~inside
    bad[inside] = ~known[flat[inside]]
    if bad.any():
        ids = np.unique(flat[bad])
        raise ValueError(f"{where}: {int(bad.sum())} voxels hold ids that are not {class_set.name} raw label ids: "
                         f"{ids[:8].tolist()}{' ...' if ids.size > 8 else ''}")


def read_prediction(path: str | Path, class_set: ClassSet,
                    grid: tuple[int, int, int] = SEMANTIC_KITTI_GRID) -> np.ndarray:
    """A submission ``.label`` (raw ids) -> classes (uint8 grid), as the benchmark remaps
    it. Refused, naming the file: a wrong size, ids unknown to the learning map, and ids
    the map sends to ignore (outlier, other-structure, other-object): the benchmark has
    no class to score them as."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"prediction file not found: {path}")
    raw = read_label(path, grid)
    check_raw_ids(raw, str(path), class_set)
    classes = class_set.remap_lut()[raw]
    unscored = classes == class_set.ignore_index
    if unscored.any():
        ids = np.unique(raw[unscored])
        raise ValueError(f"{path}: {int(unscored.sum())} voxels hold raw ids the learning map sends to ignore "
                         f"({ids.tolist()}); a prediction holds one of the ids learning_map_inv writes")
    return classes


# --- targets: raw labels -> training classes and back -------------------------

#: Files one labelled SemanticKITTI frame consists of, by role.
VOXEL_EXTENSIONS = ("bin", "label", "invalid", "occluded")


def frame_name(frame: int | str) -> str:
    """KITTI frame stem: ints become six digits, strings are kept (e.g. '000125')."""
    if isinstance(frame, (int, np.integer)):
        if frame < 0:
            raise ValueError(f"frame index must be >= 0, got {frame}")
        return f"{int(frame):06d}"
    name = str(frame)
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"invalid frame id {frame!r}")
    return name


def _as_int_array(values: np.ndarray, what: str) -> np.ndarray:
    """Integer view of a label array; floats (the official .npy targets) must be whole."""
    arr = np.asarray(values)
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)):
            raise ValueError(f"{what}: expected finite integer labels, got dtype {arr.dtype}")
        rounded = np.rint(arr)
        if np.any(rounded != arr):
            raise ValueError(f"{what}: labels must be whole numbers")
        arr = rounded
    return arr.astype(np.int64, copy=False)


def remap_to_target(raw_labels: np.ndarray, invalid: np.ndarray | None, class_set: ClassSet) -> np.ndarray:
    """Raw SemanticKITTI ids -> SSC target (uint8, same shape), as the official preprocess.

    Ids the learning map sends to empty (outlier, other-structure, other-object)
    become ignore, only raw 0 stays empty; ids unknown to the map become ignore;
    voxels flagged in ``invalid`` become ignore as well.
    """
    raw = _as_int_array(raw_labels, "raw_labels")
    if raw.size and raw.min() < 0:
        raise ValueError(f"raw_labels: negative label id {int(raw.min())}")
    lut = class_set.remap_lut()
    # Ids past the table are unknown labels -> ignore (official: a 100-entry slack of zeros -> 255).
    safe = np.where(raw < lut.size, raw, 0)
    target = np.where(raw < lut.size, lut[safe], class_set.ignore_index).astype(np.uint8)
    if invalid is not None:
        inv = np.asarray(invalid)
        if inv.size != raw.size:
            raise ValueError(f"invalid mask has {inv.size} voxels, raw_labels has {raw.size}")
        target[inv.reshape(raw.shape).astype(bool)] = class_set.ignore_index
    return target


def target_to_raw(pred_classes: np.ndarray, class_set: ClassSet) -> np.ndarray:
    """Class predictions -> raw SemanticKITTI ids (uint16), for submission .label files."""
    pred = _as_int_array(pred_classes, "pred_classes")
    if pred.size and (pred.min() < 0 or pred.max() >= class_set.n_classes):
        raise ValueError(
            f"pred_classes: values must lie in [0, {class_set.n_classes}), "
            f"got range [{int(pred.min())}, {int(pred.max())}]"
        )
    return class_set.inverse_lut()[pred].astype(np.uint16)


def downsample_target(target: np.ndarray, factor: int, ignore_index: int = 255) -> np.ndarray:
    """Block-downsample an SSC target (official ``_downsample_label``, used for 1_8 CRP GT).

    Per factor^3 block: if more than 95% of it is empty (0) or ignore (255),
    the block is 0 when empty voxels outnumber ignore voxels, else 255 (ties ->
    255); otherwise it takes the most frequent label in 1..254 (ties -> smallest).
    """
    if factor < 1:
        raise ValueError(f"downsample factor must be >= 1, got {factor}")
    t = _as_int_array(target, "target")
    if t.ndim != 3:
        raise ValueError(f"target must be a 3D grid, got shape {t.shape}")
    if t.size and (t.min() < 0 or t.max() > 255):
        raise ValueError(f"target: labels must lie in [0, 255], got range [{t.min()}, {t.max()}]")
    if factor == 1:
        return t.astype(np.uint8)
    small, blocks = _blocks(t, factor)
    hist, values = _block_histograms(blocks)
    n_empty = hist[:, values == 0].sum(axis=1)
    n_ignore = hist[:, values == ignore_index].sum(axis=1)
    labelled = np.where((values == 0) | (values == ignore_index), 0, hist)
    # values are sorted, so argmax picks the smallest label among ties (np.bincount rule)
    majority = values[labelled.argmax(axis=1)]
    threshold = 0.95 * factor * factor * factor  # same float expression as the official code
    mostly_empty = (n_empty + n_ignore) > threshold
    empty_value = np.where(n_empty > n_ignore, 0, ignore_index)
    return np.where(mostly_empty, empty_value, majority).astype(np.uint8).reshape(small)


def semantic_kitti_factor(origin, extent, voxel_size: float) -> int:
    """Nearest-upsampling factor from a grid onto the 256x256x32 / 0.2 m benchmark grid.

    The grid must cover the benchmark volume with voxels of an integer multiple of
    0.2 m; otherwise a ValueError names the grid (its labels cannot be scored)."""
    factor = voxel_size / SEMANTIC_KITTI_VOXEL
    k = int(round(factor))
    if (np.allclose(origin, SEMANTIC_KITTI_ORIGIN) and np.allclose(extent, SEMANTIC_KITTI_EXTENT)
            and k >= 1 and abs(factor - k) <= 1e-6):
        return k
    dims = tuple(int(round(e / voxel_size)) for e in extent)
    raise ValueError(
        f"model grid {dims[0]}x{dims[1]}x{dims[2]} of {voxel_size:g} m voxels from origin "
        f"{tuple(float(o) for o in origin)} does not map onto the SemanticKITTI grid "
        f"{'x'.join(map(str, SEMANTIC_KITTI_GRID))} of {SEMANTIC_KITTI_VOXEL} m voxels from {SEMANTIC_KITTI_ORIGIN}"
    )


def to_semantic_kitti_grid(labels: np.ndarray, origin, extent, voxel_size: float) -> np.ndarray | None:
    """Labels on the 256x256x32 / 0.2 m benchmark grid, by nearest upsampling, if the
    grid covers the benchmark volume with an integer multiple of 0.2 m; else None."""
    try:
        k = semantic_kitti_factor(origin, extent, voxel_size)
    except ValueError:
        return None
    out = upsample_labels(labels, k)
    return out if out.shape == SEMANTIC_KITTI_GRID else None


def upsample_labels(labels: np.ndarray, factor: int) -> np.ndarray:
    """Nearest upsampling of a label grid by ``factor`` on every axis."""
    return labels if factor == 1 else labels.repeat(factor, 0).repeat(factor, 1).repeat(factor, 2)


def _blocks(t: np.ndarray, factor: int) -> tuple[tuple[int, int, int], np.ndarray]:
    """Split a 3D grid into factor^3 blocks: (coarse shape, (n_blocks, factor^3) values)."""
    if any(s % factor for s in t.shape):
        raise ValueError(f"target shape {t.shape} is not divisible by factor {factor}")
    small = tuple(s // factor for s in t.shape)
    blocks = t.reshape(small[0], factor, small[1], factor, small[2], factor).transpose(0, 2, 4, 1, 3, 5)
    return small, blocks.reshape(-1, factor**3)


def _block_histograms(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row counts of each distinct value: (n_rows, n_values) counts, sorted values."""
    values, codes = np.unique(blocks, return_inverse=True)
    n_rows, k = blocks.shape[0], values.size
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), blocks.shape[1])
    hist = np.bincount(rows * k + codes.ravel(), minlength=n_rows * k).reshape(n_rows, k)
    return hist, values


# --- one frame's voxel files ------------------------------------------------------


def _check_size(array: np.ndarray, grid: tuple[int, int, int], path: Path) -> np.ndarray:
    arr = np.asarray(array)
    n = int(np.prod(grid))
    if arr.size != n:
        raise ValueError(f"{path}: got {arr.size} voxels (shape {arr.shape}), grid {grid} needs {n}")
    return arr.reshape(grid)


def read_frame_target(
    voxel_dir: str | Path,
    frame_id: int | str,
    class_set: ClassSet | None = None,
    grid: tuple[int, int, int] = SEMANTIC_KITTI_GRID,
) -> np.ndarray:
    """``<frame>.label`` + ``<frame>.invalid`` -> the 1_1 SSC target (uint8 grid)."""
    if class_set is None:
        from ..classes import load_class_set

        class_set = load_class_set()
    stem = Path(voxel_dir) / frame_name(frame_id)
    label_path, invalid_path = stem.with_suffix(".label"), stem.with_suffix(".invalid")
    for path in (label_path, invalid_path):
        if not path.is_file():
            raise FileNotFoundError(f"voxel file not found: {path}")
    raw = read_label(label_path, grid)
    invalid = read_bit_voxels(invalid_path, grid)
    return remap_to_target(raw, invalid, class_set)


def write_frame_voxels(
    voxel_dir: str | Path,
    frame_id: int | str,
    raw_labels: np.ndarray,
    invalid: np.ndarray,
    occupancy: np.ndarray | None = None,
    occluded: np.ndarray | None = None,
    grid: tuple[int, int, int] = SEMANTIC_KITTI_GRID,
) -> dict[str, Path]:
    """Write one frame as SemanticKITTI files; missing bit grids are written all-zero.

    Returns the written paths by extension. Sizes are checked before anything is
    written so a bad call leaves no half-written frame behind.
    """
    out_dir = Path(voxel_dir)
    stem = out_dir / frame_name(frame_id)
    paths = {ext: stem.with_suffix(f".{ext}") for ext in VOXEL_EXTENSIONS}
    zeros = np.zeros(grid, dtype=bool)
    labels = _check_size(raw_labels, grid, paths["label"])
    labels = _as_int_array(labels, str(paths["label"]))
    if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.uint16).max):
        raise ValueError(f"{paths['label']}: raw label ids must fit uint16")
    check_raw_ids(labels, str(paths["label"]))
    bits = {
        "invalid": _check_size(invalid, grid, paths["invalid"]),
        "bin": zeros if occupancy is None else _check_size(occupancy, grid, paths["bin"]),
        "occluded": zeros if occluded is None else _check_size(occluded, grid, paths["occluded"]),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_label(paths["label"], labels)
    for ext, mask in bits.items():
        write_bit_voxels(paths[ext], mask)
    return paths
