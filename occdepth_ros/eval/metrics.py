"""Semantic scene completion metrics, accumulated over a split as OccDepth's SSCMetrics.

Voxels whose target is ``ignore_index`` are dropped; nothing else is masked (no
FOV mask). SC treats every class > 0 as occupied; SSC counts per-class TP/FP/FN.
Counts are summed over all frames first and ratios taken once at the end, so
the result does not depend on how frames are batched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

#: Added to each class IoU denominator (official value; keeps absent classes at 0).
SSC_EPS = 1e-5


@dataclass(frozen=True)
class SSCResult:
    """Split-level SC/SSC scores (fractions in [0, 1]) and the counts behind them."""

    sc_iou: float
    sc_precision: float
    sc_recall: float
    class_iou: np.ndarray  # (n_classes,) float64
    miou: float  # mean of class_iou[1:], empty excluded, absent classes count as 0
    sc_tp: int
    sc_fp: int
    sc_fn: int
    class_tp: np.ndarray  # (n_classes,) int64
    class_fp: np.ndarray
    class_fn: np.ndarray
    n_evaluated: int  # voxels scored (target != ignore)
    n_ignored: int  # voxels dropped (target == ignore)


def _ratio(num: int, den: int) -> float:
    return float(num) / float(den) if den else 0.0


@dataclass
class SSCMetrics:
    """Accumulate SC and SSC counts over any number of ``add`` calls."""

    n_classes: int = 20
    ignore_index: int = 255
    _sc: np.ndarray = field(init=False, repr=False)  # tp, fp, fn
    _tp: np.ndarray = field(init=False, repr=False)
    _fp: np.ndarray = field(init=False, repr=False)
    _fn: np.ndarray = field(init=False, repr=False)
    _n_evaluated: int = field(init=False, repr=False, default=0)
    _n_ignored: int = field(init=False, repr=False, default=0)

    def __post_init__(self) -> None:
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2 (empty + at least one class), got {self.n_classes}")
        if 0 <= self.ignore_index < self.n_classes:
            raise ValueError(f"ignore_index {self.ignore_index} collides with a class id")
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._sc = np.zeros(3, dtype=np.int64)
        self._tp = np.zeros(self.n_classes, dtype=np.int64)
        self._fp = np.zeros(self.n_classes, dtype=np.int64)
        self._fn = np.zeros(self.n_classes, dtype=np.int64)
        self._n_evaluated = 0
        self._n_ignored = 0

    def _checked(self, pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pred, target = np.asarray(pred), np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")
        for name, arr in (("pred", pred), ("target", target)):
            if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
                raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
        pred, target = pred.reshape(-1).astype(np.int64), target.reshape(-1).astype(np.int64)
        if pred.size and (pred.min() < 0 or pred.max() >= self.n_classes):
            raise ValueError(
                f"pred values must lie in [0, {self.n_classes}), got [{pred.min()}, {pred.max()}]"
            )
        bad = (target != self.ignore_index) & ((target < 0) | (target >= self.n_classes))
        if np.any(bad):
            raise ValueError(
                f"target values must lie in [0, {self.n_classes}) or be {self.ignore_index}, "
                f"got {np.unique(target[bad])[:5].tolist()}"
            )
        return pred, target

    def add(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Add one frame or a batch: integer class grids of equal shape."""
        pred, target = self._checked(pred, target)
        keep = target != self.ignore_index
        self._n_ignored += int(target.size - keep.sum())
        p, t = pred[keep], target[keep]
        self._n_evaluated += int(p.size)

        p_occ, t_occ = p > 0, t > 0
        self._sc += [
            np.count_nonzero(p_occ & t_occ),
            np.count_nonzero(p_occ & ~t_occ),
            np.count_nonzero(~p_occ & t_occ),
        ]
        n = self.n_classes
        tp = np.bincount(t[p == t], minlength=n)
        self._tp += tp
        self._fp += np.bincount(p, minlength=n) - tp
        self._fn += np.bincount(t, minlength=n) - tp

    def compute(self) -> SSCResult:
        """Scores over everything added since the last reset."""
        tp, fp, fn = (int(v) for v in self._sc)
        if tp:
            precision, recall, iou = _ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(tp, tp + fp + fn)
        else:  # official: all three are 0 when nothing occupied was hit
            precision = recall = iou = 0.0
        class_iou = self._tp / (self._tp + self._fp + self._fn + SSC_EPS)
        return SSCResult(
            sc_iou=iou,
            sc_precision=precision,
            sc_recall=recall,
            class_iou=class_iou,
            miou=float(np.mean(class_iou[1:])),
            sc_tp=tp,
            sc_fp=fp,
            sc_fn=fn,
            class_tp=self._tp.copy(),
            class_fp=self._fp.copy(),
            class_fn=self._fn.copy(),
            n_evaluated=self._n_evaluated,
            n_ignored=self._n_ignored,
        )


def format_table(result: SSCResult, class_names: Sequence[str]) -> str:
    """Markdown table: one IoU row per class, then SC IoU / precision / recall and mIoU (in %)."""
    if len(class_names) != len(result.class_iou):
        raise ValueError(f"{len(class_names)} class names for {len(result.class_iou)} class IoUs")
    rows = ["| metric | value (%) |", "|---|---:|"]
    rows += [f"| {name} | {100 * iou:.2f} |" for name, iou in zip(class_names, result.class_iou)]
    rows += [
        f"| SC IoU | {100 * result.sc_iou:.2f} |",
        f"| SC precision | {100 * result.sc_precision:.2f} |",
        f"| SC recall | {100 * result.sc_recall:.2f} |",
        f"| mIoU | {100 * result.miou:.2f} |",
    ]
    return "\n".join(rows) + "\n"
