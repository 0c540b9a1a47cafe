"""occdepth-synth: determinism, KITTI/SemanticKITTI layout, and that images, depth and voxels agree.

A small dataset (half-size images, 3 frames, labels on frames 0 and 2) is written
once per module through the console-script entry point and read back with the
project's own readers.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from occdepth_ros.classes import load_class_set
from occdepth_ros.data.kitti_odometry import KittiSequence, read_depth_png
from occdepth_ros.data.semantic_kitti import (
    SEMANTIC_KITTI_GRID,
    downsample_target,
    read_bit_voxels,
    read_frame_target,
    read_label,
)
from occdepth_ros.data.synth import SequenceGenerator, SynthConfig
from occdepth_ros.data.synth.cli import main
from occdepth_ros.data.synth.voxelize import fill_from_above
from occdepth_ros.geometry.calib import kitti_stereo_rig

SIZE = (185, 613)  # (H, W): half the KITTI size keeps the tests fast
FRAMES = 3
VOXEL_EVERY = 2
SEQ = "00"
SEED = 7
ARGS = ["--sequences", SEQ, "--frames", str(FRAMES), "--seed", str(SEED),
        "--voxel-every", str(VOXEL_EVERY), "--image-size", str(SIZE[0]), str(SIZE[1])]
GRID_ORIGIN = np.array([0.0, -25.6, -2.0])
VOXEL = 0.2
STEP_BEHIND_M = 0.03  # how far past the depth surface the occupancy probe goes
TRAFFIC_SPEED = 15.0  # m/s: 3 m between the labelled frames 0 and 2


def _write(out: Path, extra: list[str] | None = None) -> Path:
    assert main(["--out", str(out), *ARGS, *(extra or [])]) == 0
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("synth_a"))


@pytest.fixture(scope="module")
def seq(dataset) -> KittiSequence:
    return KittiSequence(dataset, SEQ)


@pytest.fixture(scope="module")
def generator() -> SequenceGenerator:
    base = SynthConfig()
    cfg = replace(base, seed=SEED, frames=FRAMES, voxel_every=VOXEL_EVERY, rig=base.rig.scaled(*SIZE))
    return SequenceGenerator(cfg, SEQ)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _grid_points(seq: KittiSequence, frame: int, step: float) -> tuple[np.ndarray, int]:
    """Left depth pixels back-projected into the grid frame, moved ``step`` m along their ray."""
    rig = kitti_stereo_rig(seq.calib(), SIZE)
    cam = rig.cameras[0]
    depth = seq.read_depth(frame)
    v, u = np.nonzero(depth > 0)
    d = depth[v, u].astype(np.float64)
    ray = np.stack([(u - cam.K[0, 2]) / cam.K[0, 0], (v - cam.K[1, 2]) / cam.K[1, 1], np.ones_like(d)], axis=1)
    grid_from_cam = np.linalg.inv(cam.T_grid_to_cam)
    pts_cam = ray * (d + step / np.linalg.norm(ray, axis=1))[:, None]
    pts = pts_cam @ grid_from_cam[:3, :3].T + grid_from_cam[:3, 3]
    return pts, len(d)


def _voxel_index(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.floor((pts - GRID_ORIGIN) / VOXEL).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(SEMANTIC_KITTI_GRID)), axis=1)
    return idx[inside], inside


# --- determinism ---------------------------------------------------------------------------


def test_same_arguments_give_identical_bytes(dataset, tmp_path):
    again = _files(_write(tmp_path / "b"))
    first = _files(dataset)
    assert first.keys() == again.keys()
    assert all(first[k] == again[k] for k in first), [k for k in first if first[k] != again[k]]


def test_other_seed_gives_other_world(dataset, tmp_path):
    other = _write(tmp_path / "c", ["--seed", str(SEED + 1), "--frames", "1"])
    name = f"sequences/{SEQ}/image_2/000000.png"
    assert (other / name).read_bytes() != (dataset / name).read_bytes()


# --- layout and readers ---------------------------------------------------------------------


def test_files_and_formats(seq):
    assert seq.frame_ids() == [f"{i:06d}" for i in range(FRAMES)]
    for i in range(FRAMES):
        for path in seq.image_paths(i):
            with Image.open(path) as img:
                assert img.mode == "RGB" and img.size == (SIZE[1], SIZE[0])
        depth = read_depth_png(seq.depth_path(i))
        assert depth.shape == SIZE and depth.dtype == np.float32
        assert 0.3 < (depth > 0).mean() < 1.0  # sky and far range stay 0
    labelled = [f"{i:06d}" for i in range(0, FRAMES, VOXEL_EVERY)]
    assert seq.labelled_frames() == labelled
    n = int(np.prod(SEMANTIC_KITTI_GRID))
    for frame in labelled:
        assert seq.voxel_path(frame, "label").stat().st_size == 2 * n
        for ext in ("bin", "invalid", "occluded"):
            assert seq.voxel_path(frame, ext).stat().st_size == n // 8
        raw = read_label(seq.voxel_path(frame, "label"))
        classes = load_class_set()
        assert set(np.unique(raw)) <= set(classes.learning_map_inv.values())
        target = read_frame_target(seq.voxel_dir, frame)
        assert set(np.unique(target)) <= set(range(classes.n_classes)) | {classes.ignore_index}


def test_calibration_is_kitti_like(seq):
    calib = seq.calib()
    assert set(calib) == {"P0", "P1", "P2", "P3", "Tr"}
    rig = kitti_stereo_rig(calib, SIZE)
    assert rig.baseline() == pytest.approx(0.537, abs=1e-6)
    fx = calib["P2"][0, 0]
    assert fx == pytest.approx(707.0912 * SIZE[1] / 1226)
    assert 0 < calib["P2"][0, 3] < 0.1 * fx  # image_2 a few cm left of cam0
    assert calib["P3"][0, 3] - calib["P2"][0, 3] == pytest.approx(-fx * 0.537)
    # velodyne x (forward) is the camera's z axis
    assert rig.cameras[0].T_grid_to_cam[2, 0] == pytest.approx(1.0)


def test_times_and_poses_move_forward(seq):
    times = seq.times()
    assert np.allclose(np.diff(times), 0.1)
    poses = seq.poses()
    assert poses.shape == (FRAMES, 4, 4)
    assert np.allclose(poses[0], np.eye(4), atol=1e-9)
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    assert np.all((steps > 0.8) & (steps < 1.2))
    assert np.all(np.diff(poses[:, 2, 3]) > 0.8)  # cam0 z = driving direction


# --- images, depth and voxels agree -----------------------------------------------------------


@pytest.mark.parametrize("frame", range(0, FRAMES, VOXEL_EVERY))
def test_depth_surfaces_are_occupied_voxels(seq, frame):
    """A few cm behind every depth surface lies an occupied GT voxel; 1 m in front mostly not."""
    labels = read_label(seq.voxel_path(frame, "label"))
    pts, n_valid = _grid_points(seq, frame, STEP_BEHIND_M)
    idx, inside = _voxel_index(pts)
    assert inside.sum() > 0.3 * n_valid  # the check covers a good part of the image
    occupied = labels[idx[:, 0], idx[:, 1], idx[:, 2]] > 0
    # Only probes that leave a thin solid (5 cm fences, sign plates) at a grazing
    # silhouette can miss; measured: 100% at 3 cm on this data.
    assert occupied.mean() > 0.99, occupied.mean()
    pts_front, _ = _grid_points(seq, frame, -1.0)
    idx_front, _ = _voxel_index(pts_front)
    assert (labels[idx_front[:, 0], idx_front[:, 1], idx_front[:, 2]] > 0).mean() < 0.5


def _pixel_voxel_agreement(gen: SequenceGenerator, rendered, labels: np.ndarray, cls: int | None = None) -> float:
    """Fraction of the left image's pixels (of class ``cls``, or all) whose surface point lies
    in a voxel of the pixel's class."""
    o, dirs = gen.projection.rays[0]
    d = rendered.depth[0].reshape(-1)
    ok = d > 0
    unit = dirs[ok] / np.linalg.norm(dirs[ok], axis=1, keepdims=True)
    idx, inside = _voxel_index(o + d[ok, None] * dirs[ok] + STEP_BEHIND_M * unit)
    pixel_cls = rendered.classes[0].reshape(-1)[ok][inside]
    agree = labels[idx[:, 0], idx[:, 1], idx[:, 2]] == pixel_cls
    return float(agree.mean() if cls is None else agree[pixel_cls == cls].mean())


def test_rendered_classes_match_voxel_classes(generator):
    rendered, vox = generator.frame(0)
    assert _pixel_voxel_agreement(generator, rendered, vox.labels) > 0.95


@pytest.fixture(scope="module")
def driving(generator) -> SequenceGenerator:
    """The generator's world with its lane traffic driving."""
    cfg = generator.cfg
    return SequenceGenerator(replace(cfg, objects=replace(cfg.objects, traffic_speed_mps=TRAFFIC_SPEED)), SEQ)


def test_lane_traffic_drives_along_its_lane_and_the_rest_stands(generator, driving):
    still, moving = generator.scene, driving.scene
    assert still.at(2) is still and not still.velocity.any()
    assert moving.primitives == still.primitives  # the same world at frame 0: the same random draws
    moves = np.any(moving.velocity != 0, axis=1)
    assert moves.any() and not moves.all()
    assert {moving.primitives[k].cls for k in np.flatnonzero(moves)} <= {"car", "truck"}
    later = moving.at(2)
    dt = 2 * moving.frame_period_s
    for k, prim in enumerate(still.primitives):
        shift = later.bounds[k] - still.bounds[k]
        if moves[k]:  # the right-hand lanes (y < 0) drive towards +x, the oncoming ones towards -x
            direction = -np.sign(still.bounds[k, :, 1].mean())
            np.testing.assert_allclose(shift[:, 0], direction * TRAFFIC_SPEED * dt, atol=1e-9)
        else:
            np.testing.assert_array_equal(shift[:, 0], 0.0)
            assert later.primitives[k] == prim
        np.testing.assert_array_equal(shift[:, 1:], 0.0)


def test_driving_traffic_is_where_images_and_labels_of_a_later_frame_both_show_it(generator, driving):
    """At a later labelled frame the cars' pixels lie in car voxels of that frame's labels;
    the labels of the standing world (cars where they were) miss many of them."""
    car = load_class_set().names.index("car")
    rendered, vox = driving.frame(VOXEL_EVERY)
    _, still = generator.frame(VOXEL_EVERY)
    assert (rendered.classes[0] == car).sum() > 500
    moved = _pixel_voxel_agreement(driving, rendered, vox.labels, car)
    stood = _pixel_voxel_agreement(driving, rendered, still.labels, car)
    assert moved > 0.95 and stood < 0.8, (moved, stood)


def test_stereo_pair_is_consistent(generator):
    """Right image at u - fx*B/d shows the left colour; a 3 px wrong disparity does not."""
    rendered = generator.renderer.render(1)
    left, right = (im.astype(np.float32) for im in rendered.images)
    d_left, d_right = rendered.depth
    cam = generator.rig.cameras[0]
    fb = cam.K[0, 0] * generator.rig.baseline()
    h, w = d_left.shape
    v, u = np.mgrid[0:h, 0:w]
    valid = d_left > 0

    def errors(offset: float) -> np.ndarray:
        ur = u - fb / np.where(valid, d_left, 1.0) + offset
        ok = valid & (ur >= 0) & (ur <= w - 1)
        u0 = np.clip(np.floor(ur).astype(np.int64), 0, w - 2)
        a = (ur - u0)[..., None]
        sample = right[v, u0] * (1 - a) + right[v, u0 + 1] * a
        d_match = np.where(a[..., 0] < 0.5, d_right[v, u0], d_right[v, u0 + 1])
        seen = ok & (np.abs(d_match - d_left) < 0.02 * d_left + 0.05)  # same surface: not occluded
        return np.abs(sample - left).mean(axis=-1)[seen]

    good, shifted = errors(0.0), errors(3.0)
    assert good.size > 0.5 * valid.sum()
    assert (good < 10).mean() > 0.95
    assert good.mean() < 0.4 * shifted.mean()  # measured ~0.22: the texture carries disparity


def test_invalid_mask_is_the_camera_frustum(seq, generator):
    calib = seq.calib()
    rig = kitti_stereo_rig(calib, SIZE)
    centres = [GRID_ORIGIN[a] + (np.arange(SEMANTIC_KITTI_GRID[a]) + 0.5) * VOXEL for a in range(3)]
    pts = np.stack(np.meshgrid(*centres, indexing="ij"), axis=-1).reshape(-1, 3)
    seen = np.zeros(len(pts), dtype=bool)
    for cam in rig.cameras:
        pc = pts @ cam.T_grid_to_cam[:3, :3].T + cam.T_grid_to_cam[:3, 3]
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uu = np.rint(cam.K[0, 0] * pc[:, 0] / z + cam.K[0, 2])
            vv = np.rint(cam.K[1, 1] * pc[:, 1] / z + cam.K[1, 2])
        seen |= (z > 0) & (uu >= 0) & (uu < SIZE[1]) & (vv >= 0) & (vv < SIZE[0])
    seen = seen.reshape(SEMANTIC_KITTI_GRID)
    invalid = read_bit_voxels(seq.voxel_path(0, "invalid"))
    labels = read_label(seq.voxel_path(0, "label"))
    assert invalid[~seen].all()
    assert 0.2 < seen.mean() < 0.9
    # Inside the frustum, only voxels buried in a solid are invalid: labelled, with
    # labelled neighbours on all sides; every empty voxel there is valid.
    assert not invalid[seen & (labels == 0)].any()
    buried = np.argwhere(seen & invalid)
    assert len(buried) > 0
    inner = buried[np.all((buried > 0) & (buried < np.asarray(SEMANTIC_KITTI_GRID) - 1), axis=1)]
    for axis in range(3):
        for delta in (-1, 1):
            nb = inner.copy()
            nb[:, axis] += delta
            assert (labels[nb[:, 0], nb[:, 1], nb[:, 2]] > 0).all()
    # the same computation in the generator itself
    assert np.array_equal(generator.frame(0)[1].invalid, invalid)


def test_whole_volume_keeps_the_sides_outside_the_view(dataset, seq, tmp_path):
    whole_root = _write(tmp_path / "whole", ["--whole-volume"])
    whole = KittiSequence(whole_root, SEQ)
    same = ("label", "bin", "occluded")
    for ext in same:
        assert whole.voxel_path(0, ext).read_bytes() == seq.voxel_path(0, ext).read_bytes(), ext
    name = f"sequences/{SEQ}/image_2/000000.png"
    assert (whole_root / name).read_bytes() == (dataset / name).read_bytes()
    view = read_bit_voxels(seq.voxel_path(0, "invalid"))
    everywhere = read_bit_voxels(whole.voxel_path(0, "invalid"))
    labels = read_label(seq.voxel_path(0, "label"))
    out_of_view = view & ~everywhere
    # Only voxels buried in a solid stay invalid, in and out of view; inside the view the two agree.
    assert not (everywhere & ~view).any()
    assert out_of_view.mean() > 0.1
    assert (labels[out_of_view] > 0).sum() > 1000  # ground and objects beside the car are scored
    buried = np.argwhere(everywhere)
    inner = buried[np.all((buried > 0) & (buried < np.asarray(SEMANTIC_KITTI_GRID) - 1), axis=1)]
    assert len(inner) > 0
    for axis in range(3):
        for delta in (-1, 1):
            nb = inner.copy()
            nb[:, axis] += delta
            assert (labels[nb[:, 0], nb[:, 1], nb[:, 2]] > 0).all()


def _ground_ids() -> list[int]:
    """Raw label ids of road, parking, sidewalk and terrain (road first)."""
    classes = load_class_set()
    raw_ids = classes.inverse_lut()
    return [raw_ids[classes.names.index(n)] for n in ("road", "parking", "sidewalk", "terrain")]


def test_fill_from_above_follows_empty_voxels_below_a_surface():
    labels = np.array([[[0, 0, 9, 0, 0, 7, 0]]], dtype=np.uint8)
    below = np.array([[[1, 1, 0, 1, 1, 0, 0]]], dtype=bool)
    # k=4,3 take 7 from k=5; k=1,0 take 9 from k=2; k=6 (not below) stays empty
    assert fill_from_above(labels, below)[0, 0].tolist() == [9, 9, 9, 7, 7, 7, 0]
    gap = np.array([[[0, 0, 0, 5]]], dtype=np.uint8)
    # an empty voxel that is not below a surface breaks the chain
    assert fill_from_above(gap, np.array([[[1, 1, 0, 0]]], dtype=bool))[0, 0].tolist() == [0, 0, 0, 5]


@pytest.fixture(scope="module")
def thin(tmp_path_factory) -> KittiSequence:
    """The same world written with --thin-ground."""
    return KittiSequence(_write(tmp_path_factory.mktemp("synth_thin"), ["--thin-ground"]), SEQ)


def test_ground_reaches_the_grid_floor(seq, thin):
    """The voxels under the ground surface take the label above them, as SemanticKITTI's
    voxelizer labels occluded voxels; --thin-ground leaves only the surface layer."""
    for ext in ("bin", "invalid", "occluded"):
        assert thin.voxel_path(0, ext).read_bytes() == seq.voxel_path(0, ext).read_bytes(), ext
    ground = _ground_ids()
    for frame in (0, 2):
        full = read_label(seq.voxel_path(frame, "label"))
        surface = read_label(thin.voxel_path(frame, "label"))
        assert np.array_equal(full[surface > 0], surface[surface > 0])  # labelled voxels keep their class
        # thin: one ground layer per column
        layers = np.isin(surface, ground).sum(axis=2)
        assert (layers[layers > 0] == 1).mean() > 0.95
        # slow reference: below the lowest labelled voxel of each ground column, every voxel
        # carries that voxel's label down to the floor
        expected = surface.copy()
        columns = np.argwhere(np.isin(surface, ground).any(axis=2))
        for i, j in columns[:: max(1, len(columns) // 2000)]:
            k_low = int(np.flatnonzero(surface[i, j] > 0)[0])
            expected[i, j, :k_low] = surface[i, j, k_low]
            assert np.array_equal(full[i, j], expected[i, j]), (i, j)
        added = (surface == 0) & (full > 0)
        assert added.sum() > 0.5 * len(columns)  # the floor under most of the ground
        assert not added[:, :, 5:].any()  # the ground lies within the lowest metre of the grid
    road = ground[0]
    ahead = full[25, 128]  # x = 5 m straight ahead of the car: road from the floor to the surface
    top = int(np.flatnonzero(ahead == road)[-1])
    assert (ahead[: top + 1] == road).all() and (ahead[top + 1:] == 0).all() and top >= 1


def test_filled_ground_leaves_the_output_targets_unchanged(seq, thin):
    """The official 2x downsampling gives the same 0.4 m training targets either way, but
    for the rare block where the filled layer turns a majority into a tie (measured: 2 of
    262 144 blocks in each frame here)."""
    classes = load_class_set()
    for frame in (0, 2):
        full = read_frame_target(seq.voxel_dir, f"{frame:06d}", classes)
        surface = read_frame_target(thin.voxel_dir, f"{frame:06d}", classes)
        assert not np.array_equal(full, surface)
        differ = downsample_target(full, 2) != downsample_target(surface, 2)
        assert differ.sum() <= 1e-4 * differ.size


def test_bin_and_occluded(seq):
    labels = read_label(seq.voxel_path(0, "label"))
    occupancy = read_bit_voxels(seq.voxel_path(0, "bin"))
    occluded = read_bit_voxels(seq.voxel_path(0, "occluded"))
    invalid = read_bit_voxels(seq.voxel_path(0, "invalid"))
    assert occupancy.sum() > 1000
    assert (labels[occupancy] > 0).mean() > 0.99  # what the cameras see is occupied in GT
    assert occluded.sum() > 1000
    assert not (occluded & invalid).any() and not (occluded & occupancy).any()


def test_cli_rejects_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--frames", "0"])
    with pytest.raises(SystemExit, match="--traffic-speed"):
        main(["--out", str(tmp_path), "--traffic-speed", "-1"])
