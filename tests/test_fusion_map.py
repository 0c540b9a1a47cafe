"""The rolling semantic map: recovery of a static scene, round trips at voxel centres,
bounded memory under window motion and decay, the flip rule for moving objects, the class
choice against the network's class prior.

References are independent: float64 slow loops over voxels and hand-computed evidence."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.fusion_scenes import (K, SMALL_GRID, frame_probs, grid_centres_odom, wedge_seen, world_class,
                                   yaw_pose, yaw_pose_any)
from occdepth_ros.data.semantic_kitti import upsample_labels
from occdepth_ros.fusion import FusionConfig, RollingSemanticMap
from occdepth_ros.fusion.rolling_map import EMPTY
from occdepth_ros.model.config import GridConfig

VS = SMALL_GRID.voxel_size
FINE_GRID = GridConfig(origin=SMALL_GRID.origin, dims=tuple(2 * d for d in SMALL_GRID.dims), voxel_size=VS / 2,
                       project_scale=2)  # twice as fine as SMALL_GRID, the same box


def small_cfg(**kw) -> FusionConfig:
    return FusionConfig.for_grid(SMALL_GRID, extent_xy_m=16.0, **kw)


def test_for_grid_takes_the_grid_voxel_size_and_height_band() -> None:
    grid = GridConfig(origin=(0.0, -25.6, -2.0), dims=(128, 128, 16), voxel_size=0.4, project_scale=2)
    cfg = FusionConfig.for_grid(grid)
    assert cfg.voxel_size == 0.4 and (cfg.z_min_m, cfg.z_max_m) == (-2.0, pytest.approx(4.4))
    assert cfg.dims == (256, 256, 16)  # 102.4 m / 0.4 m, the band 6.4 m / 0.4 m


def test_static_scene_seen_from_several_poses_is_recovered_exactly_where_seen() -> None:
    m = RollingSemanticMap(small_cfg(), K)
    seen = wedge_seen(SMALL_GRID)
    poses = [yaw_pose(q, t, VS) for q, t in [(0, (0, 0, 0)), (0, (3, 1, 0)), (1, (5, -2, 0)), (3, (2, 4, 1)),
                                             (2, (9, 0, 0))]]
    observed: set[tuple[int, int, int]] = set()  # odometry voxels some frame saw (slow float64 loop)
    for T in poses:
        m.integrate(frame_probs(SMALL_GRID, T, VS), seen, T, SMALL_GRID)
        # The window, as documented: x, y centred on the robot, z from the band below it.
        n = m.dims
        lo = (int(np.floor(T[0, 3] / VS + 0.5)) - n[0] // 2, int(np.floor(T[1, 3] / VS + 0.5)) - n[1] // 2,
              int(np.floor((T[2, 3] + m.cfg.z_min_m) / VS + 0.5)))
        observed = {v for v in observed if all(lo[a] <= v[a] < lo[a] + n[a] for a in range(3))}
        centres = grid_centres_odom(SMALL_GRID, T)
        for ijk in zip(*np.nonzero(seen)):
            observed.add(tuple(int(v) for v in np.floor(centres[ijk] / VS)))
    T_view = yaw_pose(0, (4, 0, 0), VS)
    labels, known = m.render(T_view, SMALL_GRID)
    centres = grid_centres_odom(SMALL_GRID, T_view)
    n_known = 0
    for ijk in np.ndindex(*SMALL_GRID.dims):
        idx = tuple(int(v) for v in np.floor(centres[ijk] / VS))
        expect_known = idx in observed
        assert known[ijk] == expect_known, ijk
        if expect_known:
            n_known += 1
            assert labels[ijk] == world_class(np.array(idx)), ijk
        else:
            assert labels[ijk] == EMPTY
    assert 0 < n_known < labels.size  # both cases occur


@pytest.mark.parametrize("quarter", [0, 1, 2, 3])
def test_pose_round_trip_is_exact_at_voxel_centres(quarter: int) -> None:
    T = yaw_pose(quarter, (7, -3, 1), VS)
    probs = frame_probs(SMALL_GRID, T, VS)
    seen = np.ones(SMALL_GRID.dims, dtype=bool)
    m = RollingSemanticMap(small_cfg(), K)
    m.integrate(probs, seen, T, SMALL_GRID)
    labels, known = m.render(T, SMALL_GRID)
    assert known.all()
    np.testing.assert_array_equal(labels, probs.argmax(0))
    # The published voxels are the occupied grid voxel centres, in the odometry frame.
    centres, cls = m.occupied()
    expect = grid_centres_odom(SMALL_GRID, T)[probs.argmax(0) != EMPTY]
    order = np.lexsort(centres.T), np.lexsort(expect.T)
    np.testing.assert_allclose(centres[order[0]], expect[order[1]], atol=1e-5)
    np.testing.assert_array_equal(cls[order[0]], world_class(np.floor(expect[order[1]] / VS).astype(int)))


def test_round_trip_at_any_pose_where_a_map_voxel_took_one_grid_voxel() -> None:
    """Off the lattice nearest resampling may land two grid voxels in one map voxel; every
    grid voxel whose map voxel took it alone reads back its own class."""
    T = yaw_pose_any(0.37, (1.13, -0.71, 0.05))
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(K) * 0.3, size=SMALL_GRID.dims).astype(np.float32).transpose(3, 0, 1, 2)
    seen = np.ones(SMALL_GRID.dims, dtype=bool)
    m = RollingSemanticMap(small_cfg(occupied_threshold=0.5), K)
    m.integrate(probs, seen, T, SMALL_GRID)
    labels, known = m.render(T, SMALL_GRID)
    idx = np.floor(grid_centres_odom(SMALL_GRID, T) / VS).astype(np.int64).reshape(-1, 3)
    _, inverse, counts = np.unique(idx, axis=0, return_inverse=True, return_counts=True)
    alone = (counts[inverse.reshape(-1)] == 1).reshape(SMALL_GRID.dims)
    p_occ = 1.0 - probs[0].astype(np.float64)
    expect = np.where(p_occ >= 0.5, probs[1:].argmax(0) + 1, EMPTY)
    assert alone.sum() > 0.5 * alone.size
    assert known.all()
    np.testing.assert_array_equal(labels[alone], expect[alone])


def test_decay_is_applied_lazily_as_hand_computed() -> None:
    """One voxel seen occupied (0.9), then k frames unseen, then seen empty (P(occ) 0.2):
    the fused fraction is (d^(k+1) w 0.9 + w 0.2) / (d^(k+1) w + w), w equal at the same pose."""
    seen_one = np.zeros(SMALL_GRID.dims, dtype=bool)
    seen_one[5, 6, 2] = True
    nothing = np.zeros_like(seen_one)
    T = np.eye(4)
    for k, d in [(0, 0.9), (2, 0.9), (6, 0.9), (3, 0.5)]:
        m = RollingSemanticMap(small_cfg(decay=d, max_weight=100.0, occupied_threshold=0.5), K)
        first = np.zeros((K, *SMALL_GRID.dims), np.float32)
        first[0], first[2] = 0.1, 0.9
        second = np.zeros_like(first)
        second[0], second[2] = 0.8, 0.2
        m.integrate(first, seen_one, T, SMALL_GRID)
        for _ in range(k):
            m.integrate(first, nothing, T, SMALL_GRID)
        m.integrate(second, seen_one, T, SMALL_GRID)
        fade = d ** (k + 1)
        expect = (fade * 0.9 + 0.2) / (fade + 1.0)
        labels, known = m.render(T, SMALL_GRID)
        assert known[5, 6, 2] and known.sum() == 1
        assert labels[5, 6, 2] == (2 if expect >= 0.5 else EMPTY), (k, d, expect)
    assert (0.9 ** 1 * 0.9 + 0.2) / 1.9 > 0.5 > (0.9 ** 7 * 0.9 + 0.2) / (0.9 ** 7 + 1)  # both outcomes tested


def test_window_motion_and_decay_keep_memory_bounded_over_10000_frames() -> None:
    """Memory is bounded by the window (a row of class evidence for at most every window
    voxel) and settles while the robot drives on; rows of voxels that left come back (no
    more class voxels than observed ones at any time)."""
    grid = GridConfig(origin=(0.0, -0.8, -0.4), dims=(4, 4, 2), voxel_size=0.4, project_scale=2)
    cfg = FusionConfig.for_grid(grid, extent_xy_m=4.0, decay=0.95)
    m = RollingSemanticMap(cfg, K)
    window = int(np.prod(cfg.dims))
    per_voxel = 4 + 4 + 4 + 1 + 4 + 1  # occupancy, total, row, best class, stamp, label
    bound = window * per_voxel + (window + 1) * ((K - 1) * 4 + 4 + 4)  # every voxel with a row
    start = m.memory_bytes()
    assert start < bound
    seen = np.ones(grid.dims, dtype=bool)
    pose = np.eye(4)
    step = yaw_pose_any(0.013, (0.37, 0.0, 0.0))
    max_observed = max_classes = 0
    settled = None
    for i in range(10_000):
        pose = pose @ step
        stats = m.integrate(frame_probs(grid, pose, cfg.voxel_size), seen, pose, grid)
        assert stats.updated <= int(np.prod(grid.dims))
        if i % 500 == 0:
            max_observed = max(max_observed, m.observed_voxels())
            max_classes = max(max_classes, m.class_voxels())
            assert 0 < m.class_voxels() <= m.observed_voxels() <= window
            assert m.memory_bytes() <= bound
        if i == 2_000:
            settled = m.memory_bytes()
    assert m.memory_bytes() == settled
    assert 0 < max_observed <= window and max_classes > 0
    assert settled > start  # the class rows grew past their first allocation (and still fit the bound)
    # The robot drove a circle of ~280 m: the start is far behind, out of the window.
    _, known = m.render(np.eye(4), grid)
    assert not known.any() or np.linalg.norm(pose[:2, 3]) < cfg.extent_xy_m


def test_slabs_that_leave_the_window_are_cleared_and_come_back_unknown() -> None:
    m = RollingSemanticMap(small_cfg(), K)
    seen = np.ones(SMALL_GRID.dims, dtype=bool)
    T0 = np.eye(4)
    m.integrate(frame_probs(SMALL_GRID, T0, VS), seen, T0, SMALL_GRID)
    n_window = m.dims[0]
    far = yaw_pose(0, (n_window + 20, 0, 0), VS)  # beyond a whole window ahead
    stats = m.integrate(frame_probs(SMALL_GRID, far, VS), seen, far, SMALL_GRID)
    assert stats.window_shift[0] == n_window + 20 and stats.cleared_slots == int(np.prod(m.dims))
    back = RollingSemanticMap(small_cfg(), K)
    back.integrate(frame_probs(SMALL_GRID, far, VS), seen, far, SMALL_GRID)
    assert m.observed_voxels() == back.observed_voxels()  # nothing of the start survived
    assert m.class_voxels() == back.class_voxels() > 0  # and its class rows were given back
    _, known = m.render(T0, SMALL_GRID)
    assert not known.any()
    # A short move clears exactly the slabs that left: 3 x-slabs of the window.
    m2 = RollingSemanticMap(small_cfg(), K)
    m2.integrate(frame_probs(SMALL_GRID, T0, VS), seen, T0, SMALL_GRID)
    stats = m2.integrate(frame_probs(SMALL_GRID, T0, VS), np.zeros_like(seen), yaw_pose(0, (3, 0, 0), VS), SMALL_GRID)
    assert stats.window_shift == (3, 0, 0) and stats.cleared_slots == 3 * m2.dims[1] * m2.dims[2]


def _one_voxel_frame(cls: int, p: float) -> np.ndarray:
    probs = np.full((K, *SMALL_GRID.dims), (1.0 - p) / (K - 1), np.float32)
    probs[cls] = p
    return probs


@pytest.mark.parametrize("flip_keep, confidence, expect_cls, expect_flips", [
    (0.0, 0.95, 4, 1),  # a confident new class: the old evidence is dropped, the class flips at once
    (1.0, 0.95, 1, 1),  # kept evidence: five car frames outweigh one person frame
    (0.0, 0.55, 1, 0),  # below flip_confidence: no flip, the car stays
])
def test_flip_rule_for_moving_objects(flip_keep: float, confidence: float, expect_cls: int, expect_flips: int) -> None:
    seen = np.zeros(SMALL_GRID.dims, dtype=bool)
    seen[3, 3, 1] = True
    m = RollingSemanticMap(small_cfg(flip_keep=flip_keep, flip_confidence=0.9, decay=1.0), K)
    T = np.eye(4)
    for _ in range(5):
        m.integrate(_one_voxel_frame(1, 0.9), seen, T, SMALL_GRID)
    assert m.flips == 0
    stats = m.integrate(_one_voxel_frame(4, confidence), seen, T, SMALL_GRID)
    labels, _ = m.render(T, SMALL_GRID)
    assert labels[3, 3, 1] == expect_cls
    assert stats.flips == m.flips == (expect_flips if confidence >= 0.9 else 0)


@pytest.mark.parametrize("movable, expect_flips", [((1,), 1), ((4,), 1), ((1, 4), 1), ((), 0), ((2, 3), 0)])
def test_only_a_movable_class_flips(movable: tuple[int, ...], expect_flips: int) -> None:
    """Class 1 held, then class 4 seen confidently: a flip where either class can move."""
    seen = np.zeros(SMALL_GRID.dims, dtype=bool)
    seen[3, 3, 1] = True
    mask = np.isin(np.arange(K), movable)
    m = RollingSemanticMap(small_cfg(flip_keep=0.0, flip_confidence=0.9, decay=1.0), K, movable=mask)
    for _ in range(5):
        m.integrate(_one_voxel_frame(1, 0.9), seen, np.eye(4), SMALL_GRID)
    m.integrate(_one_voxel_frame(4, 0.95), seen, np.eye(4), SMALL_GRID)
    assert m.flips == expect_flips
    assert m.render(np.eye(4), SMALL_GRID)[0][3, 3, 1] == (4 if expect_flips else 1)


@pytest.mark.parametrize("held, movable, p_empty, expect_cls, expect_vacated", [
    (1, (1,), 0.95, EMPTY, 1),  # a car seen confidently empty: it left, gone at once
    (1, (1,), 0.85, 1, 0),  # not confident: one view against five, the car stays
    (1, (), 0.95, 1, 0),  # the class is not movable: weighed like any view
    (2, (1,), 0.95, 2, 0),  # another class held, only the movable one is discounted
])
def test_a_movable_voxel_seen_confidently_empty_is_vacated(held: int, movable: tuple[int, ...], p_empty: float,
                                                           expect_cls: int, expect_vacated: int) -> None:
    """Five views of class ``held`` (P(occupied) 0.98 each), then one with P(empty)
    ``p_empty``: by hand, (5 * 0.98 + (1 - p_empty)) / 6 >= 0.55 keeps it occupied, unless
    the old evidence is discounted (flip_keep 0 leaves the last view alone)."""
    seen = np.zeros(SMALL_GRID.dims, dtype=bool)
    seen[3, 3, 1] = True
    mask = np.isin(np.arange(K), movable)
    m = RollingSemanticMap(small_cfg(flip_keep=0.0, flip_confidence=0.9, decay=1.0), K, movable=mask)
    for _ in range(5):
        m.integrate(_one_voxel_frame(held, 0.9), seen, np.eye(4), SMALL_GRID)
    assert m.render(np.eye(4), SMALL_GRID)[0][3, 3, 1] == held
    stats = m.integrate(_one_voxel_frame(EMPTY, p_empty), seen, np.eye(4), SMALL_GRID)
    assert (5 * 0.98 + (1 - p_empty)) / 6 >= 0.55  # without the rule, every case stays occupied
    assert stats.vacated == m.vacated == expect_vacated and stats.flips == 0
    assert m.render(np.eye(4), SMALL_GRID)[0][3, 3, 1] == expect_cls


@pytest.mark.parametrize("prior_2, expect", [(None, 1), (0.1, 2), (0.3, 1)])
def test_class_choice_divides_the_summed_evidence_by_the_prior(prior_2: float | None, expect: int) -> None:
    """Three frames of one voxel, each P(class 1) 0.6, P(class 2) 0.3: the sums keep that
    ratio, so class 1 wins alone; with a prior of 0.4 for class 1, class 2 wins where its
    prior is below 0.2 (0.3 / 0.1 > 0.6 / 0.4) and loses above (0.3 / 0.3 < 1.5)."""
    seen = np.zeros(SMALL_GRID.dims, dtype=bool)
    seen[2, 5, 3] = True
    probs = np.zeros((K, *SMALL_GRID.dims), np.float32)
    probs[0], probs[1], probs[2] = 0.1, 0.6, 0.3
    prior = None
    if prior_2 is not None:
        prior = np.array([0.5 - prior_2, 0.4, prior_2, 0.05, 0.025, 0.025])
    m = RollingSemanticMap(small_cfg(), K, class_prior=prior)
    for _ in range(3):
        m.integrate(probs, seen, np.eye(4), SMALL_GRID)
    assert m.render(np.eye(4), SMALL_GRID)[0][2, 5, 3] == expect


def test_class_evidence_and_choice_match_a_float64_reference() -> None:
    """Random frames at one pose, each seeing a random part of the grid (one grid voxel per
    map voxel): every label equals a float64 loop over voxels and frames. Occupancy: the
    decayed, range-weighted mean of P(occupied) against the threshold; class: decayed sums of
    w * P(class) over the frames where the voxel may be occupied, divided by the prior."""
    rng = np.random.default_rng(11)
    cfg = small_cfg(decay=0.8, class_decay=0.95, max_weight=1e9, flip_keep=1.0)
    prior = np.array([0.7, 0.02, 0.1, 0.08, 0.05, 0.05])
    m = RollingSemanticMap(cfg, K, class_prior=prior)
    dims = SMALL_GRID.dims
    frames = []
    for _ in range(7):
        alpha = np.array([2.5, 0.5, 0.5, 0.5, 0.5, 0.5])  # about half the voxels most likely empty
        probs = rng.dirichlet(alpha, size=dims).astype(np.float32).transpose(3, 0, 1, 2).copy()
        seen = rng.random(dims) < 0.6
        m.integrate(probs, seen, np.eye(4), SMALL_GRID)
        frames.append((probs.astype(np.float64), seen))
    labels, known = m.render(np.eye(4), SMALL_GRID)
    centres = grid_centres_odom(SMALL_GRID, np.eye(4))
    checked = {0: 0, 1: 0, "prior decides": 0}
    for ijk in np.ndindex(*dims):
        r = float(np.linalg.norm(centres[ijk]))
        w = 1.0 / (1.0 + (r / cfg.range_falloff_m) ** cfg.range_power)
        occ = total = 0.0
        evidence = np.zeros(K - 1)
        last = last_class = None
        for t, (probs, seen) in enumerate(frames):
            if not seen[ijk]:
                continue
            q = probs[(slice(None), *ijk)]
            fade = 0.0 if last is None else cfg.decay ** (t - last)
            occ, total, last = occ * fade + w * (1 - q[0]), total * fade + w, t
            if q.argmax() != 0 or 1 - q[0] >= cfg.class_min_occupied:
                class_fade = 0.0 if last_class is None else cfg.class_decay ** (t - last_class)
                evidence, last_class = evidence * class_fade + w * q[1:], t
        assert known[ijk] == (last is not None)
        if last is None:
            continue
        occupied = occ >= cfg.occupied_threshold * total and last_class is not None
        expect = int(np.argmax(evidence / prior[1:])) + 1 if occupied else EMPTY
        assert labels[ijk] == expect, ijk
        checked[int(occupied)] += 1
        checked["prior decides"] += occupied and expect != int(np.argmax(evidence)) + 1
    assert min(checked.values()) > 50, checked  # each outcome, many times


def test_reset_forgets_and_counts() -> None:
    m = RollingSemanticMap(small_cfg(), K)
    seen = np.ones(SMALL_GRID.dims, dtype=bool)
    m.integrate(frame_probs(SMALL_GRID, np.eye(4), VS), seen, np.eye(4), SMALL_GRID)
    assert m.observed_voxels() > 0
    m.reset()
    assert m.observed_voxels() == 0 and m.resets == 1 and m.occupied()[0].shape == (0, 3)
    assert not m.render(np.eye(4), SMALL_GRID)[1].any()


def test_bad_input_is_refused_with_a_clear_error() -> None:
    m = RollingSemanticMap(small_cfg(), K)
    probs = frame_probs(SMALL_GRID, np.eye(4), VS)
    seen = np.ones(SMALL_GRID.dims, dtype=bool)
    with pytest.raises(ValueError, match="probs has shape"):
        m.integrate(probs[:3], seen, np.eye(4), SMALL_GRID)
    with pytest.raises(ValueError, match="seen must be a bool array"):
        m.integrate(probs, seen.astype(np.uint8), np.eye(4), SMALL_GRID)
    bad = np.eye(4)
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="finite 4x4"):
        m.integrate(probs, seen, bad, SMALL_GRID)
    with pytest.raises(ValueError, match="decay"):
        FusionConfig(decay=0.0)
    with pytest.raises(ValueError, match="occupancy must be one of"):
        FusionConfig(occupancy="max")
    with pytest.raises(ValueError, match="class_decay must be in"):
        FusionConfig(class_decay=1.0)
    for prior in ([0.5] * (K - 1), [0.5, 0.0, 0.1, 0.1, 0.1, 0.2], [np.nan] * K):
        with pytest.raises(ValueError, match=f"class_prior must hold {K} positive finite numbers"):
            RollingSemanticMap(small_cfg(), K, class_prior=np.array(prior))
    with pytest.raises(ValueError, match="movable must be a bool mask"):
        RollingSemanticMap(small_cfg(), K, movable=np.ones(K - 1, bool))


def test_labels_argument_gives_the_same_map_as_the_slow_path() -> None:
    rng = np.random.default_rng(5)
    seen = wedge_seen(SMALL_GRID)
    fast, slow = RollingSemanticMap(small_cfg(), K), RollingSemanticMap(small_cfg(), K)
    for i in range(4):
        probs = rng.dirichlet(np.ones(K) * 0.4, size=SMALL_GRID.dims).astype(np.float32).transpose(3, 0, 1, 2).copy()
        T = yaw_pose_any(0.1 * i, (0.9 * i, 0.2 * i, 0.0))
        fast.integrate(probs, seen, T, SMALL_GRID, labels=probs.argmax(0).astype(np.uint8))
        slow.integrate(probs, seen, T, SMALL_GRID)
    for a, b in zip(fast.render(T, SMALL_GRID), slow.render(T, SMALL_GRID)):
        np.testing.assert_array_equal(a, b)


def test_a_map_finer_than_the_grid_takes_every_fine_voxel_in_view() -> None:
    """0.2 m map, 0.4 m grid: each fine voxel takes the grid voxel holding its centre, so
    rendering onto the grid's box at 0.2 m gives the grid's labels upsampled by two."""
    cfg = FusionConfig.for_grid(SMALL_GRID, extent_xy_m=16.0, voxel_size=0.2)
    for T in (yaw_pose(0, (3, -2, 0), VS), yaw_pose(1, (1, 4, 1), VS)):
        m = RollingSemanticMap(cfg, K)
        probs = frame_probs(SMALL_GRID, T, VS)
        seen = wedge_seen(SMALL_GRID)
        m.integrate(probs, seen, T, SMALL_GRID)
        labels, known = m.render(T, FINE_GRID)
        np.testing.assert_array_equal(known, upsample_labels(seen, 2))
        np.testing.assert_array_equal(labels[known], upsample_labels(probs.argmax(0), 2)[known])


def _repeat(a: np.ndarray) -> np.ndarray:
    """Each voxel of the last three axes as a 2 x 2 x 2 block."""
    return a.repeat(2, -3).repeat(2, -2).repeat(2, -1)


def test_a_map_twice_as_coarse_as_the_grid_is_the_map_of_the_coarse_frame() -> None:
    """Random frames on the coarse grid, each voxel repeated as a block of the fine grid:
    the coarse map fed the fine frames equals the map fed the coarse frames, at any pose
    (the block mean of equal values is the value)."""
    rng = np.random.default_rng(5)
    cfg = small_cfg(decay=0.8, flip_keep=0.5)
    coarse = RollingSemanticMap(cfg, K)
    fine = RollingSemanticMap(cfg, K)
    for t in range(6):
        probs = rng.dirichlet([2.5, 0.5, 0.5, 0.5, 0.5, 0.5], size=SMALL_GRID.dims).astype(np.float32)
        probs = probs.transpose(3, 0, 1, 2).copy()
        seen = rng.random(SMALL_GRID.dims) < 0.7
        T = yaw_pose_any(0.3 * t, (0.37 * t, 0.11 * t, 0.0))
        coarse.integrate(probs, seen, T, SMALL_GRID)
        stats = fine.integrate(_repeat(probs), _repeat(seen), T, FINE_GRID)
        assert stats.updated <= int(seen.sum())  # blocks, not fine voxels, entered
        for grid in (SMALL_GRID, FINE_GRID):
            a, b = coarse.render(T, grid), fine.render(T, grid)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
    assert coarse.observed_voxels() == fine.observed_voxels() > 100


@pytest.mark.parametrize("cars, last_is_car, expect", [(5, False, 1), (4, True, EMPTY)])
def test_every_grid_voxel_of_a_block_counts(cars: int, last_is_car: bool, expect: int) -> None:
    """One block of 8 fine voxels, ``cars`` of them car (P(occupied) 0.98), the others empty
    (0.02): the block's P(occupied) is the mean, (cars * 0.98 + (8 - cars) * 0.02) / 8,
    against 0.55; whichever voxel comes last does not decide."""
    probs = np.full((K, *FINE_GRID.dims), 0.02 / (K - 1), np.float32)
    probs[0] = 0.98
    order = [(a, b, c) for a in (6, 7) for b in (4, 5) for c in (2, 3)]  # (7, 5, 3) is written last
    car = order[-cars:] if last_is_car else order[:cars]
    for ijk in car:
        probs[(slice(None), *ijk)] = 0.02 / (K - 1)
        probs[(1, *ijk)] = 0.98
        probs[(0, *ijk)] = 0.02
    seen = np.zeros(FINE_GRID.dims, dtype=bool)
    seen[6:8, 4:6, 2:4] = True
    m = RollingSemanticMap(small_cfg(), K)
    m.integrate(probs, seen, np.eye(4), FINE_GRID)
    labels, known = m.render(np.eye(4), SMALL_GRID)
    assert known.sum() == 1 and known[3, 2, 1]
    assert labels[3, 2, 1] == expect, (cars * 0.98 + (8 - cars) * 0.02) / 8
    seen[7, 5, 3] = False  # a block not wholly seen takes no evidence
    part = RollingSemanticMap(small_cfg(), K)
    part.integrate(probs, seen, np.eye(4), FINE_GRID)
    assert not part.render(np.eye(4), SMALL_GRID)[1].any()
