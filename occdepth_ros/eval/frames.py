"""A KITTI odometry frame's stereo input: both images and its own sequence's calibration.

Odometry sequences come in three image sizes (1241x376, 1242x375, 1226x370), each with
its own calib.txt, so the calibration is always read from the frame's sequence and built
for the size of the frame's images; it is read once per sequence and size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.images import read_rgb
from ..data.kitti_odometry import KittiSequence
from ..geometry.calib import StereoCalibration, kitti_calibration


@dataclass
class StereoFrameReader:
    _calibs: dict[tuple[str, tuple[int, int]], StereoCalibration] = field(default_factory=dict)

    def read(self, seq: KittiSequence, frame: str) -> tuple[np.ndarray, np.ndarray, StereoCalibration]:
        """(left RGB, right RGB, calibration for their size) of one frame."""
        left, right = (read_rgb(p) for p in seq.image_paths(frame))
        key = (str(seq.path), left.shape[:2])
        if key not in self._calibs:
            self._calibs[key] = kitti_calibration(seq.calib(), left.shape[:2])
        return left, right, self._calibs[key]
