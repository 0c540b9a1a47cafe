"""SemanticKITTI voxel file I/O, label remap and target downsampling."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from occdepth_ros.classes import load_class_set
from occdepth_ros.data.semantic_kitti import (
    SEMANTIC_KITTI_GRID,
    downsample_target,
    frame_name,
    pack_bits,
    read_bit_voxels,
    read_frame_target,
    read_label,
    read_prediction,
    remap_to_target,
    target_to_raw,
    unpack_bits,
    write_bit_voxels,
    write_frame_voxels,
    write_label,
)

SMALL = (4, 4, 8)  # 128 voxels: a multiple of 8, cheap to write


@pytest.fixture(scope="module")
def cs():
    return load_class_set()


# --- bit packing ------------------------------------------------------------------


def test_pack_is_msb_first_on_hand_made_bytes():
    # voxel 0 is the top bit: [1,0,0,0,0,0,0,1] -> 0b10000001 = 128 + 1 = 129
    # [0,1,0,0,0,0,0,0] -> 0b01000000 = 64
    mask = np.array([1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    assert pack_bits(mask).tolist() == [129, 64]
    # 0b10100000 = 160 unpacks to voxels 0 and 2 set
    assert unpack_bits(np.array([160], dtype=np.uint8)).tolist() == [1, 0, 1, 0, 0, 0, 0, 0]


def test_pack_matches_shift_definition():
    """Bit k of a byte (counting from the MSB) is voxel 8*i + k, i.e. (byte >> (7-k)) & 1."""
    rng = np.random.default_rng(0)
    packed = rng.integers(0, 256, size=64, dtype=np.uint8)
    expected = np.stack([(packed >> (7 - k)) & 1 for k in range(8)], axis=1).reshape(-1)
    assert np.array_equal(unpack_bits(packed), expected.astype(bool))


def test_pack_round_trip_and_size_check():
    rng = np.random.default_rng(1)
    mask = rng.random(SMALL) < 0.3
    assert np.array_equal(unpack_bits(pack_bits(mask)).reshape(SMALL), mask)
    with pytest.raises(ValueError, match="multiple of 8"):
        pack_bits(np.ones(7, dtype=bool))


# --- file round trips ---------------------------------------------------------------


def test_label_file_round_trip_little_endian(tmp_path, cs):
    rng = np.random.default_rng(2)
    labels = rng.choice(np.array(sorted(cs.learning_map)), size=SMALL).astype(np.uint16)
    labels.flat[0] = 0x0102  # 258, moving-truck: a raw id with both bytes non-zero
    path = tmp_path / "000000.label"
    write_label(path, labels)
    data = path.read_bytes()
    assert len(data) == 2 * labels.size
    assert data[:2] == b"\x02\x01"  # uint16 little endian
    back = read_label(path, SMALL)
    assert back.dtype == np.uint16 and np.array_equal(back, labels)


@pytest.mark.parametrize("ext", ["bin", "invalid", "occluded"])
def test_bit_file_round_trip(tmp_path, ext):
    rng = np.random.default_rng(3)
    mask = rng.random(SMALL) < 0.5
    path = tmp_path / f"000000.{ext}"
    write_bit_voxels(path, mask)
    assert path.stat().st_size == mask.size // 8
    assert np.array_equal(read_bit_voxels(path, SMALL), mask)


def test_readers_name_file_on_wrong_size(tmp_path):
    path = tmp_path / "bad.label"
    np.zeros(10, dtype=np.uint16).tofile(path)
    with pytest.raises(ValueError, match="bad.label"):
        read_label(path, SMALL)
    np.zeros(int(np.prod(SMALL)), dtype=np.uint32).tofile(path)  # right count, wrong dtype
    with pytest.raises(ValueError, match=r"bad\.label: 512 bytes; .* \(256 bytes\)"):
        read_label(path, SMALL)
    path.write_bytes(b"\x00" * (2 * int(np.prod(SMALL)) + 1))  # one stray byte
    with pytest.raises(ValueError, match="bad.label"):
        read_label(path, SMALL)


@pytest.mark.parametrize("value, needle", [
    (70000, r"\[0, 65535\] \(uint16\), got range \[0, 70000\]"),  # a cast would store 4464
    (-1, r"got range \[-1, 0\]"),  # a cast would store 65535
    (7, r"not semantic_kitti raw label ids: \[7\]"),  # fits uint16, but no such label
    (300, r"not semantic_kitti raw label ids: \[300\]"),  # past the learning map's largest key
])
def test_write_label_refuses_ids_a_cast_would_corrupt(tmp_path, value, needle):
    labels = np.zeros(SMALL, dtype=np.int64)
    labels.flat[5] = value
    path = tmp_path / "000000.label"
    with pytest.raises(ValueError, match=needle) as err:
        write_label(path, labels)
    assert "000000.label" in str(err.value)
    assert not path.exists()  # refused before anything is written


def test_write_label_accepts_every_mapped_id_and_whole_floats(tmp_path, cs):
    ids = np.array(sorted(cs.learning_map), dtype=np.float64)  # raw ids, incl. outlier and moving classes
    labels = np.resize(ids, int(np.prod(SMALL))).reshape(SMALL)
    write_label(tmp_path / "a.label", labels)
    assert read_label(tmp_path / "a.label", SMALL).tolist() == labels.astype(np.uint16).tolist()
    with pytest.raises(ValueError, match="whole numbers"):
        write_label(tmp_path / "b.label", labels + 0.5)


def test_read_prediction_remaps_and_refuses_what_has_no_class(tmp_path, cs):
    n = int(np.prod(SMALL))
    raw = np.resize(np.array([0, 10, 252, 40, 81], np.uint16), n)  # 252 moving-car counts as car
    path = tmp_path / "000000.label"
    raw.tofile(path)
    classes = read_prediction(path, cs, SMALL)
    assert classes.shape == SMALL and classes.reshape(-1)[:5].tolist() == [0, 1, 1, 9, 19]
    for bad, needle in ((7, r"not semantic_kitti raw label ids: \[7\]"),
                        (1, r"sends to ignore \(\[1\]\)")):  # outlier: no class to score it as
        raw2 = raw.copy()
        raw2[3] = bad
        raw2.tofile(path)
        with pytest.raises(ValueError, match=needle) as err:
            read_prediction(path, cs, SMALL)
        assert "000000.label" in str(err.value)
    with pytest.raises(FileNotFoundError, match="000001.label"):
        read_prediction(tmp_path / "000001.label", cs, SMALL)
    path = tmp_path / "bad.invalid"
    np.zeros(3, dtype=np.uint8).tofile(path)
    with pytest.raises(ValueError, match="bad.invalid"):
        read_bit_voxels(path, SMALL)


# --- remap --------------------------------------------------------------------------


def test_remap_hand_written_case(cs):
    # (raw id, expected class): rules from the official preprocess
    cases = [
        (0, 0),  # unlabeled stays empty
        (1, 255),  # outlier -> ignore
        (52, 255),  # other-structure -> ignore
        (99, 255),  # other-object -> ignore
        (10, 1), (11, 2), (13, 5), (15, 3), (16, 5), (18, 4), (20, 5), (30, 6), (31, 7),
        (32, 8), (40, 9), (44, 10), (48, 11), (49, 12), (50, 13), (51, 14), (60, 9),
        (70, 15), (71, 16), (72, 17), (80, 18), (81, 19),
        # moving classes fold into their static class
        (252, 1), (253, 7), (254, 6), (255, 8), (256, 5), (257, 5), (258, 4), (259, 5),
        (2, 255),  # id absent from the learning map -> ignore
        (300, 255),  # id past the lookup table -> ignore
    ]
    raw = np.array([r for r, _ in cases], dtype=np.uint16)
    expected = np.array([c for _, c in cases], dtype=np.uint8)
    out = remap_to_target(raw, None, cs)
    assert out.dtype == np.uint8 and out.shape == raw.shape
    assert out.tolist() == expected.tolist()

    invalid = np.zeros(raw.shape, dtype=bool)
    invalid[[0, 4, 26]] = True  # empty, car, moving-car voxels marked invalid
    out = remap_to_target(raw, invalid, cs)
    expected[[0, 4, 26]] = 255
    assert out.tolist() == expected.tolist()


def test_remap_keeps_shape_and_checks_invalid_size(cs):
    raw = np.full(SMALL, 40, dtype=np.uint16)
    assert remap_to_target(raw, np.zeros(SMALL, bool), cs).shape == SMALL
    with pytest.raises(ValueError, match="invalid mask"):
        remap_to_target(raw, np.zeros(5, bool), cs)
    with pytest.raises(ValueError, match="negative"):
        remap_to_target(np.array([-1, 10]), None, cs)


def test_target_to_raw_round_trip(cs):
    classes = np.arange(cs.n_classes, dtype=np.uint8)
    raw = target_to_raw(classes, cs)
    assert raw.dtype == np.uint16
    assert raw[0] == 0 and raw[1] == 10 and raw[19] == 81  # learning_map_inv 0->0, 1->10, 19->81
    assert np.array_equal(remap_to_target(raw, None, cs), classes)
    grid = np.random.default_rng(4).integers(0, cs.n_classes, size=SMALL)
    assert np.array_equal(remap_to_target(target_to_raw(grid, cs), None, cs), grid)
    for bad in (cs.n_classes, 255, -1):
        with pytest.raises(ValueError, match="pred_classes"):
            target_to_raw(np.array([1, bad]), cs)


# --- downsampling -------------------------------------------------------------------


def slow_downsample(target: np.ndarray, ds: int) -> np.ndarray:
    """Literal per-block loop of the official rule, for comparison."""
    sx, sy, sz = (s // ds for s in target.shape)
    out = np.zeros((sx, sy, sz), dtype=np.uint8)
    for x in range(sx):
        for y in range(sy):
            for z in range(sz):
                block = target[x * ds:(x + 1) * ds, y * ds:(y + 1) * ds, z * ds:(z + 1) * ds]
                counts = Counter(int(v) for v in block.flatten().tolist())
                n0, n255 = counts.get(0, 0), counts.get(255, 0)
                if n0 + n255 > 0.95 * ds * ds * ds:
                    out[x, y, z] = 0 if n0 > n255 else 255
                else:
                    labelled = {k: v for k, v in counts.items() if 0 < k < 255}
                    best = max(labelled.values())
                    out[x, y, z] = min(k for k, v in labelled.items() if v == best)
    return out


def random_blocky_target(rng, small, ds, n_classes=20):
    """Blocks with a chosen number of labelled voxels, so both sides of 95% occur."""
    vol = ds**3
    choices = [0, 1, vol // 40, vol // 20, vol // 20 + 1, vol // 10, vol // 2, vol]
    target = np.zeros(tuple(s * ds for s in small), dtype=np.uint8)
    for x, y, z in np.ndindex(*small):
        k = int(rng.choice(choices))
        empty_frac = rng.random()
        block = np.where(rng.random(vol) < empty_frac, 0, 255).astype(np.uint8)
        block[rng.permutation(vol)[:k]] = rng.integers(1, 4 if rng.random() < 0.5 else n_classes, size=k)
        target[x * ds:(x + 1) * ds, y * ds:(y + 1) * ds, z * ds:(z + 1) * ds] = block.reshape(ds, ds, ds)
    return target


@pytest.mark.parametrize("ds,small", [(2, (4, 3, 2)), (4, (4, 4, 3)), (8, (3, 2, 2))])
def test_downsample_matches_slow_reference(ds, small):
    rng = np.random.default_rng(ds)
    seen_empty, seen_ignore, seen_label = 0, 0, 0
    for _ in range(5):
        target = random_blocky_target(rng, small, ds)
        fast = downsample_target(target, ds)
        slow = slow_downsample(target, ds)
        assert fast.dtype == np.uint8 and fast.shape == small
        assert np.array_equal(fast, slow)
        seen_empty += int((fast == 0).sum())
        seen_ignore += int((fast == 255).sum())
        seen_label += int(((fast > 0) & (fast < 255)).sum())
    assert seen_empty and seen_ignore and seen_label  # every branch exercised


def test_downsample_95_percent_boundary_and_ties():
    ds = 4  # 64 voxels, threshold 0.95 * 64 = 60.8: 61 empty -> empty, 60 empty -> labelled
    block = np.zeros(64, dtype=np.uint8)
    block[:3] = 7  # 61 empty
    assert downsample_target(block.reshape(4, 4, 4), ds).item() == 0
    block[:4] = 7  # 60 empty: majority label wins even though 94% is empty
    assert downsample_target(block.reshape(4, 4, 4), ds).item() == 7
    # mostly empty/ignore: 32 zeros vs 32 ignore is a tie -> 255 (0 needs strictly more)
    block = np.array([0] * 32 + [255] * 32, dtype=np.uint8)
    assert downsample_target(block.reshape(4, 4, 4), ds).item() == 255
    block = np.array([0] * 33 + [255] * 31, dtype=np.uint8)
    assert downsample_target(block.reshape(4, 4, 4), ds).item() == 0
    # labelled branch: ignore voxels count toward "empty" but never win; label tie -> smaller id
    block = np.array([255] * 56 + [9] * 4 + [3] * 4, dtype=np.uint8)
    assert downsample_target(block.reshape(4, 4, 4), ds).item() == 3


def test_downsample_full_grid_float_input_and_errors():
    rng = np.random.default_rng(5)
    target = rng.choice(np.array([0, 0, 0, 255, 9, 13], dtype=np.float32), size=SEMANTIC_KITTI_GRID)
    out = downsample_target(target, 8)  # official 1_1 .npy targets are float32
    assert out.shape == (32, 32, 4) and out.dtype == np.uint8
    assert np.array_equal(downsample_target(target, 1), target.astype(np.uint8))
    with pytest.raises(ValueError, match="not divisible"):
        downsample_target(np.zeros((6, 8, 8)), 4)
    with pytest.raises(ValueError, match="whole numbers"):
        downsample_target(np.full((2, 2, 2), 0.5), 2)


# --- whole frames -------------------------------------------------------------------


def test_frame_write_read_round_trip(tmp_path, cs):
    rng = np.random.default_rng(6)
    raw = rng.choice(np.array([0, 1, 10, 40, 252, 70, 99]), size=SMALL).astype(np.uint16)
    invalid = rng.random(SMALL) < 0.2
    occupancy = rng.random(SMALL) < 0.1
    vdir = tmp_path / "voxels"
    paths = write_frame_voxels(vdir, 5, raw, invalid, occupancy=occupancy, grid=SMALL)
    assert sorted(p.name for p in paths.values()) == [
        "000005.bin", "000005.invalid", "000005.label", "000005.occluded"
    ]
    assert np.array_equal(read_label(paths["label"], SMALL), raw)
    assert np.array_equal(read_bit_voxels(paths["invalid"], SMALL), invalid)
    assert np.array_equal(read_bit_voxels(paths["bin"], SMALL), occupancy)
    # occluded not given: an all-zero bit file of the right size
    assert paths["occluded"].stat().st_size == np.prod(SMALL) // 8
    assert not read_bit_voxels(paths["occluded"], SMALL).any()

    target = read_frame_target(vdir, "000005", cs, grid=SMALL)
    assert np.array_equal(target, remap_to_target(raw, invalid, cs))
    assert np.all(target[invalid] == 255)


def test_frame_write_rejects_wrong_sizes(tmp_path):
    vdir = tmp_path / "voxels"
    raw = np.zeros(SMALL, np.uint16)
    with pytest.raises(ValueError, match=r"000001\.invalid"):
        write_frame_voxels(vdir, 1, raw, np.zeros(8, bool), grid=SMALL)
    with pytest.raises(ValueError, match=r"000001\.label"):
        write_frame_voxels(vdir, 1, np.zeros(3, np.uint16), np.zeros(SMALL, bool), grid=SMALL)
    with pytest.raises(ValueError, match=r"000001\.occluded"):
        write_frame_voxels(vdir, 1, raw, np.zeros(SMALL, bool), occluded=np.zeros(1), grid=SMALL)
    unknown = raw.copy()
    unknown[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"000001\.label: 1 voxels hold ids that are not"):
        write_frame_voxels(vdir, 1, unknown, np.zeros(SMALL, bool), grid=SMALL)
    assert not vdir.exists()  # nothing half-written


def test_read_frame_target_errors(tmp_path, cs):
    with pytest.raises(FileNotFoundError, match=r"000002\.label"):
        read_frame_target(tmp_path, 2, cs, grid=SMALL)
    write_frame_voxels(tmp_path, 2, np.zeros(SMALL, np.uint16), np.zeros(SMALL, bool), grid=SMALL)
    with pytest.raises(ValueError, match=r"000002\.label"):
        read_frame_target(tmp_path, 2, cs, grid=(8, 8, 8))  # files hold 128 voxels, not 512


def test_frame_name():
    assert frame_name(7) == "000007" and frame_name(np.int64(125)) == "000125"
    assert frame_name("000040") == "000040"
    with pytest.raises(ValueError):
        frame_name(-1)
