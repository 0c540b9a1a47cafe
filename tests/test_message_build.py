"""The fast paths of message building (occupied voxels, marker points) against plain
references: the occupancy table and numpy's 3-D nonzero, and the Point constructor."""

from __future__ import annotations

import numpy as np
import pytest

from occdepth_ros.classes import load_class_set
from occdepth_ros.model.config import GridConfig
from occdepth_ros.node.voxel_outputs import occupied_lut, occupied_voxels

CS = load_class_set()
GRID = GridConfig(origin=(1.0, -3.2, -0.8), dims=(12, 8, 4), voxel_size=0.4)


def test_occupied_voxels_match_a_plain_reference() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, CS.n_classes, GRID.dims).astype(np.uint8)
    labels[rng.random(GRID.dims) < 0.4] = CS.empty_index
    labels[rng.random(GRID.dims) < 0.1] = CS.ignore_index
    conf = rng.random(GRID.dims).astype(np.float32)
    seen = rng.random(GRID.dims) < 0.7
    for include_unseen in (True, False):
        got = occupied_voxels(labels, GRID, CS, confidence=conf, seen=seen, include_unseen=include_unseen)
        mask = occupied_lut(CS)[labels] & (seen | include_unseen)
        idx = np.nonzero(mask)  # C order, like the flat scan
        want = np.stack([GRID.origin[a] + (idx[a] + 0.5) * GRID.voxel_size for a in range(3)], axis=1)
        np.testing.assert_array_equal(got.centres, want)
        np.testing.assert_array_equal(got.labels, labels[idx])
        np.testing.assert_array_equal(got.confidence, conf[idx])


def test_marker_points_equal_constructed_points(monkeypatch: pytest.MonkeyPatch) -> None:
    M = pytest.importorskip("occdepth_ros.node.messages")
    from geometry_msgs.msg import Point

    centres = np.random.default_rng(4).normal(size=(50, 3)) * 20
    want = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in centres]
    fast = M._points(centres)
    assert fast == want and all(type(p) is Point for p in fast)
    assert repr(fast[0]) == repr(want[0])  # every slot the class reads is set
    monkeypatch.setattr(M, "_POINT_FAST", False)  # a differently generated Point class
    assert M._points(centres) == want
