"""occdepth_node with fuse: true on real DDS: a bag written by occdepth-kitti2bag (with its
odometry) replayed into the node gives the map that fusing the same frames at the same
poses with the fusion core directly gives; without odometry the per-frame outputs go on and
the node says why it cannot fuse; an odometry jump resets the map, and so does ~/map/clear."""

from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid, Odometry
from rclpy.qos import QoSProfile
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from helpers.dds import domain_id
from helpers.node_harness import TEST_DEFAULTS, TIMEOUT_S, Harness, image_msg, small_sequence
from occdepth_ros.data.images import read_rgb
from occdepth_ros.fusion import RollingSemanticMap
from occdepth_ros.fusion.class_prior import load_class_prior
from occdepth_ros.geometry.calib import fit_calibration
from occdepth_ros.geometry.poses import grid_poses_from_camera_poses
from occdepth_ros.node.frames import rotation_to_quaternion
from occdepth_ros.node.map_fusion import CLEARED
from occdepth_ros.node.stereo_sync import stamp_to_ns
from occdepth_ros.node.voxel_outputs import OCC_OCCUPIED
from occdepth_ros.resources import default_class_prior_path
from occdepth_ros.tools.kitti2bag import ConvertOptions, convert
from occdepth_ros.tools.node_on_bag import NodeOnBag

FRAMES = 3
RATE = 0.04  # synthetic frames are 0.1 s apart: 2.5 s apart here, slower than a frame's inference
START_NS = 1_760_000_000 * 10**9
NODE = "/occdepth_node"
TOPICS = {"cloud": (PointCloud2, f"{NODE}/voxels"), "grid": (OccupancyGrid, f"{NODE}/occupancy"),
          "map_cloud": (PointCloud2, f"{NODE}/map/voxels"), "map_grid": (OccupancyGrid, f"{NODE}/map/occupancy"),
          "map_markers": (MarkerArray, f"{NODE}/map/voxel_markers"), "diag": (DiagnosticArray, "/diagnostics")}


def cloud_points(msg: PointCloud2) -> np.ndarray:
    """(N,) structured x, y, z (float32), label (uint8) from the message's bytes."""
    offsets = {f.name: f.offset for f in msg.fields}
    dtype = np.dtype({"names": ["x", "y", "z", "label"], "formats": ["<f4", "<f4", "<f4", "u1"],
                      "offsets": [offsets["x"], offsets["y"], offsets["z"], offsets["label"]],
                      "itemsize": msg.point_step})
    return np.frombuffer(bytes(msg.data), dtype=dtype, count=msg.width)


def as_set(centres: np.ndarray, labels: np.ndarray) -> set[tuple[float, float, float, int]]:
    return {(float(x), float(y), float(z), int(c)) for (x, y, z), c in zip(np.asarray(centres, np.float32), labels)}


def cloud_set(msg: PointCloud2) -> set[tuple[float, float, float, int]]:
    """A map cloud's voxels as ``as_set`` gives them."""
    cloud = cloud_points(msg)
    return as_set(np.stack([cloud["x"], cloud["y"], cloud["z"]], 1), cloud["label"])


def frame_probs(node, seq, frame: str):
    """The frame's prediction with class probabilities, from the node's own engine and the
    calibration it fitted (called once the node is idle)."""
    engine = node.processor.engine
    left, right = (read_rgb(p) for p in seq.image_paths(frame))
    calib, _ = fit_calibration(node.processor.file_calibration.calibration, left.shape[:2], False)
    engine.set_calibration(calib)
    logits = engine.backend.forward(engine.prepare([left, right]), engine.lift_tensors)
    return engine.postprocess(logits, False, with_probs=True)


def stamp(msg) -> int:
    return stamp_to_ns(msg.header.stamp.sec, msg.header.stamp.nanosec)


# -- (a) a bag with odometry, end to end -------------------------------------------
@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    root = tmp_path_factory.mktemp("fusion_bag")
    seq = small_sequence(root)
    bag = root / "bag"
    result = convert(ConvertOptions(kitti=root, sequence="00", out=bag, start_time_ns=START_NS), progress=False)
    assert result.odometry.startswith("odometry from poses.txt")
    overrides = {**TEST_DEFAULTS, "calib_file": str(seq.path / "calib.txt"), "fuse": True,
                 "marker_max_rate_hz": 100.0, "marker_max_voxels": 10_000_000,
                 "map_class_prior": str(default_class_prior_path())}  # a prior file named, as for other weights
    with NodeOnBag(bag, overrides, TOPICS, domain_id("node_fusion_bag")) as session:
        session.play(rate=RATE)
        for key in ("cloud", "grid", "map_cloud", "map_grid"):
            assert session.wait_for(key, FRAMES, TIMEOUT_S), f"{key}: {session.count(key)} of {FRAMES}"
        yield seq, session.node, {key: session.messages(key) for key in TOPICS}


def test_the_map_from_a_replayed_bag_is_the_offline_fusion_of_the_same_frames(replay) -> None:
    seq, node, got = replay
    frames = seq.frame_ids()[:FRAMES]
    calib = seq.calib()
    poses = grid_poses_from_camera_poses(seq.poses()[:FRAMES], np.vstack([calib["Tr"], [0, 0, 0, 1]]))
    assert node.fuser.class_prior is not None
    offline = RollingSemanticMap(node.fuser.cfg, node.classes.n_classes,
                                 load_class_prior(default_class_prior_path(), node.classes).probabilities,
                                 node.classes.movable_mask())
    grid = node.processor.engine.cfg.grid
    for frame, T in zip(frames, poses):
        pred = frame_probs(node, seq, frame)
        offline.integrate(pred.probs, pred.seen, T, grid, labels=pred.labels)
    centres, labels = offline.occupied()
    assert len(labels) > 1000  # a scene, not an empty map
    assert cloud_set(got["map_cloud"][-1]) == as_set(centres, labels)
    assert node.fuser.map.class_voxels() == offline.class_voxels() > 0  # the same voxels hold class evidence
    assert node.fuser.counters.frames_fused == FRAMES and node.fuser.counters.frames_unfused == 0
    assert node.fuser.buffer.counters.received == FRAMES and node.fuser.map.resets == 0


def test_map_outputs_are_in_the_odometry_frame_and_the_frame_outputs_unchanged(replay) -> None:
    seq, node, got = replay
    stamps = [START_NS + round(t * 1e9) for t in seq.times()[:FRAMES]]
    for key in ("cloud", "grid"):  # per frame, as without fuse
        assert [stamp(m) for m in got[key]] == stamps and {m.header.frame_id for m in got[key]} == {"velodyne"}
    for key in ("map_cloud", "map_grid"):
        assert [stamp(m) for m in got[key]] == stamps and {m.header.frame_id for m in got[key]} == {"odom"}
    assert got["map_markers"] and {m.header.frame_id for m in got["map_markers"][-1].markers} == {"odom"}
    marker_count = sum(len(m.points) for m in got["map_markers"][-1].markers)
    assert marker_count == got["map_cloud"][stamps.index(stamp(got["map_markers"][-1].markers[0]))].width
    assert sum(node.stats.drops.values()) == 0


def test_map_occupancy_marks_the_columns_of_published_map_voxels(replay) -> None:
    """The map's OccupancyGrid against its own cloud, by a loop: a cell is occupied exactly
    where a voxel of a non-free class has its centre in the z band above the robot."""
    seq, node, got = replay
    msg, cloud = got["map_grid"][-1], cloud_points(got["map_cloud"][-1])
    info = msg.info
    vs = node.fuser.cfg.voxel_size
    assert info.resolution == pytest.approx(vs) and (info.width, info.height) == node.fuser.cfg.dims[:2]
    calib = seq.calib()
    robot = grid_poses_from_camera_poses(seq.poses()[FRAMES - 1:FRAMES], np.vstack([calib["Tr"], [0, 0, 0, 1]]))[0]
    z_lo, z_hi = node.params.occupancy_min_z + robot[2, 3], node.params.occupancy_max_z + robot[2, 3]
    free = {node.classes.names.index(n) for n in node.params.free_classes}
    expected = set()
    for x, y, z, label in zip(cloud["x"], cloud["y"], cloud["z"], cloud["label"]):
        if int(label) not in free and z_lo - 1e-4 <= z <= z_hi + 1e-4:
            expected.add((int(np.floor((x - info.origin.position.x) / vs)),
                          int(np.floor((y - info.origin.position.y) / vs))))
    cells = np.asarray(msg.data, dtype=np.int8).reshape(info.height, info.width)
    occupied = {(int(c), int(r)) for r, c in zip(*np.nonzero(cells == OCC_OCCUPIED))}
    assert expected and occupied == expected


# -- (b), (c): fed directly, odometry missing or jumping ------------------------------------
@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    seq = small_sequence(tmp_path_factory.mktemp("fusion_fed"))
    overrides = {"calib_file": str(seq.path / "calib.txt"), "fuse": True, "odom_jump_m": 1.0}
    harness = Harness(overrides, domain_id("node_fusion"), TOPICS)
    harness.pub_odom = harness.io.create_publisher(Odometry, "/odom", QoSProfile(depth=10))
    time.sleep(1.0)  # discovery of the odometry publisher
    yield seq, harness
    harness.close()


def send_frame(harness, seq, frame: str, stamp_ns: int) -> None:
    left, right = (read_rgb(p) for p in seq.image_paths(frame))
    harness.send(image_msg(left, stamp_ns, "cam2"), image_msg(right, stamp_ns, "cam3"))


def odometry(stamp_ns: int, T: np.ndarray) -> Odometry:
    msg = Odometry()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.header.frame_id, msg.child_frame_id = "odom", "velodyne"
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    p.x, p.y, p.z = (float(v) for v in T[:3, 3])
    q.x, q.y, q.z, q.w = (float(v) for v in rotation_to_quaternion(T[:3, :3]))
    return msg


def translation(x: float) -> np.ndarray:
    T = np.eye(4)
    T[0, 3] = x
    return T


def fuse_frame(h, seq, frame: str, stamp_ns: int, T: np.ndarray) -> None:
    """The pose first (else the node waits odom_wait_s for it), then the pair; returns once
    the map it makes is published."""
    n = h.count("map_cloud")
    h.pub_odom.publish(odometry(stamp_ns, T))
    time.sleep(0.2)
    send_frame(h, seq, frame, stamp_ns)
    h.wait_for("map_cloud", n + 1)


def only_frame_map(h, seq, frame: str, T: np.ndarray) -> set:
    """The map of one frame alone, fused offline with the node's settings."""
    fuser = h.node.fuser
    m = RollingSemanticMap(fuser.cfg, h.node.classes.n_classes, fuser.class_prior, h.node.classes.movable_mask())
    pred = frame_probs(h.node, seq, frame)
    m.integrate(pred.probs, pred.seen, T, h.node.processor.engine.cfg.grid, labels=pred.labels)
    return as_set(*m.occupied())


def test_without_odometry_the_frame_outputs_go_on_and_the_node_says_why(fed, capfd) -> None:
    seq, h = fed
    base = 1_800_000_000 * 10**9
    for i, frame in enumerate(seq.frame_ids()[:2]):
        send_frame(h, seq, frame, base + i * 10**9)
        h.wait_for("cloud", i + 1)
    assert h.count("map_cloud") == 0 and h.count("map_grid") == 0
    assert h.node.fuser.counters.frames_unfused == 2 and h.node.fuser.counters.frames_fused == 0
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        diag = [s for m in h.messages("diag") for s in m.status if "not fused" in s.message]
        if diag:
            break
        time.sleep(0.1)
    assert diag and diag[-1].level[0] >= 1 and "odometry topic /odom" in diag[-1].message  # at least WARN
    assert "no odometry received yet" in diag[-1].message
    values = {kv.key: kv.value for kv in diag[-1].values}
    assert int(values["fuse_frames_unfused"]) >= 1 and values["odom_received"] == "0"
    assert values["fuse_frames_fused"] == "0" and values["last_odom_missing"] == "no odometry received yet"
    # an untrained preset is not the shipped model: no class prior, and the node says so
    assert values["fuse_class_prior"].startswith("class prior: none (the model is not the shipped default")
    assert h.node.fuser.class_prior is None
    # nothing fused: the map holds its window's arrays and no class evidence
    assert float(values["fuse_map_mib"]) == pytest.approx(h.node.fuser.map.memory_bytes() / 2**20, abs=0.05)
    assert values["fuse_class_voxels"] == "0"
    err = capfd.readouterr().err
    assert "no pose for a frame (no odometry received yet; odometry topic /odom)" in err


def test_an_odometry_jump_resets_the_map(fed) -> None:
    seq, h = fed
    base = 1_900_000_000 * 10**9
    frames = seq.frame_ids()[:3]
    poses = [translation(0.0), translation(0.4), translation(3.0)]  # 2.6 m > odom_jump_m 1 m
    for i, (frame, T) in enumerate(zip(frames, poses)):
        fuse_frame(h, seq, frame, base + i * 10**8, T)
    fuser = h.node.fuser
    assert fuser.buffer.counters.jumps == 1 and fuser.map.resets == 1
    # only the frame after the jump
    assert cloud_set(h.messages("map_cloud")[-1]) == only_frame_map(h, seq, frames[2], poses[2])


def test_clear_service_empties_the_map_before_the_next_frame(fed, capfd) -> None:
    seq, h = fed
    base = 2_000_000_000 * 10**9
    frames = seq.frame_ids()[:3]
    poses = [translation(0.0), translation(0.4), translation(0.8)]  # no jump: only the request resets
    fuser = h.node.fuser
    clears = fuser.counters.clears

    def fuse(i: int) -> None:
        fuse_frame(h, seq, frames[i], base + i * 10**8, poses[i])

    # a restart of the pose buffer (these stamps follow the previous test's) would reset too
    fuse(0)
    resets = fuser.map.resets
    fuse(1)
    assert fuser.map.resets == resets
    assert cloud_set(h.messages("map_cloud")[-1]) != only_frame_map(h, seq, frames[1], poses[1])
    client = h.io.create_client(Trigger, f"{NODE}/map/clear")
    assert client.wait_for_service(timeout_sec=TIMEOUT_S)
    future = client.call_async(Trigger.Request())
    deadline = time.monotonic() + TIMEOUT_S
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    response = future.result()
    assert response.success and "clears before the next fused frame" in response.message
    assert fuser.map.resets == resets  # nothing changes until a frame is fused
    fuse(2)
    assert fuser.map.resets == resets + 1 and fuser.counters.clears == clears + 1
    # frames 0 and 1 are gone
    assert cloud_set(h.messages("map_cloud")[-1]) == only_frame_map(h, seq, frames[2], poses[2])
    err = capfd.readouterr().err
    assert "fuse: map cleared on request" in err and "map reset (" + CLEARED not in err  # info, not a warning
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        values = [{kv.key: kv.value for kv in s.values} for m in h.messages("diag") for s in m.status]
        values = [v for v in values if "fuse_map_clears" in v]
        if values and values[-1]["fuse_map_clears"] == str(clears + 1):
            break
        time.sleep(0.1)
    assert values[-1]["fuse_map_clears"] == str(clears + 1)
