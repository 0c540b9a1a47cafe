"""Score a predictor over KITTI-layout sequences exactly as the SemanticKITTI benchmark:
predictions on the 256x256x32 grid against the 1_1 targets (255 ignored)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from ..classes import ClassSet
from ..data.images import read_rgb
from ..data.kitti_odometry import KittiSequence
from ..data.semantic_kitti import SEMANTIC_KITTI_GRID, read_frame_target, to_semantic_kitti_grid
from ..geometry.calib import StereoCalibration, kitti_calibration, read_kitti_calib
from ..inference import StereoInference
from .metrics import SSCMetrics, SSCResult

# (left RGB, right RGB, calibration) -> labels on the benchmark grid
Predictor = Callable[[np.ndarray, np.ndarray, StereoCalibration], np.ndarray]


def model_predictor(engine: StereoInference) -> Predictor:
    grid = engine.cfg.grid

    def predict(left: np.ndarray, right: np.ndarray, calib: StereoCalibration) -> np.ndarray:
        engine.set_calibration(calib)
        labels = engine.predict([left, right]).labels
        full = to_semantic_kitti_grid(labels, grid.origin, grid.extent, grid.voxel_size)
        if full is None:
            raise ValueError(f"model grid {grid.dims} @ {grid.voxel_size} m cannot be scored on the benchmark grid")
        return full

    return predict


def sgbm_predictor(sgbm_cfg=None) -> Predictor:
    """The classical stereo baseline on the benchmark grid (SC scores only are meaningful)."""
    from ..model.config import GridConfig
    from .stereo_baseline import sgbm_prediction

    grid = GridConfig()  # the 256x256x32 / 0.2 m benchmark grid

    def predict(left: np.ndarray, right: np.ndarray, calib: StereoCalibration) -> np.ndarray:
        return sgbm_prediction(left, right, calib, grid, sgbm_cfg)

    return predict


def evaluate(
    predict: Predictor,
    root: str | Path,
    sequences: list[str],
    class_set: ClassSet,
    frame_stride: int = 1,
    max_frames: int | None = None,
    progress: bool = True,
) -> tuple[SSCResult, int]:
    """Accumulated metrics over the labelled frames, and how many frames were scored."""
    metrics = SSCMetrics(class_set.n_classes, class_set.ignore_index)
    jobs = []
    for name in sequences:
        seq = KittiSequence(Path(root), name)
        jobs += [(seq, f) for f in seq.labelled_frames()[::frame_stride]]
    if max_frames is not None:
        jobs = jobs[:max_frames]
    if not jobs:
        raise FileNotFoundError(f"no labelled frames in {root} sequences {sequences}")
    calib_cache: dict[tuple[str, tuple[int, int]], StereoCalibration] = {}
    for seq, frame in tqdm(jobs, desc="evaluate", unit="frame", disable=not progress):
        left, right = (read_rgb(p) for p in seq.image_paths(frame))
        key = (str(seq.path), left.shape[:2])
        if key not in calib_cache:
            calib_cache[key] = kitti_calibration(read_kitti_calib(seq.path / "calib.txt"), left.shape[:2])
        pred = predict(left, right, calib_cache[key])
        if pred.shape != SEMANTIC_KITTI_GRID:
            raise ValueError(f"prediction has shape {pred.shape}, expected {SEMANTIC_KITTI_GRID}")
        metrics.add(pred, read_frame_target(seq.voxel_dir, frame, class_set))
    return metrics.compute(), len(jobs)
