"""Read a KITTI odometry / SemanticKITTI sequence folder.

Layout (``<root>/sequences/<seq>/``): ``image_2`` and ``image_3`` (left/right
PNGs), ``calib.txt``, ``times.txt``, optional ``poses.txt`` (cam0 poses),
optional ``voxels/<frame>.{bin,label,invalid,occluded}`` and optional
``depth/<frame>.png``: the offline stereo-depth teacher, uint16 with
metres = value / 256 and 0 = no depth. The teacher may live under another
root with the same layout, hence ``depth_root``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..geometry.calib import read_kitti_calib
from ..geometry.poses import PoseError, check_rigid, grid_poses_from_camera_poses
from .semantic_kitti import SEMANTIC_KITTI_GRID, VOXEL_EXTENSIONS, frame_name, read_frame_target

if TYPE_CHECKING:
    from ..classes import ClassSet

#: Depth PNG scale: stored value = metres * 256.
DEPTH_SCALE = 256.0
#: Largest depth a uint16 depth PNG can hold, in metres.
DEPTH_MAX_M = np.iinfo(np.uint16).max / DEPTH_SCALE


def sequence_dirs(root: str | Path) -> list[Path]:
    """Sequence folders under ``<root>/sequences``, sorted by name."""
    seq_root = Path(root) / "sequences"
    if not seq_root.is_dir():
        raise FileNotFoundError(f"no sequences folder: {seq_root}")
    return sorted(p for p in seq_root.iterdir() if p.is_dir())


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    return path


def _stems(folder: Path, suffix: str) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.is_file() and p.suffix == suffix)


def read_depth_png(path: str | Path) -> np.ndarray:
    """uint16 depth PNG -> float32 metres (0 where there is no depth)."""
    path = _require_file(Path(path))
    with Image.open(path) as img:
        raw = np.asarray(img)
    if raw.ndim != 2 or not np.issubdtype(raw.dtype, np.integer):
        raise ValueError(
            f"{path}: expected a single-channel 16-bit depth PNG, got {raw.dtype} {raw.shape}"
        )
    return (raw.astype(np.float32) / np.float32(DEPTH_SCALE)).astype(np.float32)


def write_depth_png(path: str | Path, depth_m: np.ndarray) -> None:
    """float metres -> uint16 PNG (value = round(m * 256)).

    Non-finite, non-positive and too-far (> ~256 m) depths are stored as 0
    (no depth): a missing teacher pixel is harmless, a clipped one is wrong.
    """
    depth = np.asarray(depth_m, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"{path}: depth map must be 2D (H, W), got shape {depth.shape}")
    scaled = np.rint(np.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0) * DEPTH_SCALE)
    scaled[(scaled <= 0) | (scaled > np.iinfo(np.uint16).max)] = 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(scaled.astype(np.uint16)).save(path, format="PNG")


def _read_float_rows(path: Path, width: int) -> np.ndarray:
    """Whitespace-separated text with ``width`` floats per non-empty line -> (N, width)."""
    rows = []
    for lineno, line in enumerate(_require_file(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            vals = [float(v) for v in line.split()]
        except ValueError as exc:
            raise ValueError(f"{path}:{lineno}: non-numeric entry") from exc
        if len(vals) != width:
            raise ValueError(f"{path}:{lineno}: {len(vals)} numbers, expected {width}")
        rows.append(vals)
    return np.asarray(rows, dtype=np.float64).reshape(-1, width)


def read_poses(path: str | Path) -> np.ndarray:
    """KITTI ``poses.txt``: one row of 12 numbers (a 3x4 matrix, row-major) per frame, the
    pose of camera 0 in the first frame's camera-0 frame (it maps camera-0 coordinates of
    frame i into those of frame 0). Returns (N, 4, 4) float64."""
    rows = _read_float_rows(Path(path), 12)
    poses = np.tile(np.eye(4), (rows.shape[0], 1, 1))
    poses[:, :3, :] = rows.reshape(-1, 3, 4)
    return poses


@dataclass(frozen=True)
class KittiSequence:
    """One sequence folder ``<root>/sequences/<sequence>``; frames are six-digit stems."""

    root: Path
    sequence: str
    depth_root: Path | None = None  # folder holding sequences/<seq>/depth; defaults to root

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        seq = self.sequence
        object.__setattr__(self, "sequence", f"{seq:02d}" if isinstance(seq, int) else str(seq))
        if self.depth_root is not None:
            object.__setattr__(self, "depth_root", Path(self.depth_root))
        if not self.path.is_dir():
            raise FileNotFoundError(f"sequence folder not found: {self.path}")

    @property
    def path(self) -> Path:
        return self.root / "sequences" / self.sequence

    @property
    def voxel_dir(self) -> Path:
        return self.path / "voxels"

    @property
    def depth_dir(self) -> Path:
        base = self.root if self.depth_root is None else self.depth_root
        return base / "sequences" / self.sequence / "depth"

    def frame_ids(self) -> list[str]:
        """Frames with a left image, sorted."""
        left = self.path / "image_2"
        if not left.is_dir():
            raise FileNotFoundError(f"left image folder not found: {left}")
        return _stems(left, ".png")

    def image_paths(self, frame: int | str) -> tuple[Path, Path]:
        """(left image_2, right image_3) PNG paths of a frame; both must exist."""
        name = frame_name(frame)
        return (
            _require_file(self.path / "image_2" / f"{name}.png"),
            _require_file(self.path / "image_3" / f"{name}.png"),
        )

    def calib(self) -> dict[str, np.ndarray]:
        """``calib.txt`` as 3x4 matrices (P0..P3, Tr)."""
        return read_kitti_calib(_require_file(self.path / "calib.txt"))

    def times(self) -> np.ndarray:
        """Frame timestamps in seconds, (N,) float64."""
        return _read_float_rows(self.path / "times.txt", 1)[:, 0]

    def poses(self) -> np.ndarray:
        """cam0-to-world poses from ``poses.txt`` as (N, 4, 4) float64."""
        return read_poses(self.path / "poses.txt")

    def has_poses(self) -> bool:
        return (self.path / "poses.txt").is_file()

    def grid_poses(self, frame_ids: list[str]) -> np.ndarray:
        """``T_odom_from_grid`` (N, 4, 4) of the frames: ``poses.txt`` brought to the grid
        frame through calib.txt's ``Tr`` (geometry.poses; odom = the first frame's grid
        frame). ValueError naming the file (and the line of a pose that is not rigid)."""
        poses_txt, calib_txt = self.path / "poses.txt", self.path / "calib.txt"
        cam0, calib = self.poses(), self.calib()
        if "Tr" not in calib:
            raise ValueError(f"{calib_txt} lacks Tr: the poses cannot be brought to the grid frame")
        idx = [int(fid) for fid in frame_ids]
        if max(idx) >= len(cam0):
            raise ValueError(f"{poses_txt} has {len(cam0)} poses; frame {max(idx):06d} has none")
        try:
            return grid_poses_from_camera_poses(cam0[idx], check_rigid(calib["Tr"], f"{calib_txt} Tr"))
        except PoseError:
            for i in idx:  # name the first pose that is not rigid
                check_rigid(cam0[i], f"{poses_txt} line {i + 1}")
            raise

    def labelled_frames(self) -> list[str]:
        """Frames with a ``voxels/<frame>.label`` file (every 5th frame in SemanticKITTI)."""
        return _stems(self.voxel_dir, ".label")

    def voxel_path(self, frame: int | str, ext: str) -> Path:
        """Path of ``voxels/<frame>.<ext>``; not checked for existence."""
        ext = ext.lstrip(".")
        if ext not in VOXEL_EXTENSIONS:
            raise ValueError(f"unknown voxel file type {ext!r}; expected one of {VOXEL_EXTENSIONS}")
        return self.voxel_dir / f"{frame_name(frame)}.{ext}"

    def read_target(
        self,
        frame: int | str,
        class_set: ClassSet | None = None,
        grid: tuple[int, int, int] = SEMANTIC_KITTI_GRID,
    ) -> np.ndarray:
        """The frame's 1_1 SSC target (uint8, 255 = ignore)."""
        return read_frame_target(self.voxel_dir, frame, class_set, grid)

    def depth_path(self, frame: int | str) -> Path:
        return self.depth_dir / f"{frame_name(frame)}.png"

    def read_depth(self, frame: int | str) -> np.ndarray:
        """Teacher depth of the left image in metres, float32 (0 = no depth)."""
        return read_depth_png(self.depth_path(frame))

    @staticmethod
    def write_depth(path: str | Path, depth_m: np.ndarray) -> None:
        """Write a depth map in the teacher's PNG format (see ``write_depth_png``)."""
        write_depth_png(path, depth_m)
