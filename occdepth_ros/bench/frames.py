"""Benchmark inputs: one stereo frame as the node receives it, and lift lookups.

The pipeline runs on a rendered synthetic street frame by default (the shipped model's
training domain, so its prediction, and with it the number of occupied voxels that the
messages carry, is realistic), or on a frame of a KITTI-layout sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.images import read_rgb
from ..data.kitti_odometry import KittiSequence
from ..geometry.calib import StereoCalibration, kitti_calibration, rig_from_projections
from ..geometry.image_fit import ImageFit
from ..geometry.lookups import LiftLookup
from ..model.config import ModelConfig
from ..model.lift_lookup import build_lift_lookup

SYNTH_SEQUENCE = "00"
SYNTH_SEED = 7
RGB8_BYTES = 3


@dataclass(frozen=True)
class FakeImage:
    """The sensor_msgs/Image fields that node.image_decode reads."""

    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: int
    data: bytes


def image_message(rgb: np.ndarray) -> FakeImage:
    """An rgb8 message whose data is the image's bytes, as a camera driver publishes it."""
    h, w = rgb.shape[:2]
    return FakeImage("rgb8", h, w, w * RGB8_BYTES, 0, np.ascontiguousarray(rgb).tobytes())


@dataclass(frozen=True)
class StereoFrame:
    left: np.ndarray  # (H, W, 3) uint8 RGB
    right: np.ndarray
    calibration: StereoCalibration
    source: str

    def messages(self) -> tuple[FakeImage, FakeImage]:
        return image_message(self.left), image_message(self.right)


def kitti_frame(root: str | Path, sequence: str, frame: int) -> StereoFrame:
    seq = KittiSequence(Path(root), sequence)
    left_path, right_path = seq.image_paths(frame)
    left, right = read_rgb(left_path), read_rgb(right_path)
    calib = kitti_calibration(seq.calib(), left.shape[:2])
    return StereoFrame(left, right, calib, f"{seq.path} frame {frame}")


def synthetic_frame(folder: Path) -> StereoFrame:
    """One rendered frame (occdepth-synth, fixed seed), written under ``folder`` once."""
    seq_dir = folder / "sequences" / SYNTH_SEQUENCE
    if not (seq_dir / "image_3").is_dir():
        from ..data.synth.cli import main as synth_main

        synth_main(["--out", str(folder), "--sequences", SYNTH_SEQUENCE, "--frames", "1",
                    "--seed", str(SYNTH_SEED), "--voxel-every", "0"])
    frame = kitti_frame(folder, SYNTH_SEQUENCE, 0)
    return StereoFrame(frame.left, frame.right, frame.calibration,
                       f"synthetic street (occdepth-synth seed {SYNTH_SEED}), {frame.left.shape[1]}x{frame.left.shape[0]}")


def lookup_for(cfg: ModelConfig, calib: StereoCalibration) -> LiftLookup:
    """The lift lookups of ``cfg`` for a raw calibration: fitted to the network input as
    StereoInference.set_calibration does."""
    fit = ImageFit(tuple(calib.image_size), (cfg.image.height, cfg.image.width), cfg.image.fit)
    rig = rig_from_projections([fit.apply_projection(P) for P in calib.projections], calib.T_grid_to_ref,
                               fit.dst_size)
    return build_lift_lookup(rig, cfg)
