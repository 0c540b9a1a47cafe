"""One synchronised stereo set -> everything the node publishes, as plain arrays.

No ROS here: the input messages are read through their fields only, so tests can pass
simple objects. Errors are InputError / CalibrationError with a reason; the node
counts them and publishes nothing for that frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ..classes import ClassSet
from ..geometry.calib import CalibrationError, StereoCalibration, calibration_from_camera_info, fit_calibration
from ..geometry.lookups import LiftTensors
from ..inference import InputError, Prediction, StereoInference
from .file_calibration import FileCalibration, load_file_calibration
from .map_fusion import MAP_OUTPUTS, FuseResult, MapFuser
from .image_decode import decode_image
from .params import NodeParams
from .stereo_sync import stamp_to_ns
from .voxel_outputs import BevGrid, OccupiedVoxels, VoxelCloud, bev_occupancy, occupied_voxels, voxel_cloud


OUTPUTS = frozenset({"voxels", "cloud", "bev"}) | MAP_OUTPUTS  # derived outputs; the prediction is always made
FUSION_FAILED = "failed"  # FuseResult.status of a frame whose fusion raised (the frame's own outputs go on)


@dataclass
class PreparedFrame:
    """One input set after the host's pre-network stage."""

    stamp_ns: int
    images: torch.Tensor  # (1, V, 3, H, W) network input
    lift: LiftTensors  # the lookups of this frame's calibration
    seen: np.ndarray  # output-grid voxels inside a camera view, for this calibration
    busy_s: float  # compute time spent on this frame so far (the stages add theirs)


@dataclass
class FrameOutputs:
    stamp_ns: int  # the left image's stamp: every output carries it
    prediction: Prediction
    voxels: OccupiedVoxels | None  # None: not asked for (nobody subscribed)
    cloud: VoxelCloud | None
    bev: BevGrid | None
    processing_s: float  # compute time of the frame's stages (not the time it waited between them)
    fusion: FuseResult | None = None  # with a map (fuse): what fusing this frame did


class FrameProcessor:
    """``on_note``: told once per image size whose calibration was scaled (the node logs it)."""

    def __init__(self, engine: StereoInference, params: NodeParams, classes: ClassSet,
                 on_note: Callable[[str], None] | None = None) -> None:
        self.engine, self.params, self.classes = engine, params, classes
        self.on_note = on_note
        self.fuser: MapFuser | None = None  # set by the node when fuse is on
        self.file_calibration: FileCalibration | None = None
        if params.calib_file:  # read (and its image size decided) once, at start-up
            self.file_calibration = load_file_calibration(params.calib_file, params.calib_image_size)
        self._fitted: dict[tuple[int, int], StereoCalibration] = {}
        self._noted: set[tuple[str, tuple[int, int]]] = set()

    def calibration(self, left_img: Any, right_img: Any, infos: tuple[Any, Any] | None) -> StereoCalibration:
        """The calibration for this pair's image size; CalibrationError names both sizes
        when the calibration is for another one (unless scaling is allowed and fits)."""
        size = (int(left_img.height), int(left_img.width))
        if self.file_calibration is not None:
            if size not in self._fitted:
                self._fitted[size] = self._fit(self.file_calibration.calibration, size, f"calib_file {self.params.calib_file}")
            return self._fitted[size]
        if infos is None:
            raise CalibrationError("no camera_info received and no calib_file set")
        left_info, right_info = infos
        if (int(left_info.width), int(left_info.height)) != (int(right_info.width), int(right_info.height)):
            raise CalibrationError(f"left camera_info is for {left_info.width}x{left_info.height} but the right "
                                   f"one for {right_info.width}x{right_info.height}")
        calib = calibration_from_camera_info(left_info.p, right_info.p, left_info.width, left_info.height,
                                             self.params.grid_to_camera_matrix())
        return self._fit(calib, size, "camera_info")

    def _fit(self, calib: StereoCalibration, size: tuple[int, int], source: str) -> StereoCalibration:
        try:
            fitted, note = fit_calibration(calib, size, self.params.scale_intrinsics_to_image)
        except CalibrationError as exc:
            raise CalibrationError(f"{source}: {exc}") from None
        if note is not None and self.on_note is not None and (source, size) not in self._noted:
            self._noted.add((source, size))
            self.on_note(f"{source}: {note} (scale_intrinsics_to_image is true)")
        return fitted

    def process(self, msgs: tuple, outputs: frozenset[str] = OUTPUTS) -> FrameOutputs:
        """``msgs``: (left image, right image[, left info, right info]) of one stamp.
        ``outputs``: which derived outputs to build (the node skips unsubscribed ones).
        The three stages one after the other; the pipelined node (pipeline_stages) runs
        the same stages on separate threads."""
        frame = self.prepare(msgs)
        return self.finish(frame, self.infer(frame), outputs)

    def prepare(self, msgs: tuple) -> PreparedFrame:
        """Host stage before the network: decode, calibration, network input. Everything
        the later stages need is captured here, so the next frame may be prepared while
        this one runs (the engine's calibration state may move on)."""
        start = time.perf_counter()
        left_msg, right_msg = msgs[0], msgs[1]
        infos = (msgs[2], msgs[3]) if len(msgs) == 4 else None
        stamp = stamp_to_ns(left_msg.header.stamp.sec, left_msg.header.stamp.nanosec)
        if stamp == 0:
            raise InputError("left image stamp is 0 (unset): outputs need the capture time")
        left = decode_image(left_msg, "left image")
        right = decode_image(right_msg, "right image")
        if _is_mono(left_msg) != _is_mono(right_msg):  # colour vs grey: the views would not match
            raise InputError(f"left image is {left_msg.encoding} but right is {right_msg.encoding}: "
                             "both cameras must be colour or both grey")
        if left.shape != right.shape:
            raise InputError(f"left image is {left.shape[1]}x{left.shape[0]}, right is {right.shape[1]}x{right.shape[0]}")
        self.engine.set_calibration(self.calibration(left_msg, right_msg, infos))
        images = self.engine.prepare([left, right])
        return PreparedFrame(stamp, images, self.engine.lift_tensors, self.engine.seen_mask(),
                             time.perf_counter() - start)

    def infer(self, frame: PreparedFrame) -> torch.Tensor:
        """The network on one prepared frame: its logits."""
        start = time.perf_counter()
        logits = self.engine.backend.forward(frame.images, frame.lift)
        frame.busy_s += time.perf_counter() - start
        return logits

    def finish(self, frame: PreparedFrame, logits: torch.Tensor, outputs: frozenset[str] = OUTPUTS) -> FrameOutputs:
        """Host stage after the network: labels (and confidence), derived outputs."""
        start = time.perf_counter()
        fuser = self.fuser
        pred = self.engine.postprocess(logits, self.params.publish_confidence, seen=frame.seen,
                                       with_probs=fuser is not None)
        cfg = self.engine.cfg
        voxels = cloud = bev = None
        if outputs & {"voxels", "cloud"}:
            voxels = occupied_voxels(pred.labels, cfg.grid, self.classes,
                                     confidence=pred.confidence if self.params.publish_confidence else None,
                                     seen=pred.seen, include_unseen=self.params.publish_unseen_voxels)
        if "cloud" in outputs:
            cloud = voxel_cloud(voxels, self.classes, with_confidence=self.params.publish_confidence)
        if "bev" in outputs:
            bev = bev_occupancy(pred.labels, cfg.grid, self.classes, self.params.occupancy_min_z,
                                self.params.occupancy_max_z, seen=pred.seen, free_classes=self.params.free_classes)
        fusion = None
        if fuser is not None:
            try:
                fusion = fuser.fuse(frame.stamp_ns, pred, outputs & MAP_OUTPUTS)
            except Exception as exc:  # noqa: BLE001 - the frame's own outputs still go out
                fusion = FuseResult(FUSION_FAILED, reason=f"{type(exc).__name__}: {exc}")
            pred.probs = None  # K x the grid: not kept past fusion
        return FrameOutputs(frame.stamp_ns, pred, voxels, cloud, bev, frame.busy_s + time.perf_counter() - start,
                            fusion)


def _is_mono(msg: Any) -> bool:
    return str(msg.encoding).strip().lower() == "mono8"
