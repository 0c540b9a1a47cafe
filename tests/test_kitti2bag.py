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
}
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
    assert (result.frames, result.messages) == (FRAMES - 1, 4 * (FRAMES - 1))
    conns, msgs = read_bag(out)
    assert set(conns) == {"/stereo" + t for t in TOPICS}
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
