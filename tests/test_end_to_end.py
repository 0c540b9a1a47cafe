"""End to end on real DDS: synthetic KITTI sequence -> rosbag2 -> player -> occdepth_node
(shipped default model) -> a subscriber that checks every output, including that the
occupied voxels lie where the scene's surfaces are."""

from __future__ import annotations


import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import Image, PointCloud2
from visualization_msgs.msg import Marker, MarkerArray

from occdepth_ros.classes import load_class_set
from occdepth_ros.data.kitti_odometry import KittiSequence
from occdepth_ros.data.semantic_kitti import downsample_target, read_frame_target
from occdepth_ros.data.synth.cli import main as synth_main
from occdepth_ros.node.messages import label_grid_array
from occdepth_ros.node.stereo_sync import stamp_to_ns
from occdepth_ros.resources import default_model_path
from occdepth_ros.tools.kitti2bag import ConvertOptions, convert
from occdepth_ros.tools.node_on_bag import NodeOnBag
from helpers.dds import domain_id

DOMAIN_ID = domain_id("end_to_end")
FRAMES = 3
RATE = 0.02  # one pair per 5 s: slower than inference even on loaded CI cores (latest wins), so every frame is processed
START_NS = 1_750_000_000 * 10**9


TOPICS = {"cloud": (PointCloud2, "/occdepth_node/voxels"),
          "grid": (OccupancyGrid, "/occdepth_node/occupancy"),
          "labels": (Image, "/occdepth_node/label_grid"),
          "markers": (MarkerArray, "/occdepth_node/voxel_markers"),
          "diag": (DiagnosticArray, "/diagnostics")}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not default_model_path().is_file():
        pytest.fail(f"the shipped default model {default_model_path()} is missing")
    root = tmp_path_factory.mktemp("e2e")
    # a layout the model never saw in training (seed 1 made the training sequences)
    assert synth_main(["--out", str(root), "--sequences", "42", "--frames", str(FRAMES), "--seed", "1234",
                       "--voxel-every", "1"]) == 0
    seq = KittiSequence(root, "42")
    bag = root / "bag"
    convert(ConvertOptions(kitti=root, sequence="42", out=bag, start_time_ns=START_NS), progress=False)
    overrides = {"calib_file": str(seq.path / "calib.txt"), "frame_id": "velodyne", "marker_max_rate_hz": 100.0}
    with NodeOnBag(bag, overrides, TOPICS, DOMAIN_ID) as session:
        session.play(rate=RATE)
        for key in ("labels", "cloud", "grid"):  # each topic is its own stream: wait for all three
            session.wait_for(key, FRAMES, timeout_s=60)
        got = {key: session.messages(key) for key in TOPICS}
        yield seq, session.node, got


def test_every_frame_gives_every_output(run) -> None:
    seq, node, got = run
    stamps = [START_NS + round(t * 1e9) for t in seq.times()[:FRAMES]]
    assert [stamp_to_ns(m.header.stamp.sec, m.header.stamp.nanosec) for m in got["cloud"]] == stamps
    assert [stamp_to_ns(m.header.stamp.sec, m.header.stamp.nanosec) for m in got["grid"]] == stamps
    assert len(got["labels"]) == FRAMES
    assert [stamp_to_ns(m.header.stamp.sec, m.header.stamp.nanosec) for m in got["labels"]] == stamps
    assert all(m.header.frame_id == "velodyne" for m in got["cloud"] + got["grid"] + got["labels"])
    cfg = node.processor.engine.cfg
    X, Y, Z = cfg.grid.dims
    assert all(len(m.data) == X * Y * Z for m in got["labels"])
    assert all((g.info.width, g.info.height) == (X, Y) for g in got["grid"])
    assert got["markers"] and got["markers"][0].markers[0].action == Marker.DELETEALL
    assert {m.type for m in got["markers"][0].markers[1:]} == {Marker.CUBE_LIST}
    assert sum(node.stats.drops.values()) == 0
    assert got["diag"]


def test_occupied_voxels_lie_on_the_scene_surfaces(run) -> None:
    """The node's grids against the generator's ground truth at the model's resolution."""
    seq, node, got = run
    cfg = node.processor.engine.cfg
    classes = load_class_set()
    factor = int(round(cfg.grid.voxel_size / 0.2))
    precision, recall = [], []
    for frame, msg in zip(seq.frame_ids()[:FRAMES], got["labels"]):
        pred = label_grid_array(msg)
        target = downsample_target(read_frame_target(seq.voxel_dir, frame, classes), factor)
        known = target != classes.ignore_index
        occ_pred = (pred != classes.empty_index) & known
        occ_true = (target != classes.empty_index) & known
        precision.append((occ_pred & occ_true).sum() / max(occ_pred.sum(), 1))
        recall.append((occ_pred & occ_true).sum() / max(occ_true.sum(), 1))
    assert min(precision) > PRECISION_FLOOR, precision
    assert min(recall) > RECALL_FLOOR, recall


# The shipped model (6 epochs) measured precision 0.92 / 0.88 / 0.90 and recall 0.56 / 0.56 /
# 0.56 on these three frames (model resolution, a layout unseen in training; the 4-epoch
# model before it: 0.81 / 0.72 / 0.71 and 0.56 / 0.57 / 0.56). An untrained model
# that marks everything occupied has precision ~0.14 and fails.
PRECISION_FLOOR = 0.6
RECALL_FLOOR = 0.45
