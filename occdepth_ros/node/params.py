"""The node's parameters: one dataclass, validated once at start with errors that name
the parameter, so a bad launch file fails immediately instead of producing no output."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..geometry.calib import GRID_TO_OPTICAL, SHIPPED_KITTI_CALIB, CalibrationError, as_rigid
from ..model.config import preset_names
from ..runtime.factory import BACKEND_CHOICES, DEFAULT_PRECISION, PRECISIONS
from ..runtime.ort_providers import ORT_PROVIDER_CHOICES
from .input_qos import DEFAULT_INPUT_QOS, INPUT_QOS_CHOICES
from .stereo_sync import IMAGE_STREAMS, STEREO_STREAMS, seconds_to_ns
from ..fusion.class_prior import AUTO as CLASS_PRIOR_AUTO
from ..fusion.class_prior import NONE as CLASS_PRIOR_NONE
from ..fusion.config import DEFAULT_EXTENT_XY_M, FusionConfig
from .voxel_outputs import DEFAULT_FREE_CLASSES

RIGID_SIZES = (12, 16)  # grid_to_camera: 3x4 or 4x4, row-major
MIN_STATS_WINDOW = 2
PATH_PARAMS = ("calib_file", "checkpoint", "map_class_prior")
KITTI_GRID_FRAME = "velodyne"  # KITTI calib.txt's Tr maps velodyne -> cam0
DEFAULT_GRID_FRAME = "occdepth_grid"  # grid_to_camera's source frame (x forward, y left, z up)
KITTI_CALIB = f"config/calib/{SHIPPED_KITTI_CALIB}"  # relative: resolved against the share dir
DEFAULT_ODOM_TOPIC = "/odom"  # nav_msgs/Odometry: absolute, as robots publish it (REP-105's odom)
DEFAULT_ODOM_FRAME = "odom"  # REP-105: the continuous, drifting odometry frame


@dataclass
class NodeParams:
    """The one place of the defaults: the KITTI configuration. With no parameters at all the
    node runs the shipped model on KITTI odometry sequences 00-02's calibration; the config
    YAMLs hold only what differs (a test checks they and the declared defaults agree)."""

    # inputs (image_pipeline names, relative so a namespace or remap moves them)
    left_image_topic: str = "left/image_rect"
    right_image_topic: str = "right/image_rect"
    left_info_topic: str = "left/camera_info"
    right_info_topic: str = "right/camera_info"
    input_qos: str = DEFAULT_INPUT_QOS  # AUTO: reliable, best effort per topic for best-effort publishers
    approximate_sync: bool = True  # cameras stamped from separate clocks (e.g. 0.3 ms apart) still pair
    sync_tolerance_s: float = 0.005  # max stamp spread of a set when approximate_sync; < half the frame period
    queue_size: int = 30  # per image stream: 3 s at 10 Hz, so one stream may stall while the other goes on
    stamp_reset_jump_s: float = 1.0  # a stamp this far back clears the pairing (bag loop); 0 = never
    # calibration: camera_info (+ grid_to_camera), or a calibration file instead
    calib_file: str = KITTI_CALIB  # KITTI calib.txt or stereo YAML; empty = use camera_info
    calib_image_size: tuple[int, ...] = ()  # [width, height] calib_file is for; empty = the file says
    scale_intrinsics_to_image: bool = False  # other image size, same aspect: scale the intrinsics
    grid_to_camera: tuple[float, ...] = ()  # 12/16 numbers, grid -> left optical; empty = GRID_TO_OPTICAL
    # model
    checkpoint: str = ""  # empty = the shipped default model
    preset: str = ""  # empty = taken from the checkpoint
    backend: str = "auto"  # auto | torch | onnxruntime | tensorrt (auto: fastest present; ONNX/engine cached)
    precision: str = DEFAULT_PRECISION  # auto | fp32 | fp16 (tensorrt) | int8 (onnxruntime; docs/INT8.md)
    ort_provider: str = ""  # onnxruntime: openvino | cpu | cuda | tensorrt; empty = the best installed for device
    device: str = "cpu"
    threads: int = 0  # CPU threads (torch, ONNX Runtime); 0 = the library's default
    host_memory_tuning: bool = True  # keep freed host memory for reuse (runtime.host_memory): torch on a CPU
    pipelined: bool = True  # decode / network / message building on their own threads (pipeline_stages)
    host_threads: int = 1  # torch threads of the host stages when pipelined and the network is not torch
    # outputs
    frame_id: str = ""  # frame of the voxel grid; empty = grid_frame(): velodyne for KITTI, else occdepth_grid
    publish_confidence: bool = False
    publish_unseen_voxels: bool = True  # False: only voxels inside a camera's view
    publish_label_grid: bool = True
    occupancy_min_z: float = -1.5  # m, grid frame
    occupancy_max_z: float = 0.5
    free_classes: tuple[str, ...] = DEFAULT_FREE_CLASSES
    occupancy_transient_local: bool = True  # REP-2003 map QoS
    marker_max_voxels: int = 30000  # RViz2 struggles above ~20-30k cubes (ros2/rviz#790)
    marker_max_rate_hz: float = 1.0  # 0 disables ~/voxel_markers
    # temporal map (fuse): frames integrated in the odometry frame through each image's pose
    fuse: bool = False
    odom_topic: str = DEFAULT_ODOM_TOPIC  # nav_msgs/Odometry; child_frame_id must be the grid frame
    use_tf: bool = False  # look up odom_frame <- grid frame in TF instead (needs tf2_ros)
    odom_frame: str = DEFAULT_ODOM_FRAME  # with use_tf: the map's frame (the topic's messages name theirs)
    odom_max_age_s: float = 0.5  # odometry farther than this from an image's stamp does not count
    odom_wait_s: float = 0.1  # how long a frame waits for odometry at or after its stamp
    odom_jump_m: float = 5.0  # a step between consecutive poses beyond this resets the map
    odom_jump_rad: float = 0.5
    map_voxel_size: float = 0.0  # m; 0 = the model grid's
    map_extent_m: float = DEFAULT_EXTENT_XY_M  # side of the square window centred on the robot
    map_decay: float = FusionConfig.decay  # evidence kept per frame a voxel goes unobserved
    map_class_prior: str = CLASS_PRIOR_AUTO  # the network's class prior YAML; "" = the shipped model's, "none"
    # diagnostics
    processing_budget_ms: float = 1000.0
    diagnostics_period_s: float = 1.0
    stats_window: int = 50

    # -- construction --------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "NodeParams":
        """From ROS parameter values (or YAML); unknown names and wrong types are errors."""
        hints = typing.get_type_hints(cls)
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; known: {known}")
        return cls(**{name: _coerce(name, value, hints[name]) for name, value in values.items()})

    def changed_fields(self, names: Sequence[str]) -> dict[str, Any]:
        """The coerced values of ``names`` (for dataclasses.replace after from_dict)."""
        return {name: getattr(self, name) for name in names}

    def to_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists), e.g. to declare the ROS parameters."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def resolved(self, share_dir: str | Path) -> "NodeParams":
        """Relative ``calib_file``/``checkpoint``: the working directory if the file is there,
        else the package share directory (so config YAMLs can name shipped files)."""
        changes = {}
        for name in PATH_PARAMS:
            value = getattr(self, name)
            if value and value != CLASS_PRIOR_NONE and not Path(value).is_absolute() and not Path(value).is_file():
                changes[name] = str(Path(share_dir) / value)
        return dataclasses.replace(self, **changes)

    # -- validation ----------------------------------------------------------------
    def validate(self, class_names: Sequence[str] | None = None) -> "NodeParams":
        """Raise ValueError naming the first bad parameter; ``class_names`` (the model's
        class set, known once it is loaded) also checks ``free_classes``."""
        for name in ("left_image_topic", "right_image_topic", "left_info_topic", "right_info_topic"):
            _require(bool(getattr(self, name).strip()), name, "must not be empty")
        _require(not self.frame_id.startswith("/") and self.frame_id == self.frame_id.strip(), "frame_id",
                 f"must be a tf2 frame name without a leading '/' or spaces (empty: the default), "
                 f"got {self.frame_id!r}")
        _require(self.input_qos.upper() in INPUT_QOS_CHOICES, "input_qos",
                 f"must be one of {INPUT_QOS_CHOICES}, got {self.input_qos!r}")
        self._validate_sync()
        self._validate_model()
        self._validate_calibration()
        self._validate_outputs(class_names)
        self._validate_fusion()
        return self

    def _validate_fusion(self) -> None:
        for name in ("odom_max_age_s", "odom_wait_s", "odom_jump_m", "odom_jump_rad", "map_voxel_size",
                     "map_extent_m", "map_decay"):
            _require(_finite(getattr(self, name)), name, f"must be finite, got {getattr(self, name)}")
        _require(bool(self.odom_topic.strip()), "odom_topic", "must not be empty")
        _require(bool(self.odom_frame) and not self.odom_frame.startswith("/") and
                 self.odom_frame == self.odom_frame.strip(), "odom_frame",
                 f"must be a tf2 frame name without a leading '/' or spaces, got {self.odom_frame!r}")
        _require(self.odom_max_age_s > 0, "odom_max_age_s", f"must be > 0, got {self.odom_max_age_s}")
        _require(self.odom_wait_s >= 0, "odom_wait_s", f"must be >= 0, got {self.odom_wait_s}")
        _require(self.odom_jump_m > 0, "odom_jump_m", f"must be > 0, got {self.odom_jump_m}")
        _require(self.odom_jump_rad > 0, "odom_jump_rad", f"must be > 0, got {self.odom_jump_rad}")
        _require(self.map_voxel_size >= 0, "map_voxel_size", f"must be >= 0 (0 = the model grid's), "
                 f"got {self.map_voxel_size}")
        _require(0 < self.map_decay <= 1, "map_decay", f"must be in (0, 1], got {self.map_decay}")
        if self.map_class_prior not in (CLASS_PRIOR_AUTO, CLASS_PRIOR_NONE):
            _require(Path(self.map_class_prior).is_file(), "map_class_prior",
                     f"no such file: {self.map_class_prior} ('' = the shipped model's, 'none' = no prior)")
        if self.use_tf:
            _require(self.odom_frame != self.grid_frame(), "odom_frame",
                     f"is the grid frame {self.grid_frame()!r}: the map needs a fixed frame apart from it")

    def fusion_config(self, grid) -> FusionConfig:
        """The map's layout for the model ``grid`` (GridConfig): the fusion defaults, with
        what the parameters set; ValueError names the parameter a bad layout comes from."""
        overrides = {"extent_xy_m": self.map_extent_m, "decay": self.map_decay}
        if self.map_voxel_size > 0:
            overrides["voxel_size"] = self.map_voxel_size
        try:
            return FusionConfig.for_grid(grid, **overrides)
        except ValueError as exc:
            raise ValueError(f"parameters map_voxel_size / map_extent_m / map_decay: {exc}") from exc

    def _validate_sync(self) -> None:
        _require(_finite(self.sync_tolerance_s) and self.sync_tolerance_s >= 0, "sync_tolerance_s",
                 f"must be >= 0, got {self.sync_tolerance_s}")
        if self.approximate_sync:
            _require(self.sync_tolerance_s > 0, "sync_tolerance_s",
                     "must be > 0 when approximate_sync is true (e.g. 0.01)")
        _require(self.queue_size >= 1, "queue_size", f"must be >= 1, got {self.queue_size}")
        _require(_finite(self.stamp_reset_jump_s) and self.stamp_reset_jump_s >= 0, "stamp_reset_jump_s",
                 f"must be >= 0 (0 = never reset), got {self.stamp_reset_jump_s}")

    def _validate_model(self) -> None:
        _require(self.backend in BACKEND_CHOICES, "backend", f"must be one of {BACKEND_CHOICES}, got {self.backend!r}")
        _require(self.precision in PRECISIONS, "precision", f"must be one of {PRECISIONS}, got {self.precision!r}")
        _require(self.ort_provider in ORT_PROVIDER_CHOICES, "ort_provider",
                 f"must be one of {ORT_PROVIDER_CHOICES} ('' = the best installed), got {self.ort_provider!r}")
        if self.backend == "tensorrt":
            _require(self.device.startswith("cuda"), "device", "backend 'tensorrt' runs on 'cuda' or 'cuda:N'")
        if self.checkpoint.endswith((".onnx", ".engine")):
            _require(self.backend != "torch", "checkpoint",
                     f"{self.checkpoint} is an exported file; use backend 'onnxruntime' or 'tensorrt'")
        _require(self.device == "cpu" or self.device.startswith("cuda"), "device",
                 f"must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        _require(self.threads >= 0, "threads", f"must be >= 0 (0 = default), got {self.threads}")
        _require(self.host_threads >= 0, "host_threads", f"must be >= 0 (0 = torch's default), got {self.host_threads}")
        if self.checkpoint:
            _require(Path(self.checkpoint).is_file(), "checkpoint", f"no such file: {self.checkpoint}")
        if self.preset:
            presets = preset_names()
            _require(self.preset in presets, "preset", f"unknown preset {self.preset!r}; presets: {presets}")

    def _validate_calibration(self) -> None:
        if self.calib_file:
            _require(Path(self.calib_file).is_file(), "calib_file", f"no such file: {self.calib_file}")
            _require(not self.grid_to_camera, "grid_to_camera",
                     "is only used with camera_info; calib_file carries its own grid pose")
        if self.grid_to_camera:
            self.grid_to_camera_matrix()
        if self.calib_image_size:
            _require(len(self.calib_image_size) == 2 and min(self.calib_image_size) > 0, "calib_image_size",
                     f"must be [width, height] in pixels, got {list(self.calib_image_size)}")
            _require(bool(self.calib_file), "calib_image_size",
                     "is only used with calib_file; camera_info carries its own width and height")

    def _validate_outputs(self, class_names: Sequence[str] | None) -> None:
        for name in ("occupancy_min_z", "occupancy_max_z", "marker_max_rate_hz", "processing_budget_ms",
                     "diagnostics_period_s"):
            _require(_finite(getattr(self, name)), name, f"must be finite, got {getattr(self, name)}")
        _require(self.occupancy_min_z <= self.occupancy_max_z, "occupancy_min_z",
                 f"must be <= occupancy_max_z ({self.occupancy_min_z} > {self.occupancy_max_z})")
        if class_names is not None:
            unknown = [c for c in self.free_classes if c not in class_names]
            _require(not unknown, "free_classes", f"unknown class(es) {unknown}; classes: {list(class_names)}")
        _require(self.marker_max_voxels >= 0, "marker_max_voxels", f"must be >= 0, got {self.marker_max_voxels}")
        _require(self.marker_max_rate_hz >= 0, "marker_max_rate_hz",
                 f"must be >= 0 (0 disables markers), got {self.marker_max_rate_hz}")
        _require(self.processing_budget_ms > 0, "processing_budget_ms",
                 f"must be > 0, got {self.processing_budget_ms}")
        _require(self.diagnostics_period_s > 0, "diagnostics_period_s",
                 f"must be > 0, got {self.diagnostics_period_s}")
        _require(self.stats_window >= MIN_STATS_WINDOW, "stats_window",
                 f"must be >= {MIN_STATS_WINDOW}, got {self.stats_window}")

    # -- derived values ------------------------------------------------------------
    def grid_to_camera_matrix(self) -> np.ndarray:
        """(4, 4) grid frame -> left rectified (optical) camera frame."""
        if not self.grid_to_camera:
            return GRID_TO_OPTICAL.copy()
        n = len(self.grid_to_camera)
        _require(n in RIGID_SIZES, "grid_to_camera", f"needs 12 (3x4) or 16 (4x4) numbers, got {n}")
        m = np.asarray(self.grid_to_camera, dtype=np.float64).reshape(-1, 4)
        try:
            return as_rigid(m, "grid_to_camera")
        except CalibrationError as exc:
            raise ValueError(f"parameter {exc}") from exc

    def grid_frame(self) -> str:
        """The frame the outputs are labelled in: ``frame_id``, else the frame the calibration
        defines: a KITTI calib.txt's Tr starts in the velodyne frame; a stereo YAML's or
        camera_info's grid_to_camera in the grid's own frame, ``occdepth_grid``."""
        if self.frame_id:
            return self.frame_id
        if self.calib_file and Path(self.calib_file).suffix not in (".yaml", ".yml"):
            return KITTI_GRID_FRAME
        return DEFAULT_GRID_FRAME

    def sync_streams(self) -> tuple[str, ...]:
        """With a calibration file the camera_info topics are not needed."""
        return IMAGE_STREAMS if self.calib_file else STEREO_STREAMS

    def sync_tolerance_ns(self) -> int:
        return seconds_to_ns(self.sync_tolerance_s) if self.approximate_sync else 0

    def stamp_reset_jump_ns(self) -> int | None:
        return seconds_to_ns(self.stamp_reset_jump_s) if self.stamp_reset_jump_s > 0 else None


def _require(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise ValueError(f"parameter {name} {problem}")


def _finite(x: float) -> bool:
    return math.isfinite(x)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check a value against the field's type; ints are accepted for floats (YAML ``1``)."""
    if typing.get_origin(hint) is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
            raise ValueError(f"parameter {name} must be a list of {item.__name__}, got {value!r}")
        return tuple(_coerce(name, v, item) for v in value)
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, hint)
    if not ok:
        raise ValueError(f"parameter {name} must be {hint.__name__}, got {type(value).__name__} {value!r}")
    return value
