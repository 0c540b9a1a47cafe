"""Measure a network's class prior (``occdepth_ros.fusion.class_prior``): run it over
KITTI-layout sequences and average its class probabilities over the voxels its cameras see."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.kitti_odometry import KittiSequence
from ..inference import StereoInference
from .evaluate import predict_with_probs, sequence_name
from .frames import StereoFrameReader


def estimate_class_prior(engine: StereoInference, root: str | Path, sequences: list[str], frame_stride: int = 1,
                         progress: bool = True) -> tuple[np.ndarray, int]:
    """(mean class distribution (K,) float64, frames run): every ``frame_stride``-th
    frame of each sequence, each seen voxel counting once."""
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    plans = [(seq, seq.frame_ids()[::frame_stride]) for seq in (KittiSequence(Path(root), sequence_name(s))
                                                                for s in sequences)]
    for seq, frames in plans:
        if not frames:
            raise FileNotFoundError(f"no frames in {seq.path}")
    reader = StereoFrameReader()
    n_frames = sum(len(f) for _, f in plans)
    total = np.zeros(engine.cfg.n_classes)
    bar = tqdm(total=n_frames, desc="occdepth-class-prior", unit="frame", disable=not progress)
    for seq, frames in plans:
        for frame in frames:
            pred = predict_with_probs(engine, reader, seq, frame)
            total = total + pred.probs[:, pred.seen].sum(axis=1, dtype=np.float64)
            bar.update()
    bar.close()
    if not total.sum() > 0:  # probabilities sum to one per voxel: zero means no voxel in view
        raise ValueError("no voxel in view in any frame: the calibration sees nothing of the grid")
    return total / total.sum(), n_frames
