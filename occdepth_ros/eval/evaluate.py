"""Score predictions over KITTI-layout sequences exactly as the SemanticKITTI benchmark:
predictions on the 256x256x32 grid against the 1_1 targets (255 ignored).

One scoring loop (``score_frames``) serves every source of predictions: a model or the
SGBM baseline run on the images (``evaluate``), or ``.label`` files written before, by
this package or anyone else (``prediction_reader``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from ..classes import ClassSet
from ..data.kitti_odometry import KittiSequence
from ..data.semantic_kitti import (SEMANTIC_KITTI_GRID, read_frame_target, read_prediction, semantic_kitti_factor,
                                   upsample_labels)
from ..geometry.calib import StereoCalibration
from ..inference import StereoInference
from .frames import StereoFrameReader
from .metrics import SSCMetrics, SSCResult

# (left RGB, right RGB, calibration) -> labels on the benchmark grid
Predictor = Callable[[np.ndarray, np.ndarray, StereoCalibration], np.ndarray]
# (sequence, frame) -> classes on the benchmark grid
FramePredictor = Callable[[KittiSequence, str], np.ndarray]
Frame = tuple[KittiSequence, str]


class FrameError(ValueError):
    """A frame could not be predicted or read; the message names the frame."""


def sequence_name(name: str | int) -> str:
    """Sequence folder name: numbers get two digits ('8' -> '08'), as the benchmark names them."""
    text = str(name)
    return f"{int(text):02d}" if text.isdigit() else text


def model_predictor(engine: StereoInference) -> Predictor:
    grid = engine.cfg.grid
    k = semantic_kitti_factor(grid.origin, grid.extent, grid.voxel_size)  # raises, naming the grid

    def predict(left: np.ndarray, right: np.ndarray, calib: StereoCalibration) -> np.ndarray:
        engine.set_calibration(calib)
        return upsample_labels(engine.predict([left, right], with_confidence=False).labels, k)

    return predict


def sgbm_predictor(sgbm_cfg=None) -> Predictor:
    """The classical stereo baseline on the benchmark grid (SC scores only are meaningful)."""
    from ..model.config import GridConfig
    from .stereo_baseline import sgbm_prediction

    grid = GridConfig()  # the 256x256x32 / 0.2 m benchmark grid

    def predict(left: np.ndarray, right: np.ndarray, calib: StereoCalibration) -> np.ndarray:
        return sgbm_prediction(left, right, calib, grid, sgbm_cfg)

    return predict


def labelled_frames(root: str | Path, sequences: list[str], frame_stride: int = 1,
                    max_frames: int | None = None) -> list[Frame]:
    """The frames the benchmark scores: those with a ``voxels/<frame>.label``."""
    jobs: list[Frame] = []
    for name in sequences:
        seq = KittiSequence(Path(root), sequence_name(name))
        jobs += [(seq, f) for f in seq.labelled_frames()[::frame_stride]]
    if max_frames is not None:
        jobs = jobs[:max_frames]
    if not jobs:
        raise FileNotFoundError(f"no labelled frames in {root} sequences {sequences}")
    return jobs


def predict_with_probs(engine: StereoInference, reader: StereoFrameReader, seq: KittiSequence, frame: str):
    """One frame's ``Prediction`` with the softmax of every class (``probs``) and its
    ``seen`` mask; a bad frame is a FrameError naming it."""
    try:
        left, right, calib = reader.read(seq, frame)
        engine.set_calibration(calib)
        return engine.predict([left, right], with_confidence=False, with_probs=True)
    except ValueError as exc:
        raise FrameError(f"sequence {seq.sequence} frame {frame}: {exc}") from exc


def score_frames(jobs: list[Frame], predict: FramePredictor, class_set: ClassSet, progress: bool = True,
                 desc: str = "evaluate") -> SSCResult:
    """Accumulated metrics of ``predict`` over ``jobs``: the one scoring loop."""
    metrics = SSCMetrics(class_set.n_classes, class_set.ignore_index)
    for seq, frame in tqdm(jobs, desc=desc, unit="frame", disable=not progress):
        try:
            pred = predict(seq, frame)
        except ValueError as exc:
            raise FrameError(f"sequence {seq.sequence} frame {frame}: {exc}") from exc
        if pred.shape != SEMANTIC_KITTI_GRID:
            raise ValueError(f"prediction of {seq.sequence}/{frame} has shape {pred.shape}, "
                             f"expected {SEMANTIC_KITTI_GRID}")
        metrics.add(pred, read_frame_target(seq.voxel_dir, frame, class_set))
    return metrics.compute()


def evaluate(
    predict: Predictor,
    root: str | Path,
    sequences: list[str],
    class_set: ClassSet,
    frame_stride: int = 1,
    max_frames: int | None = None,
    progress: bool = True,
) -> tuple[SSCResult, int]:
    """Metrics of a predictor run on the labelled frames' images, and how many frames were scored."""
    jobs = labelled_frames(root, sequences, frame_stride, max_frames)
    reader = StereoFrameReader()

    def run(seq: KittiSequence, frame: str) -> np.ndarray:
        return predict(*reader.read(seq, frame))

    return score_frames(jobs, run, class_set, progress), len(jobs)


def prediction_path(pred_root: str | Path, sequence: str, frame: str) -> Path:
    """Where the benchmark keeps a frame's prediction: ``sequences/NN/predictions/XXXXXX.label``."""
    return Path(pred_root) / "sequences" / sequence / "predictions" / f"{frame}.label"


def prediction_reader(pred_root: str | Path, jobs: list[Frame], class_set: ClassSet) -> FramePredictor:
    """``score_frames``'s source for existing ``.label`` predictions under ``pred_root`` (the
    benchmark's layout). Every file ``jobs`` needs is checked for before scoring starts;
    missing ones are named."""
    missing = [p for p in (prediction_path(pred_root, s.sequence, f) for s, f in jobs) if not p.is_file()]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(f"{len(missing)} of {len(jobs)} prediction files missing: "
                                f"{', '.join(map(str, missing[:5]))}{more}")

    def read(seq: KittiSequence, frame: str) -> np.ndarray:
        return read_prediction(prediction_path(pred_root, seq.sequence, frame), class_set)

    return read
