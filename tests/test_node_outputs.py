"""voxel_outputs against hand-computed cases and slow per-voxel references."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from occdepth_ros.classes import load_class_set
from occdepth_ros.model.config import GridConfig
from occdepth_ros.node.voxel_outputs import (
    DEFAULT_FREE_CLASSES,
    OCC_FREE,
    OCC_OCCUPIED,
    OCC_UNKNOWN,
    bev_occupancy,
    class_ids,
    cloud_dtype,
    marker_groups,
    occupied_voxels,
    packed_rgb,
    point_fields,
    voxel_cloud,
    z_band_layers,
)

CS = load_class_set()
GRID = GridConfig(origin=(1.0, -0.6, -0.4), dims=(4, 3, 5), voxel_size=0.2)
EMPTY, IGNORE = CS.empty_index, CS.ignore_index
CAR, ROAD, BUILDING = (CS.names.index(n) for n in ("car", "road", "building"))


def random_prediction(seed=0, grid=GRID):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CS.n_classes, grid.dims).astype(np.uint8)
    labels[rng.random(grid.dims) < 0.4] = EMPTY
    labels[rng.random(grid.dims) < 0.05] = IGNORE
    conf = rng.random(grid.dims).astype(np.float32)
    seen = rng.random(grid.dims) < 0.7
    return labels, conf, seen


def centre(grid, i, j, k):
    return tuple(grid.origin[a] + (idx + 0.5) * grid.voxel_size for a, idx in enumerate((i, j, k)))


def loop_occupied(labels, grid, seen=None):
    out = []
    for i in range(grid.dims[0]):
        for j in range(grid.dims[1]):
            for k in range(grid.dims[2]):
                lab = int(labels[i, j, k])
                if lab in (EMPTY, IGNORE) or (seen is not None and not seen[i, j, k]):
                    continue
                out.append(((i, j, k), lab))
    return out


# -- occupied voxels ------------------------------------------------------------------
def test_occupied_voxels_hand_case():
    labels = np.zeros(GRID.dims, np.uint8)
    labels[0, 0, 0] = CAR
    labels[3, 2, 4] = ROAD
    labels[1, 1, 1] = IGNORE
    vox = occupied_voxels(labels, GRID, CS)
    np.testing.assert_allclose(vox.centres, [[1.1, -0.5, -0.3], [1.7, -0.1, 0.5]], atol=1e-12)
    assert vox.labels.tolist() == [CAR, ROAD] and vox.confidence is None and len(vox) == 2


def test_occupied_voxels_match_loop_reference_and_seen_filter():
    labels, conf, seen = random_prediction()
    for include_unseen in (True, False):
        vox = occupied_voxels(labels, GRID, CS, conf, seen, include_unseen=include_unseen)
        ref = loop_occupied(labels, GRID, None if include_unseen else seen)
        assert vox.labels.tolist() == [lab for _, lab in ref]
        np.testing.assert_allclose(vox.centres, [centre(GRID, *ijk) for ijk, _ in ref], atol=1e-12)
        np.testing.assert_array_equal(vox.confidence, [conf[ijk] for ijk, _ in ref])


def test_occupied_voxels_rejects_bad_inputs():
    labels, conf, seen = random_prediction()
    with pytest.raises(ValueError, match="shape"):
        occupied_voxels(labels[:-1], GRID, CS)
    with pytest.raises(ValueError, match="dtype"):
        occupied_voxels(labels.astype(np.int64), GRID, CS)
    with pytest.raises(ValueError, match="seen mask"):
        occupied_voxels(labels, GRID, CS, include_unseen=False)
    bad = labels.copy()
    bad[0, 0, 0] = CS.n_classes
    with pytest.raises(ValueError, match=rf"\[{CS.n_classes}\] outside"):
        occupied_voxels(bad, GRID, CS)


# -- PointCloud2 payload ----------------------------------------------------------------
def test_packed_rgb_bits():
    bits = packed_rgb(CS).view(np.uint32)
    for c, (r, g, b) in enumerate(CS.colors.tolist()):
        assert bits[c] == (r << 16) | (g << 8) | b


@pytest.mark.parametrize("with_conf", [False, True])
def test_field_layout(with_conf):
    fields = point_fields(cloud_dtype(with_conf))
    expected = [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("rgb", 12, 7), ("label", 16, 2)]
    if with_conf:
        expected.append(("confidence", 20, 7))
    assert [(f.name, f.offset, f.datatype, f.count) for f in fields] == [e + (1,) for e in expected]
    assert cloud_dtype(with_conf).itemsize == (24 if with_conf else 20)


def test_point_fields_rejects_big_endian():
    with pytest.raises(ValueError, match="little-endian"):
        point_fields(np.dtype([("x", ">f4")]))


@pytest.mark.parametrize("with_conf", [False, True])
def test_cloud_bytes_decode_per_point_with_struct(with_conf):
    labels, conf, seen = random_prediction(seed=3)
    vox = occupied_voxels(labels, GRID, CS, conf if with_conf else None, seen)
    cloud = voxel_cloud(vox, CS, with_confidence=with_conf)
    data = cloud.points.tobytes()
    fmt = "<ffffB3xf" if with_conf else "<ffffB3x"
    fmt_rgb = "<12xI"  # the rgb float's bits
    ref = loop_occupied(labels, GRID)
    assert cloud.width == len(ref) and len(data) == cloud.point_step * len(ref)
    for n, (ijk, lab) in enumerate(ref):
        rec = data[n * cloud.point_step:(n + 1) * cloud.point_step]
        vals = struct.unpack(fmt, rec)
        np.testing.assert_allclose(vals[:3], centre(GRID, *ijk), atol=1e-6)
        (rgb_bits,) = struct.unpack_from(fmt_rgb, rec)
        r, g, b = CS.colors[lab].tolist()
        assert rgb_bits == (r << 16) | (g << 8) | b
        assert vals[4] == lab
        assert rec[17:20] == b"\0\0\0"  # padding is deterministic
        if with_conf:
            assert vals[5] == pytest.approx(float(conf[ijk]), abs=0)


def test_cloud_without_confidence_data():
    labels, _, _ = random_prediction()
    with pytest.raises(ValueError, match="no confidence"):
        voxel_cloud(occupied_voxels(labels, GRID, CS), CS, with_confidence=True)


def test_empty_cloud():
    cloud = voxel_cloud(occupied_voxels(np.zeros(GRID.dims, np.uint8), GRID, CS), CS)
    assert cloud.width == 0 and cloud.points.tobytes() == b""


# -- markers ------------------------------------------------------------------------------
def test_marker_groups_match_loop_reference():
    labels, _, _ = random_prediction(seed=5)
    groups = marker_groups(occupied_voxels(labels, GRID, CS), CS)
    ref: dict[int, list] = {}
    for ijk, lab in loop_occupied(labels, GRID):
        ref.setdefault(lab, []).append(centre(GRID, *ijk))
    assert [g.class_id for g in groups.groups] == sorted(ref)
    for g in groups.groups:
        assert g.name == CS.names[g.class_id]
        assert g.rgb == tuple(c / 255 for c in CS.colors[g.class_id].tolist())
        np.testing.assert_allclose(g.centres, ref[g.class_id], atol=1e-12)
    assert groups.dropped == 0 and groups.total == sum(len(v) for v in ref.values())


def test_marker_cap_keeps_the_nearest():
    grid = GridConfig(origin=(0.0, 0.0, 0.0), dims=(8, 1, 1), voxel_size=1.0)
    labels = np.full(grid.dims, CAR, np.uint8)
    labels[::2] = BUILDING
    groups = marker_groups(occupied_voxels(labels, grid, CS), CS, max_voxels=3)
    kept = sorted(c for g in groups.groups for c in g.centres[:, 0].tolist())
    assert kept == [0.5, 1.5, 2.5] and groups.dropped == 5 and groups.total == 3
    assert [g.class_id for g in groups.groups] == [CAR, BUILDING]
    none = marker_groups(occupied_voxels(labels, grid, CS), CS, max_voxels=0)
    assert none.groups == () and none.dropped == 8
    with pytest.raises(ValueError):
        marker_groups(occupied_voxels(labels, grid, CS), CS, max_voxels=-1)


# -- occupancy grid ---------------------------------------------------------------------------
def loop_bev(labels, seen, grid, z_min, z_max, free):
    free_ids = {CS.names.index(n) for n in free}
    X, Y, Z = grid.dims
    out = np.zeros((Y, X), np.int8)
    for i in range(X):
        for j in range(Y):
            col_seen = seen is None or any(seen[i, j, k] for k in range(Z))
            col_known = any(int(labels[i, j, k]) != IGNORE for k in range(Z))
            if not (col_seen and col_known):
                out[j, i] = -1
                continue
            occ = False
            for k in range(Z):
                zc = grid.origin[2] + (k + 0.5) * grid.voxel_size
                lab = int(labels[i, j, k])
                if z_min <= zc + 1e-9 and zc - 1e-9 <= z_max and lab not in {EMPTY, IGNORE} | free_ids:
                    occ = True
            out[j, i] = 100 if occ else 0
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("free", [DEFAULT_FREE_CLASSES, (), ("building", "car")])
def test_bev_matches_loop_reference(seed, free):
    labels, _, _ = random_prediction(seed)
    seen = np.random.default_rng(seed + 10).random(GRID.dims) < 0.15  # ~40% of columns unseen
    bev = bev_occupancy(labels, GRID, CS, z_min=-0.2, z_max=0.2, seen=seen, free_classes=free)
    np.testing.assert_array_equal(bev.data, loop_bev(labels, seen, GRID, -0.2, 0.2, free))
    assert bev.data.dtype == np.int8 and bev.data.flags.c_contiguous


def test_bev_hand_case_orientation_and_rules():
    labels = np.zeros(GRID.dims, np.uint8)
    seen = np.ones(GRID.dims, bool)
    labels[3, 0, 2] = CAR  # col 3, row 0, z centre 0.1: in band -> occupied
    labels[0, 2, 2] = ROAD  # ground class in band -> free
    labels[1, 1, 4] = BUILDING  # above the band (z centre 0.5) -> free
    labels[2, 1, 1] = BUILDING  # z centre -0.1, exactly... in band -> occupied
    seen[0, 0, :] = False  # never seen -> unknown even though empty
    labels[1, 0, :] = IGNORE  # only ignore labels -> unknown
    bev = bev_occupancy(labels, GRID, CS, z_min=-0.1, z_max=0.3, seen=seen)
    expected = np.array([
        [OCC_UNKNOWN, OCC_UNKNOWN, OCC_FREE, OCC_OCCUPIED],  # row 0 = y index 0
        [OCC_FREE, OCC_FREE, OCC_OCCUPIED, OCC_FREE],
        [OCC_FREE, OCC_FREE, OCC_FREE, OCC_FREE],
    ], np.int8)
    np.testing.assert_array_equal(bev.data, expected)
    assert (bev.width, bev.height, bev.resolution) == (4, 3, 0.2)
    assert bev.origin == (1.0, -0.6, -0.1)
    flat = bev.data.tobytes()
    assert flat[0 * bev.width + 3] == OCC_OCCUPIED  # data[row * width + col]


def test_bev_unseen_wins_over_occupied_and_no_seen_means_all_seen():
    labels = np.zeros(GRID.dims, np.uint8)
    labels[0, 0, 2] = CAR
    seen = np.zeros(GRID.dims, bool)
    assert bev_occupancy(labels, GRID, CS, -1.0, 1.0, seen=seen).data[0, 0] == OCC_UNKNOWN
    assert bev_occupancy(labels, GRID, CS, -1.0, 1.0).data[0, 0] == OCC_OCCUPIED


def test_z_band_edges():
    # layer centres: -0.3, -0.1, 0.1, 0.3, 0.5
    assert z_band_layers(GRID, -0.1, 0.1).tolist() == [False, True, True, False, False]
    with pytest.raises(ValueError, match="contains no voxel layer"):
        z_band_layers(GRID, -0.05, 0.05)
    with pytest.raises(ValueError, match="must be <="):
        z_band_layers(GRID, 0.2, 0.1)


def test_class_ids():
    assert class_ids(["road", "car"], CS).tolist() == [ROAD, CAR]
    with pytest.raises(ValueError, match=r"unknown class name\(s\) \['grass'\]"):
        class_ids(["grass"], CS)
    with pytest.raises(ValueError, match="grass"):
        bev_occupancy(np.zeros(GRID.dims, np.uint8), GRID, CS, -1, 1, free_classes=["grass"])
