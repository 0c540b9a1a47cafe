"""The temporal map's class evidence pool: rows handed out once, zeroed when given back,
kept through growth, bounded by the window. Checked against a plain set of live rows."""

from __future__ import annotations

import numpy as np
import pytest

from occdepth_ros.fusion.class_pool import NO_ROW, ClassEvidencePool


def test_rows_are_distinct_zeroed_and_survive_growth_against_a_set_of_live_rows() -> None:
    rng = np.random.default_rng(4)
    pool = ClassEvidencePool(width=3, max_rows=200)
    first_capacity = pool.capacity
    live: dict[int, float] = {}  # row -> the value written into it
    for step in range(400):
        if live and rng.random() < 0.45:
            back = rng.choice(sorted(live), size=min(len(live), int(rng.integers(1, 12))), replace=False)
            pool.give_back(np.asarray(back, dtype=np.int32))
            for r in back:
                del live[int(r)]
            assert np.all(pool.evidence[back] == 0) and np.all(pool.stamp[back] == 0)
        else:
            count = int(rng.integers(1, min(15, 200 - len(live)) + 1)) if len(live) < 200 else 0
            got = pool.take(count)
            assert len(set(got.tolist())) == count and NO_ROW not in got
            assert not set(got.tolist()) & set(live)
            assert np.all(pool.evidence[got] == 0) and np.all(pool.stamp[got] == 0)
            for r in got:
                live[int(r)] = float(step + 1)
                pool.evidence[r] = step + 1
                pool.stamp[r] = step + 1
        assert pool.in_use == len(live)
        rows = np.array(sorted(live), dtype=np.int64)
        assert np.array_equal(pool.evidence[rows, 0], [live[int(r)] for r in rows])  # kept through growth
        assert np.array_equal(pool.stamp[rows], [live[int(r)] for r in rows])
        assert np.all(pool.evidence[NO_ROW] == 0)
    assert pool.capacity > first_capacity  # it grew on the way
    assert pool.capacity <= 200


def test_the_bound_is_the_window_and_clear_frees_every_row() -> None:
    pool = ClassEvidencePool(width=2, max_rows=10)
    got = pool.take(10)
    assert sorted(got.tolist()) == list(range(1, 11)) and pool.capacity == 10
    with pytest.raises(RuntimeError, match="beyond its bound of 10"):
        pool.take(1)
    pool.give_back(np.array([NO_ROW, 3], dtype=np.int32))  # NO_ROW entries are skipped
    assert pool.in_use == 9
    assert pool.take(1).tolist() == [3]
    pool.evidence[5] = 7.0
    pool.clear()
    assert pool.in_use == 0 and not pool.evidence.any()
    assert sorted(pool.take(10).tolist()) == list(range(1, 11))
