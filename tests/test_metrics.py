"""SSC/SC metrics: hand-computed cases, accumulation, and a slow per-voxel reference."""

from __future__ import annotations

import numpy as np
import pytest

from occdepth_ros.eval.metrics import SSC_EPS, SSCMetrics, format_table

# 8 voxels, 3 classes (0 empty, 1, 2); the last two targets are ignore.
TARGET = np.array([0, 0, 1, 1, 2, 2, 255, 255])
PRED = np.array([0, 1, 1, 2, 2, 0, 1, 0])


def test_hand_computed_sc_and_ssc():
    m = SSCMetrics(n_classes=3)
    m.add(PRED, TARGET)
    r = m.compute()
    # kept voxels: t=[0,0,1,1,2,2], p=[0,1,1,2,2,0]
    # SC occupied t=[0,0,1,1,1,1], p=[0,1,1,1,1,0] -> TP=3 (idx 2,3,4), FP=1 (idx 1), FN=1 (idx 5)
    assert (r.sc_tp, r.sc_fp, r.sc_fn) == (3, 1, 1)
    assert r.sc_iou == pytest.approx(3 / 5)
    assert r.sc_precision == pytest.approx(3 / 4)
    assert r.sc_recall == pytest.approx(3 / 4)
    # per class: class 0 TP idx0, FP idx5, FN idx1; class 1 TP idx2, FP idx1, FN idx3;
    # class 2 TP idx4, FP idx3, FN idx5 -> each IoU = 1 / (1+1+1 + eps)
    assert r.class_tp.tolist() == [1, 1, 1]
    assert r.class_fp.tolist() == [1, 1, 1]
    assert r.class_fn.tolist() == [1, 1, 1]
    np.testing.assert_allclose(r.class_iou, [1 / (3 + SSC_EPS)] * 3)
    assert r.miou == pytest.approx(1 / (3 + SSC_EPS))  # mean over classes 1 and 2 only
    assert (r.n_evaluated, r.n_ignored) == (6, 2)


def test_prediction_under_ignore_does_not_count():
    m = SSCMetrics(n_classes=3)
    m.add(np.array([2, 2, 1]), np.array([255, 255, 1]))
    r = m.compute()
    # only voxel 2 is scored: class 1 TP=1, nothing else
    assert (r.sc_tp, r.sc_fp, r.sc_fn) == (1, 0, 0)
    assert r.class_tp.tolist() == [0, 1, 0] and r.class_fp.sum() == 0 and r.class_fn.sum() == 0


def test_absent_class_counts_as_zero_in_miou():
    m = SSCMetrics(n_classes=4)  # class 3 is in neither pred nor target
    m.add(PRED, TARGET)
    r = m.compute()
    assert r.class_iou[3] == 0.0
    # (1/3 + 1/3 + 0) / 3 = 2/9
    assert r.miou == pytest.approx(2 / 9, rel=1e-4)


def test_no_true_positive_gives_zero_sc_scores():
    m = SSCMetrics(n_classes=3)
    m.add(np.zeros(4, int), np.array([1, 2, 0, 255]))  # nothing predicted occupied
    r = m.compute()
    assert (r.sc_iou, r.sc_precision, r.sc_recall) == (0.0, 0.0, 0.0)
    assert (r.sc_tp, r.sc_fp, r.sc_fn) == (0, 0, 2)
    m.reset()
    r = m.compute()  # nothing added at all
    assert r.sc_iou == 0.0 and r.miou == 0.0 and r.n_evaluated == 0


def test_perfect_prediction():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 20, size=(2, 8, 8, 4))
    m = SSCMetrics()
    m.add(t, t)
    r = m.compute()
    assert r.sc_iou == 1.0 and r.sc_precision == 1.0 and r.sc_recall == 1.0
    present = np.bincount(t.ravel(), minlength=20) > 0
    assert np.all(r.class_iou[present] > 1 - 1e-6) and np.all(r.class_iou[~present] == 0)


def _random_pair(rng, shape, n_classes):
    t = rng.integers(0, n_classes, size=shape)
    t[rng.random(shape) < 0.5] = 0  # mostly empty, like real scenes
    t[rng.random(shape) < 0.1] = 255
    p = np.where(rng.random(shape) < 0.6, np.where(t == 255, 0, t), rng.integers(0, n_classes, size=shape))
    return p, t


def test_accumulation_equals_one_big_batch():
    rng = np.random.default_rng(1)
    p1, t1 = _random_pair(rng, (2, 8, 8, 4), 20)
    p2, t2 = _random_pair(rng, (3, 8, 8, 4), 20)
    split = SSCMetrics()
    split.add(p1, t1)
    split.add(p2, t2)
    whole = SSCMetrics()
    whole.add(np.concatenate([p1, p2]), np.concatenate([t1, t2]))
    per_frame = SSCMetrics()
    for p, t in zip(np.concatenate([p1, p2]), np.concatenate([t1, t2])):
        per_frame.add(p, t)  # unbatched (X, Y, Z) frames
    a, b, c = split.compute(), whole.compute(), per_frame.compute()
    for r in (b, c):
        assert (r.sc_tp, r.sc_fp, r.sc_fn) == (a.sc_tp, a.sc_fp, a.sc_fn)
        assert np.array_equal(r.class_tp, a.class_tp) and np.array_equal(r.class_fp, a.class_fp)
        assert np.array_equal(r.class_fn, a.class_fn)
        np.testing.assert_array_equal(r.class_iou, a.class_iou)
        assert r.miou == a.miou and r.sc_iou == a.sc_iou
    # and accumulation is not averaging of per-batch scores
    only1 = SSCMetrics()
    only1.add(p1, t1)
    assert a.sc_tp == only1.compute().sc_tp + _sc_tp_of(p2, t2)


def _sc_tp_of(p, t):
    m = SSCMetrics()
    m.add(p, t)
    return m.compute().sc_tp


def slow_reference(pairs, n_classes, ignore=255):
    """Per-voxel Python loop over the official definitions."""
    sc = [0, 0, 0]
    tp, fp, fn = [0] * n_classes, [0] * n_classes, [0] * n_classes
    for p_arr, t_arr in pairs:
        for p, t in zip(p_arr.ravel().tolist(), t_arr.ravel().tolist()):
            if t == ignore:
                continue
            sc[0] += p > 0 and t > 0
            sc[1] += p > 0 and t == 0
            sc[2] += p == 0 and t > 0
            for c in range(n_classes):
                tp[c] += p == c and t == c
                fp[c] += p == c and t != c
                fn[c] += p != c and t == c
    iou = [tp[c] / (tp[c] + fp[c] + fn[c] + 1e-5) for c in range(n_classes)]
    return sc, tp, fp, fn, iou, sum(iou[1:]) / (n_classes - 1)


@pytest.mark.parametrize("n_classes", [3, 12, 20])
def test_matches_slow_reference(n_classes):
    rng = np.random.default_rng(n_classes)
    pairs = [_random_pair(rng, (5, 6, 4), n_classes) for _ in range(3)]
    m = SSCMetrics(n_classes=n_classes)
    for p, t in pairs:
        m.add(p, t)
    r = m.compute()
    sc, tp, fp, fn, iou, miou = slow_reference(pairs, n_classes)
    assert [r.sc_tp, r.sc_fp, r.sc_fn] == sc
    assert r.class_tp.tolist() == tp and r.class_fp.tolist() == fp and r.class_fn.tolist() == fn
    np.testing.assert_allclose(r.class_iou, iou, rtol=1e-12)
    assert r.miou == pytest.approx(miou, rel=1e-12)
    assert r.sc_iou == pytest.approx(sc[0] / sum(sc))
    assert r.sc_precision == pytest.approx(sc[0] / (sc[0] + sc[1]))
    assert r.sc_recall == pytest.approx(sc[0] / (sc[0] + sc[2]))


def test_input_validation():
    m = SSCMetrics(n_classes=3)
    with pytest.raises(ValueError, match="shape"):
        m.add(np.zeros(3, int), np.zeros(4, int))
    with pytest.raises(ValueError, match="pred values"):
        m.add(np.array([3]), np.array([0]))
    with pytest.raises(ValueError, match="target values"):
        m.add(np.array([0]), np.array([7]))
    with pytest.raises(ValueError, match="integer"):
        m.add(np.zeros(2), np.zeros(2, int))
    with pytest.raises(ValueError, match="ignore_index"):
        SSCMetrics(n_classes=3, ignore_index=1)


def test_format_table():
    m = SSCMetrics(n_classes=3)
    m.add(PRED, TARGET)
    table = format_table(m.compute(), ["empty", "car", "road"])
    lines = table.strip().splitlines()
    assert len(lines) == 2 + 3 + 4  # header, separator, classes, 4 summary rows
    assert lines[0].startswith("|") and set(lines[1]) <= set("|-: ")
    # class IoU 1/3 -> 33.33 %; SC 3/5 -> 60.00, 3/4 -> 75.00; mIoU 33.33
    assert "| car | 33.33 |" in lines and "| road | 33.33 |" in lines
    assert "| SC IoU | 60.00 |" in lines
    assert "| SC precision | 75.00 |" in lines and "| SC recall | 75.00 |" in lines
    assert lines[-1] == "| mIoU | 33.33 |"
    with pytest.raises(ValueError, match="class names"):
        format_table(m.compute(), ["a", "b"])
