"""occdepth-kitti2bag: a tiny synthetic KITTI sequence -> mcap and sqlite3 bags, read back
with rosbags (no ROS middleware involved)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")
from rosbags.interfaces import QosDurability, QosHistory, QosReliability  # noqa: E402
from rosbags.rosbag2 import Reader  # noqa: E402

from occdepth_ros.data.images import read_rgb  # noqa: E402
from occdepth_ros.data.kitti_odometry import KittiSequence  # noqa: E402
from occdepth_ros.data.synth import cli as synth_cli  # noqa: E402
from occdepth_ros.geometry.calib import calibration_from_camera_info, kitti_calibration  # noqa: E402
from occdepth_ros.tools import kitti2bag  # noqa: E402

FRAMES, HEIGHT, WIDTH = 3, 96, 320
START_NS = 1_700_000_000 * 1_000_000_000
TOPICS = {
    "/left/image_rect": "sensor_msgs/msg/Image",
    "/right/image_rect": "sensor_msgs/msg/Image",
    "/left/camera_info": "sensor_msgs/msg/CameraInfo",
    "/right/camera_info": "sensor_msgs/msg/CameraInfo",
    "/odom": "nav_msgs/msg/Odometry",
}
IMAGE_TOPICS = {t: m for t, m in TOPICS.items() if t != "/odom"}
TS = kitti2bag.typestore()


@pytest.fixture(scope="module")
def kitti_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kitti")
    argv = ["--out", str(root), "--sequences", "00", "--frames", str(FRAMES),
            "--image-size", str(HEIGHT), str(WIDTH), "--voxel-every", "0"]
    assert synth_cli.main(argv) == 0
    return root


@pytest.fixture(scope="module")
def seq(kitti_root) -> KittiSequence:
    return KittiSequence(kitti_root, "00")


def read_bag(path: Path) -> tuple[dict[str, object], dict[str, list[tuple[int, object]]]]:
    """(connections by topic, [(receive time, decoded message)] by topic)."""
    with Reader(path) as reader:
        conns = {c.topic: c for c in reader.connections}
        msgs: dict[str, list[tuple[int, object]]] = {t: [] for t in conns}
        for conn, t_ns, raw in reader.messages():
            msgs[conn.topic].append((t_ns, TS.deserialize_cdr(raw, conn.msgtype)))
    return conns, msgs


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def bag(request, kitti_root, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"bag_{request.param}") / "bag"
    rc = kitti2bag.main(["--kitti", str(kitti_root), "--sequence", "00", "--out", str(out),
                         "--storage", request.param, "--quiet"])
    assert rc == 0
    return request.param, out, *read_bag(out)


def test_storage_format_and_topics(bag):
    storage, out, conns, msgs = bag
    suffix = ".mcap" if storage == "mcap" else ".db3"
    assert (out / "metadata.yaml").is_file() and (out / f"{out.name}{suffix}").is_file()
    assert {t: c.msgtype for t, c in conns.items()} == TOPICS
    assert all(c.msgcount == FRAMES and len(msgs[t]) == FRAMES for t, c in conns.items())


def test_offered_qos_is_reliable_volatile(bag):
    _, _, conns, _ = bag
    for conn in conns.values():
        (qos,) = conn.ext.offered_qos_profiles
        assert qos.reliability == QosReliability.RELIABLE
        assert qos.durability == QosDurability.VOLATILE
        assert qos.history == QosHistory.KEEP_LAST and qos.depth == kitti2bag.QOS_DEPTH


def test_stamps_follow_times_txt_and_pair_exactly(bag, seq):
    _, _, _, msgs = bag
    expected = [START_NS + round(t * 1e9) for t in seq.times()[:FRAMES]]
    for topic, items in msgs.items():
        assert [stamp_ns(m) for _, m in items] == expected, topic
        assert [t for t, _ in items] == expected, f"{topic}: receive time != header stamp"
    left = [m.header.frame_id for _, m in msgs["/left/image_rect"] + msgs["/left/camera_info"]]
    right = [m.header.frame_id for _, m in msgs["/right/image_rect"] + msgs["/right/camera_info"]]
    assert set(left) == {"camera_left_optical"} and set(right) == {"camera_right_optical"}


def test_image_bytes_equal_png_pixels(bag, seq):
    _, _, _, msgs = bag
    for side, topic in ((0, "/left/image_rect"), (1, "/right/image_rect")):
        for frame, (_, msg) in zip(seq.frame_ids(), msgs[topic]):
            png = read_rgb(seq.image_paths(frame)[side])
            assert (msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian) == \
                ("rgb8", HEIGHT, WIDTH, 3 * WIDTH, 0)
            np.testing.assert_array_equal(np.asarray(msg.data).reshape(HEIGHT, WIDTH, 3), png)


def test_camera_info_carries_p2_p3_and_rebuilds_the_calibration(bag, seq):
    _, _, _, msgs = bag
    calib = seq.calib()
    (_, left), (_, right) = msgs["/left/camera_info"][0], msgs["/right/camera_info"][0]
    for info, key in ((left, "P2"), (right, "P3")):
        np.testing.assert_array_equal(info.p, calib[key].reshape(-1))
        np.testing.assert_array_equal(info.k, calib[key][:, :3].reshape(-1))
        np.testing.assert_array_equal(info.r, np.eye(3).reshape(-1))
        assert (info.width, info.height, info.distortion_model, len(info.d)) == (WIDTH, HEIGHT, "plumb_bob", 0)
        assert (info.binning_x, info.binning_y) == (0, 0)
    rebuilt = calibration_from_camera_info(left.p, right.p, left.width, left.height, T_grid_to_ref=calib["Tr"])
    assert rebuilt == kitti_calibration(calib, (HEIGHT, WIDTH))


def test_frame_range_start_time_and_options(kitti_root, seq, tmp_path):
    out = tmp_path / "part"
    opts = kitti2bag.ConvertOptions(
        kitti=kitti_root, sequence="00", out=out, start=1, frames=5,
        start_time_ns=kitti2bag.parse_start_time("1317000000.123456789"),
        left_frame_id="cam2", right_frame_id="cam3", topics=kitti2bag.TopicNames("stereo"), qos="best_effort")
    result = kitti2bag.convert(opts, progress=False)
    assert (result.frames, result.messages) == (FRAMES - 1, 5 * (FRAMES - 1))
    conns, msgs = read_bag(out)
    assert set(conns) == {"/stereo" + t for t in IMAGE_TOPICS} | {"/odom"}  # odometry keeps its absolute topic
    base = 1_317_000_000_123_456_789
    assert [stamp_ns(m) for _, m in msgs["/stereo/left/image_rect"]] == \
        [base + round(t * 1e9) for t in seq.times()[1:FRAMES]]
    assert msgs["/stereo/right/camera_info"][0][1].header.frame_id == "cam3"
    assert conns["/stereo/left/image_rect"].ext.offered_qos_profiles[0].reliability == QosReliability.BEST_EFFORT


@pytest.mark.parametrize("text", ["abc", "-1", "nan"])
def test_bad_start_time(text):
    with pytest.raises(ValueError, match="start-time"):
        kitti2bag.parse_start_time(text)


def test_missing_sequence_root_and_existing_output(kitti_root, tmp_path, capsys):
    cases = [
        (["--kitti", str(kitti_root), "--sequence", "07"], "sequence folder not found"),
        (["--kitti", str(tmp_path / "nowhere"), "--sequence", "00"], "KITTI root not found"),
        (["--kitti", str(kitti_root), "--sequence", "00", "--start", "9"], "outside the sequence"),
    ]
    for argv, message in cases:
        assert kitti2bag.main([*argv, "--out", str(tmp_path / "out"), "--quiet"]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "out").exists()
    (tmp_path / "taken").mkdir()
    assert kitti2bag.main(["--kitti", str(kitti_root), "--sequence", "00", "--out", str(tmp_path / "taken")]) == 2
    assert "exists already" in capsys.readouterr().err


def test_missing_files_are_named_and_partial_bag_removed(kitti_root, tmp_path):
    root = tmp_path / "kitti"
    shutil.copytree(kitti_root / "sequences" / "00", root / "sequences" / "00",
                    ignore=shutil.ignore_patterns("voxels", "depth"))
    seq_dir = root / "sequences" / "00"
    (seq_dir / "image_3" / "000001.png").unlink()
    opts = kitti2bag.ConvertOptions(kitti=root, sequence="00", out=tmp_path / "bag")
    with pytest.raises(kitti2bag.ConversionError, match="000001.png"):
        kitti2bag.convert(opts, progress=False)
    assert not opts.out.exists()
    (seq_dir / "times.txt").unlink()
    with pytest.raises(kitti2bag.ConversionError, match="times.txt"):
        kitti2bag.convert(opts, progress=False)
    shutil.rmtree(seq_dir / "image_3")
    with pytest.raises(kitti2bag.ConversionError, match="image_3"):
        kitti2bag.convert(opts, progress=False)


def quaternion_matrix(q) -> np.ndarray:
    """Rotation of a unit quaternion (x, y, z, w), written out independently of the tool."""
    x, y, z, w = q.x, q.y, q.z, q.w
    return np.array([[w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z]])


def test_odometry_round_trips_poses_txt_through_tr(bag, seq):
    """Read back: each frame's Odometry is poses.txt's cam0 pose brought to the grid frame,
    Tr^-1 P Tr (float64, by a loop over the text rows), stamped like the images."""
    _, _, conns, msgs = bag
    assert conns["/odom"].msgcount == FRAMES
    Tr = np.eye(4)
    Tr[:3] = np.array([float(v) for v in (seq.path / "calib.txt").read_text().split("Tr:")[1].split()[:12]]).reshape(3, 4)
    rows = [line.split() for line in (seq.path / "poses.txt").read_text().splitlines() if line.strip()]
    image_stamps = [stamp_ns(m) for _, m in msgs["/left/image_rect"]]
    for i, (t_ns, odom) in enumerate(msgs["/odom"]):
        P = np.eye(4)
        P[:3] = np.array([float(v) for v in rows[i]]).reshape(3, 4)
        expected = np.linalg.solve(Tr, P @ Tr)
        p, q = odom.pose.pose.position, odom.pose.pose.orientation
        assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "velodyne")
        assert stamp_ns(odom) == t_ns == image_stamps[i]
        assert q.x ** 2 + q.y ** 2 + q.z ** 2 + q.w ** 2 == pytest.approx(1.0, abs=1e-14)
        np.testing.assert_allclose([p.x, p.y, p.z], expected[:3, 3], rtol=0, atol=1e-12)
        np.testing.assert_allclose(quaternion_matrix(q), expected[:3, :3], rtol=0, atol=1e-8)  # rows printed to 9 digits
        assert not np.any(odom.pose.covariance) and not np.any(odom.twist.covariance)
    first = msgs["/odom"][0][1].pose.pose
    np.testing.assert_allclose([first.position.x, first.position.y, first.position.z], 0.0, atol=1e-12)  # odom = frame 0's grid
    moved = msgs["/odom"][-1][1].pose.pose.position
    assert moved.x > 0.5  # the synthetic car drives forward along the grid's x


def test_odometry_comes_first_in_each_frame(bag):
    _, out, _, _ = bag
    with Reader(out) as reader:
        order = [c.topic for c, _, _ in reader.messages()]
    assert order[0] == "/odom" and order.count("/odom") == FRAMES
    for i in range(FRAMES):
        assert order[5 * i] == "/odom"


def test_odometry_options_and_missing_poses(kitti_root, tmp_path, capsys):
    out = tmp_path / "renamed"
    assert kitti2bag.main(["--kitti", str(kitti_root), "--sequence", "00", "--out", str(out), "--quiet",
                           "--odom-topic", "/robot/odom", "--odom-frame-id", "world", "--grid-frame-id", "lidar"]) == 0
    assert "odometry from poses.txt on /robot/odom (world -> lidar)" in capsys.readouterr().out
    conns, msgs = read_bag(out)
    odom = msgs["/robot/odom"][0][1]
    assert (odom.header.frame_id, odom.child_frame_id) == ("world", "lidar")
    assert kitti2bag.main(["--kitti", str(kitti_root), "--sequence", "00", "--out", str(tmp_path / "none"),
                           "--quiet", "--no-odometry"]) == 0
    assert "no odometry (--no-odometry)" in capsys.readouterr().out
    assert set(read_bag(tmp_path / "none")[0]) == set(IMAGE_TOPICS)
    root = tmp_path / "kitti"
    shutil.copytree(kitti_root / "sequences" / "00", root / "sequences" / "00",
                    ignore=shutil.ignore_patterns("voxels", "depth", "poses.txt"))
    assert kitti2bag.main(["--kitti", str(root), "--sequence", "00", "--out", str(tmp_path / "noposes"), "--quiet"]) == 0
    assert "no odometry: " in capsys.readouterr().out
    assert set(read_bag(tmp_path / "noposes")[0]) == set(IMAGE_TOPICS)
    for argv, message in ((["--odom-topic", "odom"], "absolute topic"),
                          (["--odom-frame-id", "velodyne"], "both 'velodyne'")):
        assert kitti2bag.main(["--kitti", str(kitti_root), "--sequence", "00", "--out", str(tmp_path / "bad"),
                               "--quiet", *argv]) == 2
        assert message in capsys.readouterr().err


def test_short_or_broken_poses_are_named(kitti_root, tmp_path):
    root = tmp_path / "kitti"
    shutil.copytree(kitti_root / "sequences" / "00", root / "sequences" / "00",
                    ignore=shutil.ignore_patterns("voxels", "depth"))
    poses = root / "sequences" / "00" / "poses.txt"
    lines = poses.read_text().splitlines()
    poses.write_text("\n".join(lines[:-1]) + "\n")
    opts = kitti2bag.ConvertOptions(kitti=root, sequence="00", out=tmp_path / "bag")
    with pytest.raises(kitti2bag.ConversionError, match=f"poses.txt has {FRAMES - 1} poses"):
        kitti2bag.convert(opts, progress=False)
    poses.write_text("\n".join(["2 0 0 0 0 1 0 0 0 0 1 0"] + lines[1:]) + "\n")  # a scaled "rotation"
    with pytest.raises(kitti2bag.ConversionError, match="poses.txt line 1"):
        kitti2bag.convert(opts, progress=False)
    assert not opts.out.exists()
