"""The package as a ROS user gets it: ``colcon build``, then ``ros2 launch occdepth_ros
stereo.launch.py`` from the install, fed by a bag in the third-party kitti2mcap layout.

colcon (colcon-core + colcon-ros from requirements.txt) runs from this interpreter's folder, so
the installed executables use this interpreter. The launch file runs in a
``launch.LaunchService`` (tests/helpers/ros_launch.py: what ``ros2 launch`` does) with the Jazzy
launch/launch_ros sources from ../shared/ros/jazzy-src, in its own process; this process replays
the bag over real DDS and watches the node's outputs. The launch arguments are the documented
command of docs/CAMERA.md: a shipped config and the four topic remaps, nothing else.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import PointCloud2

from occdepth_ros.node.stereo_sync import stamp_to_ns
from helpers.bag_watch import BagWatch
from helpers.dds import domain_id
from helpers.kitti2mcap_bag import KITTI_RAW_SIZE, LEFT, RIGHT, RIGHT_LAG_NS, TOPIC, synthetic_kitti2mcap_bag
from helpers.ros_launch import JAZZY_SRC, source_paths

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "occdepth_ros"
DOMAIN_ID = domain_id("colcon_launch")
FRAMES = 3
START_NS = 1_317_000_000 * 10**9
RATE = 0.05  # the bag's 10 Hz frames 2 s apart: slower than the node, so every pair is processed
START_TIMEOUT_S = 300.0  # torch import, model load, a first ONNX export (backend auto), 2 shared cores
OUTPUT_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
CAMERA_DOC = ROOT / "docs" / "CAMERA.md"
OUTPUTS = {"cloud": (PointCloud2, "/occdepth_node/voxels"), "diag": (DiagnosticArray, "/diagnostics")}

pytestmark = pytest.mark.skipif(not JAZZY_SRC.is_dir(),
                                reason=f"{JAZZY_SRC} (the ROS 2 launch sources this test runs) is absent")


def kitti2mcap_launch_arguments(share: Path) -> list[str]:
    """The documented command's launch arguments, with $(ros2 pkg prefix ...) resolved: the
    shipped config as it is (its default QoS and pairing), the four topic remaps."""
    return [f"config:={share}/config/generic_stereo.yaml",
            f"left_image:={TOPIC[LEFT][0]}", f"right_image:={TOPIC[RIGHT][0]}",
            f"left_info:={TOPIC[LEFT][1]}", f"right_info:={TOPIC[RIGHT][1]}"]


# -- fixtures -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def install(tmp_path_factory) -> Path:
    """``colcon build`` of this checkout into a temporary folder; returns the package prefix."""
    colcon = Path(sys.executable).parent / "colcon"
    if not colcon.is_file():
        pytest.fail(f"{colcon} is missing: colcon-core and colcon-ros come from requirements.txt (make setup)")
    work = tmp_path_factory.mktemp("colcon")
    cmd = [str(colcon), "--log-base", str(work / "log"), "build", "--paths", str(ROOT),
           "--build-base", str(work / "build"), "--install-base", str(work / "install")]
    done = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"colcon build failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return work / "install" / PACKAGE


@pytest.fixture(scope="module")
def kitti2mcap_bag(tmp_path_factory):
    return synthetic_kitti2mcap_bag(tmp_path_factory.mktemp("kitti_raw"), FRAMES, START_NS)


def _site_packages(prefix: Path) -> Path:
    (site,) = prefix.glob("lib/python3*/site-packages")
    return site


def _launch_env(prefix: Path, log_dir: Path) -> dict[str, str]:
    """What sourcing the install's setup script gives, plus this test's DDS domain."""
    env = dict(os.environ)
    paths = [str(_site_packages(prefix))] + [str(p) for p in source_paths(JAZZY_SRC)]
    env.update(AMENT_PREFIX_PATH=str(prefix), PYTHONPATH=os.pathsep.join(paths),
               ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_LOG_DIR=str(log_dir), PYTHONUNBUFFERED="1",
               ROS_AUTOMATIC_DISCOVERY_RANGE=os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"))
    return env


@pytest.fixture(scope="module")
def launched(install, kitti2mcap_bag, tmp_path_factory):
    """stereo.launch.py from the install with the documented kitti2mcap arguments, the bag
    replayed once; yields (bag, collected outputs, launch output, launch exit status)."""
    logs = tmp_path_factory.mktemp("launch")
    share = install / "share" / PACKAGE
    cmd = [sys.executable, str(ROOT / "tests" / "helpers" / "ros_launch.py"), str(JAZZY_SRC), PACKAGE,
           "stereo.launch.py", *kitti2mcap_launch_arguments(share)]
    out_file = (logs / "launch.out").open("w+")
    proc = subprocess.Popen(cmd, env=_launch_env(install, logs), stdout=out_file, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        with BagWatch(OUTPUTS, DOMAIN_ID) as watch:
            inputs = [TOPIC[LEFT][0], TOPIC[RIGHT][0], TOPIC[LEFT][1], TOPIC[RIGHT][1]]
            started = watch.wait_subscribed(inputs, START_TIMEOUT_S) and watch.wait_for("diag", 1, START_TIMEOUT_S)
            played = None
            if started:
                played = watch.play(kitti2mcap_bag.path, rate=RATE)
                watch.wait_for("cloud", FRAMES, OUTPUT_TIMEOUT_S)
                watch.wait_for("diag", len(watch.messages("diag")) + 2, OUTPUT_TIMEOUT_S)  # a report after the last
            got = {key: watch.messages(key) for key in OUTPUTS}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Ctrl-C, as a user stops ros2 launch
        try:
            rc = proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
        out_file.seek(0)
        output = out_file.read()
        out_file.close()
    assert started, f"the launched node never subscribed to the bag's topics / published diagnostics:\n{output}"
    output += f"\n[test] player: {played}\n[test] last diagnostics: {_last_diagnostics(got['diag'])}"
    yield kitti2mcap_bag, got, output, rc


def _last_diagnostics(arrays: list[DiagnosticArray]) -> dict[str, str]:
    statuses = [s for array in arrays for s in array.status if s.name.startswith("occdepth_node")]
    return {"message": statuses[-1].message, **{kv.key: kv.value for kv in statuses[-1].values}} if statuses else {}


# -- the install tree -------------------------------------------------------------------
def test_install_tree_is_what_ros_tools_expect(install) -> None:
    share = install / "share" / PACKAGE
    for rel in ("config/kitti.yaml", "config/generic_stereo.yaml", "launch/stereo.launch.py",
                "launch/kitti_replay.launch.py", "rviz/occdepth.rviz", "models/default.safetensors"):
        assert (share / rel).is_file(), f"{rel} is not installed"
    assert (share / "package.xml").read_bytes() == (ROOT / "package.xml").read_bytes()
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    assert (_site_packages(install) / PACKAGE / "__init__.py").is_file()
    assert (_site_packages(install) / "occdepth_export" / "__init__.py").is_file()


@pytest.mark.parametrize("exe", ["occdepth_node", "occdepth-play", "occdepth-kitti2bag"])
def test_executables_installed_for_ros2_run_with_this_interpreter(install, exe: str) -> None:
    script = install / "lib" / PACKAGE / exe
    assert script.is_file() and os.access(script, os.X_OK)
    shebang = script.read_text().splitlines()[0]
    assert Path(shebang[2:].split()[0]).resolve() == Path(sys.executable).resolve()


def test_installed_package_finds_its_share_through_the_ament_index(install, tmp_path) -> None:
    code = ("import occdepth_ros; from occdepth_ros.resources import share_dir; "
            "print(share_dir()); print(occdepth_ros.__file__)")
    env = _launch_env(install, tmp_path)
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    share, module = done.stdout.split()
    assert Path(share) == install / "share" / PACKAGE
    assert Path(module).is_relative_to(install)


# -- the launch file, run -----------------------------------------------------------
def test_the_bag_has_the_kitti2mcap_layout(kitti2mcap_bag) -> None:
    """The fixture is what the converter writes: one .mcap, no offers, stamps 0.3 ms apart."""
    from rosbags.rosbag2 import Reader

    assert kitti2mcap_bag.path.suffix == ".mcap" and not (kitti2mcap_bag.path.parent / "metadata.yaml").exists()
    with Reader(kitti2mcap_bag.path) as reader:
        by_topic = {c.topic: c for c in reader.connections}
        assert set(by_topic) == {*TOPIC[LEFT], *TOPIC[RIGHT], "/tf_static"}
        assert all(not c.ext.offered_qos_profiles for c in reader.connections)
        image_conn = by_topic[TOPIC[LEFT][0]]
        (_, _, raw), = list(reader.messages(connections=[image_conn]))[:1]
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    msg = deserialize_message(bytes(raw), Image)
    assert (msg.height, msg.width, msg.encoding, msg.header.frame_id) == (*KITTI_RAW_SIZE, "rgb8", LEFT)
    lags = np.subtract(kitti2mcap_bag.right_stamps_ns, kitti2mcap_bag.left_stamps_ns)
    assert (lags == RIGHT_LAG_NS).all()


def test_launched_node_processes_every_pair_of_the_kitti2mcap_bag(launched) -> None:
    bag, got, output, _ = launched
    stamps = [stamp_to_ns(m.header.stamp.sec, m.header.stamp.nanosec) for m in got["cloud"]]
    assert stamps == bag.left_stamps_ns, f"clouds for {stamps}, pairs sent {bag.left_stamps_ns}\n{output[-3000:]}"
    for cloud in got["cloud"]:
        assert cloud.header.frame_id and cloud.width * cloud.height > 0
        assert {f.name for f in cloud.fields} >= {"x", "y", "z"}


def test_launched_node_counts_every_pair_and_drops_none(launched) -> None:
    _, got, output, _ = launched
    assert re.search(r"\[occdepth_node-\d+\]: process started", output), output[-3000:]
    values = _last_diagnostics(got["diag"])
    assert values, "no diagnostics from the launched node"
    assert values["frames_processed"] == str(FRAMES), values
    drops = {k: v for k, v in values.items() if k.startswith("dropped_") and v != "0"}
    assert not drops, f"{drops}\n{output[-3000:]}"


def test_ctrl_c_stops_the_launch_cleanly(launched) -> None:
    _, _, output, rc = launched
    # launch's own lines (the interrupt, the signals it forwards, process exits) come first:
    # a long tail of node warnings would hide them
    steps = [line for line in output.splitlines() if "[launch]" in line or ": process " in line]
    assert rc == 0, "\n".join(steps) + "\n...\n" + output[-3000:]
    assert re.search(r"\[occdepth_node-\d+\]: process has finished cleanly", output), output[-3000:]
    assert "Traceback" not in output, output[-3000:]


def test_documented_command_is_the_one_tested() -> None:
    """docs/CAMERA.md's kitti2mcap command carries exactly these launch arguments."""
    text = CAMERA_DOC.read_text()
    blocks = [b for b in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
              if "ros2 launch occdepth_ros stereo.launch.py" in b and TOPIC[LEFT][0] in b]
    assert len(blocks) == 1, "docs/CAMERA.md needs one ros2 launch block for kitti2mcap bags"
    share = "$(ros2 pkg prefix --share occdepth_ros)"
    words = blocks[0].replace("\\\n", " ").replace(share, "SHARE").split()
    args = [w for w in words if ":=" in w and not w.startswith("bag:=")]
    assert args == kitti2mcap_launch_arguments(Path("SHARE"))
