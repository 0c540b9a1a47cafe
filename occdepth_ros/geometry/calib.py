"""Stereo rig calibration: KITTI calib.txt files and rectified projection matrices.

Every camera is described the way OccDepth uses it: an intrinsic matrix ``K`` and
a rigid transform ``T`` from the voxel grid's frame into that camera's rectified
frame, with ``T = inv(K) @ P @ T_grid_to_ref``. Keeping ``P``'s fourth column in
``T`` is what puts the right camera at its baseline (OccDepth's calibration fix).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .poses import check_rigid


class CalibrationError(ValueError):
    """A calibration is missing, malformed or physically impossible."""


@dataclass(frozen=True)
class Camera:
    """One rectified pinhole camera of the rig, at the network's input resolution."""

    K: np.ndarray  # (3, 3) float64 intrinsics
    T_grid_to_cam: np.ndarray  # (4, 4) float64 grid frame -> this camera's frame
    width: int
    height: int

    @property
    def P_grid(self) -> np.ndarray:
        """(3, 4) projection of grid-frame points to pixels."""
        return self.K @ self.T_grid_to_cam[:3]


@dataclass(frozen=True)
class StereoRig:
    """The cameras the model looks through, left (reference) first."""

    cameras: tuple[Camera, ...]

    @property
    def n_views(self) -> int:
        return len(self.cameras)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width), shared by all views."""
        return self.cameras[0].height, self.cameras[0].width

    def baseline(self) -> float:
        """Distance between the first two camera centres, in metres."""
        if self.n_views < 2:
            return 0.0
        c = [np.linalg.inv(cam.T_grid_to_cam)[:3, 3] for cam in self.cameras[:2]]
        return float(np.linalg.norm(c[0] - c[1]))


def _validate_projection(P: np.ndarray, name: str) -> np.ndarray:
    P = np.asarray(P, dtype=np.float64)
    if P.shape != (3, 4):
        raise CalibrationError(f"{name}: expected a 3x4 projection matrix, got shape {P.shape}")
    if not np.all(np.isfinite(P)):
        raise CalibrationError(f"{name}: projection matrix has non-finite entries")
    K = P[:, :3]
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise CalibrationError(f"{name}: focal lengths must be positive (fx={K[0, 0]}, fy={K[1, 1]})")
    if abs(K[2, 2] - 1.0) > 1e-6 or abs(K[2, 0]) > 1e-9 or abs(K[2, 1]) > 1e-9:
        raise CalibrationError(f"{name}: last row of K must be [0, 0, 1], got {K[2].tolist()}")
    if abs(K[1, 0]) > 1e-9:
        raise CalibrationError(f"{name}: K[1, 0] must be 0 for a rectified camera")
    return P


def as_rigid(T: np.ndarray, name: str) -> np.ndarray:
    """A 3x4 or 4x4 rigid transform as 4x4 float64; CalibrationError naming ``name`` otherwise."""
    return check_rigid(T, name, CalibrationError)


def rig_from_projections(
    projections: Sequence[np.ndarray],
    T_grid_to_ref: np.ndarray,
    image_size: tuple[int, int],
) -> StereoRig:
    """Build a rig from rectified projection matrices (KITTI P2/P3, CameraInfo.p).

    ``projections`` map points in the common rectified reference frame to pixels;
    ``T_grid_to_ref`` maps the voxel grid's frame into that reference frame.
    ``image_size`` is (height, width) of the images the projections belong to.
    """
    if len(projections) == 0:
        raise CalibrationError("at least one camera projection is needed")
    h, w = int(image_size[0]), int(image_size[1])
    if h <= 0 or w <= 0:
        raise CalibrationError(f"image size must be positive, got {image_size}")
    T_ref = as_rigid(T_grid_to_ref, "T_grid_to_ref")
    cams = []
    for i, P in enumerate(projections):
        P = _validate_projection(P, f"camera {i}")
        K = P[:, :3].copy()
        T = np.eye(4)
        T[:3] = np.linalg.inv(K) @ P @ T_ref
        cams.append(Camera(K=K, T_grid_to_cam=T, width=w, height=h))
    return StereoRig(tuple(cams))


@dataclass(frozen=True, eq=False)
class StereoCalibration:
    """Rectified projections of the raw camera images and the grid pose.

    ``projections[i]`` (3x4) map the common rectified frame to raw pixels of view i
    (KITTI P2/P3, sensor_msgs/CameraInfo.p); ``T_grid_to_ref`` (4x4) maps the voxel
    grid's frame into that rectified frame; ``image_size`` is the raw (height, width).
    """

    projections: tuple[np.ndarray, ...]
    T_grid_to_ref: np.ndarray
    image_size: tuple[int, int]

    def key(self) -> bytes:
        """Bytes that identify the calibration (equality, hashing, lookup caching)."""
        parts = [np.asarray(p, np.float64).tobytes() for p in self.projections]
        parts += [np.asarray(self.T_grid_to_ref, np.float64).tobytes(), np.asarray(self.image_size).tobytes()]
        return b"".join(parts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StereoCalibration) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())


# --- KITTI odometry calib.txt -------------------------------------------------

KITTI_MATRIX_KEYS = ("P0", "P1", "P2", "P3", "Tr")


def parse_kitti_calib(text: str, source: str = "calib.txt") -> dict[str, np.ndarray]:
    """Parse KITTI odometry ``calib.txt`` text into 3x4 float64 matrices."""
    out: dict[str, np.ndarray] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):  # comments: e.g. the image size line
            continue
        if ":" not in line:
            raise CalibrationError(f"{source}:{lineno}: expected 'KEY: v1 ... v12'")
        key, values = line.split(":", 1)
        try:
            nums = np.array([float(v) for v in values.split()], dtype=np.float64)
        except ValueError as exc:
            raise CalibrationError(f"{source}:{lineno}: {key} has a non-numeric entry") from exc
        if nums.size != 12:
            raise CalibrationError(f"{source}:{lineno}: {key} has {nums.size} numbers, expected 12")
        out[key.strip()] = nums.reshape(3, 4)
    return out


def read_kitti_calib(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration file not found: {path}")
    return parse_kitti_calib(path.read_text(), str(path))


# KITTI calib.txt records no image size; a comment line ``# image_size: <width> <height>``
# says which images a file is for (the shipped 00-02 file carries one).
IMAGE_SIZE_COMMENT = "# image_size:"


def kitti_calib_image_size(text: str, source: str = "calib.txt") -> tuple[int, int] | None:
    """(height, width) from the ``# image_size: W H`` line, or None if there is none."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(IMAGE_SIZE_COMMENT):
            parts = line[len(IMAGE_SIZE_COMMENT):].split()
            if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
                raise CalibrationError(f"{source}: expected '{IMAGE_SIZE_COMMENT} <width> <height>', got {line!r}")
            return int(parts[1]), int(parts[0])
    return None


def write_kitti_calib(path: str | Path, matrices: dict[str, np.ndarray],
                      image_size: tuple[int, int] | None = None) -> None:
    """``image_size`` (height, width), if given, is written as the image size comment."""
    lines = [] if image_size is None else [f"{IMAGE_SIZE_COMMENT} {int(image_size[1])} {int(image_size[0])}"]
    for key in KITTI_MATRIX_KEYS:
        if key in matrices:
            vals = np.asarray(matrices[key], dtype=np.float64).reshape(-1)[:12]
            lines.append(f"{key}: " + " ".join(f"{v:.12e}" for v in vals))
    Path(path).write_text("\n".join(lines) + "\n")


def kitti_stereo_rig(calib: dict[str, np.ndarray], image_size: tuple[int, int]) -> StereoRig:
    """Left = image_2 (P2), right = image_3 (P3), grid frame = velodyne (Tr)."""
    missing = [k for k in ("P2", "P3", "Tr") if k not in calib]
    if missing:
        raise CalibrationError(f"KITTI calibration lacks {', '.join(missing)}")
    return rig_from_projections([calib["P2"], calib["P3"]], calib["Tr"], image_size)


def kitti_calibration(calib: dict[str, np.ndarray], image_size: tuple[int, int]) -> StereoCalibration:
    """KITTI odometry: left = image_2 (P2), right = image_3 (P3), grid = velodyne (Tr)."""
    missing = [k for k in ("P2", "P3", "Tr") if k not in calib]
    if missing:
        raise CalibrationError(f"KITTI calibration lacks {', '.join(missing)}")
    P = tuple(_validate_projection(calib[k], k) for k in ("P2", "P3"))
    return StereoCalibration(P, as_rigid(calib["Tr"], "Tr"), tuple(image_size))


# Grid frame (x forward, y left, z up) -> camera optical frame (x right, y down, z forward),
# both at the same origin: the default pose of the grid for a generic stereo camera.
GRID_TO_OPTICAL = np.array(
    [[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


def _numbers(value, name: str, source: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{source}: {name} must be a list of numbers ({exc})") from exc


def _matrix(value, shape: tuple[int, int], name: str, source: str) -> np.ndarray:
    arr = _numbers(value, name, source)
    if arr.size != shape[0] * shape[1]:
        raise CalibrationError(f"{source}: {name} needs {shape[0] * shape[1]} numbers, got {arr.size}")
    return arr.reshape(shape)


def stereo_calibration_from_yaml(data: dict, image_size: tuple[int, int], source: str = "calibration") -> StereoCalibration:
    """Our stereo YAML: left_projection / right_projection (12 numbers each, rectified P
    of the raw images), optional grid_to_camera (12 or 16 numbers; grid frame -> the
    left rectified camera; default GRID_TO_OPTICAL), optional image_width/height."""
    if not isinstance(data, dict):
        raise CalibrationError(f"{source}: expected a mapping")
    for key in ("left_projection", "right_projection"):
        if key not in data:
            raise CalibrationError(f"{source}: missing {key}")
    P = tuple(_matrix(data[k], (3, 4), k, source) for k in ("left_projection", "right_projection"))
    for i, p in enumerate(P):
        _validate_projection(p, f"{source} camera {i}")
    T = GRID_TO_OPTICAL
    if "grid_to_camera" in data:
        raw = _numbers(data["grid_to_camera"], "grid_to_camera", source)
        T = as_rigid(raw.reshape(4, 4) if raw.size == 16 else _matrix(raw, (3, 4), "grid_to_camera", source),
                      f"{source} grid_to_camera")
    for key, actual in (("image_height", image_size[0]), ("image_width", image_size[1])):
        if data.get(key) is not None and int(data[key]) != int(actual):
            raise CalibrationError(
                f"{source}: {key} is {data[key]} but the images are {image_size[1]}x{image_size[0]}"
            )
    return StereoCalibration(P, T, tuple(image_size))


def calibration_from_camera_info(
    left_p, right_p, width: int, height: int, T_grid_to_ref: np.ndarray = GRID_TO_OPTICAL
) -> StereoCalibration:
    """A rectified sensor_msgs/CameraInfo pair (the 12-number ``p`` arrays) and the grid's
    pose in their common rectified reference frame: the left camera when its p[3] is 0
    (stereo_image_proc convention), cam0 for KITTI's P2/P3."""
    P = tuple(_validate_projection(_matrix(p, (3, 4), name, "camera_info"), name)
              for p, name in ((left_p, "left camera_info.p"), (right_p, "right camera_info.p")))
    # Camera x position in the reference frame is -p[3]/fx; the right camera must be to the right.
    x_left, x_right = (-p[0, 3] / p[0, 0] for p in P)
    if x_right <= x_left:
        raise CalibrationError(
            f"right camera is not to the right of the left one (x {x_right:.4f} m vs {x_left:.4f} m "
            "from p[3] = -fx * x): are the left and right topics swapped?"
        )
    return StereoCalibration(P, as_rigid(T_grid_to_ref, "T_grid_to_ref"), (int(height), int(width)))


def load_calibration_file(path: str | Path, image_size: tuple[int, int]) -> StereoCalibration:
    """KITTI ``calib.txt`` or our stereo YAML, for raw images of ``image_size`` (h, w)."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration file not found: {path}")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return stereo_calibration_from_yaml(yaml.safe_load(path.read_text()), image_size, str(path))
    return kitti_calibration(read_kitti_calib(path), image_size)


def calibration_file_image_size(path: str | Path) -> tuple[int, int] | None:
    """(height, width) of the images a calibration file is for, where the file says:
    a stereo YAML's image_width/image_height, a KITTI calib.txt's image size comment."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration file not found: {path}")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(path.read_text())
        if not isinstance(data, dict):
            raise CalibrationError(f"{path}: expected a mapping")
        w, h = data.get("image_width"), data.get("image_height")
        if w is None and h is None:
            return None
        if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
            raise CalibrationError(f"{path}: image_width and image_height must both be positive integers")
        return h, w
    return kitti_calib_image_size(path.read_text(), str(path))


# A scaled calibration keeps the aspect ratio: the other side may be off by rounding only.
SCALE_ROUNDING_PX = 1.0


def fit_calibration(calib: StereoCalibration, image_size: tuple[int, int],
                    allow_scaling: bool) -> tuple[StereoCalibration, str | None]:
    """The calibration for images of ``image_size`` (h, w), and a note when it was scaled.

    Another size than the calibration's is an error naming both sizes, unless
    ``allow_scaling`` and the aspect ratio agree (to rounding): then rows 0 and 1 of every
    projection are scaled by width and height ratios (image_proc's resize convention)."""
    (ch, cw), (h, w) = calib.image_size, (int(image_size[0]), int(image_size[1]))
    if (ch, cw) == (h, w):
        return calib, None
    sizes = f"the calibration is for {cw}x{ch} images but the images are {w}x{h}"
    if not allow_scaling:
        raise CalibrationError(f"{sizes}; use the calibration of this camera (or allow scaling of the "
                               "intrinsics where the images are a resized copy of the calibrated ones)")
    if abs(ch * w / cw - h) > SCALE_ROUNDING_PX:
        raise CalibrationError(f"{sizes}; the aspect ratios differ ({cw / ch:.4f} vs {w / h:.4f}), "
                               "so the intrinsics cannot be scaled")
    sx, sy = w / cw, h / ch
    S = np.diag([sx, sy, 1.0])
    scaled = StereoCalibration(tuple(S @ p for p in calib.projections), calib.T_grid_to_ref, (h, w))
    return scaled, f"{sizes}: intrinsics scaled by {sx:.4f} x {sy:.4f}"


SHIPPED_KITTI_CALIB = "kitti_odometry_00-02.txt"  # in config/calib/
KITTI_IMAGE_SIZE = (376, 1241)  # (h, w) of KITTI odometry sequences 00-02


def shipped_kitti_calibration() -> StereoCalibration:
    """The shipped KITTI odometry 00-02 calibration for its 1241x376 images (checks,
    benchmarks and the node's default)."""
    from ..resources import config_path

    return load_calibration_file(config_path("calib", SHIPPED_KITTI_CALIB), KITTI_IMAGE_SIZE)
