"""ROS parameter conventions: every parameter declared with a descriptor, the config
files and launch arguments name only declared parameters, declared defaults are the
dataclass's, runtime parameters apply and the others are refused with a reason; start-up
errors and signals end the real node process with the documented exit codes."""

from __future__ import annotations

import ast
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from rclpy.exceptions import ParameterException, ParameterUninitializedException
from rclpy.parameter import Parameter

from helpers.dds import domain_id
from helpers.node_harness import Harness
from occdepth_ros.geometry.calib import GRID_TO_OPTICAL
from occdepth_ros.node.frames import frames_summary, grid_pose_in_camera, rotation_to_quaternion
from occdepth_ros.node.param_specs import READ_ONLY, RUNTIME, SPECS, field_kinds, markdown_table
from occdepth_ros.node.params import NodeParams
from occdepth_ros.node.ros_node import PARAM_TYPES, declare_params
from occdepth_ros.resources import share_dir

ROOT = Path(__file__).resolve().parents[1]
DOMAIN_ID = domain_id("node_process")
START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 60.0


def test_every_field_has_a_spec_and_the_conventions_hold() -> None:
    assert list(SPECS) == [f.name for f in dataclasses.fields(NodeParams)]
    assert {"checkpoint", "preset", "backend", "precision", "ort_provider", "device", "calib_file",
            "calib_image_size", "grid_to_camera", "frame_id"} <= READ_ONLY
    assert RUNTIME == {"marker_max_rate_hz", "marker_max_voxels", "occupancy_min_z", "occupancy_max_z",
                       "free_classes", "publish_confidence", "publish_unseen_voxels", "publish_label_grid"}
    assert not READ_ONLY & RUNTIME
    assert all(spec.description for spec in SPECS.values())
    defaults = NodeParams()
    for name, spec in SPECS.items():  # every default lies in its range
        if spec.range is not None:
            assert spec.range[0] <= getattr(defaults, name) <= spec.range[1], name


def test_node_md_table_is_generated_from_the_specs() -> None:
    text = (ROOT / "docs" / "NODE.md").read_text()
    assert markdown_table() in text


def _config_keys(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / name).read_text())["/**"]["ros__parameters"]


@pytest.mark.parametrize("name", ["kitti.yaml", "generic_stereo.yaml"])
def test_config_files_hold_declared_keys_that_differ_from_the_defaults(name: str) -> None:
    values = _config_keys(name)
    assert set(values) <= set(SPECS)
    parsed = NodeParams.from_dict(values)
    defaults = NodeParams()
    same = [k for k in values if getattr(parsed, k) == getattr(defaults, k)]
    assert not same, f"{name} repeats defaults: {same}"


def _launch_parameter_args(path: Path) -> tuple[str, ...]:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "PARAMETER_ARGS" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError(f"{path} has no PARAMETER_ARGS")


def test_launch_parameter_arguments_are_declared_parameters() -> None:
    assert set(_launch_parameter_args(ROOT / "launch" / "stereo.launch.py")) <= set(SPECS)


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    yield ctx
    rclpy.try_shutdown(context=ctx)


def _declared(context, overrides: list[Parameter] | None = None, args: list[str] | None = None):
    node = rclpy.create_node("declared", context=context, parameter_overrides=overrides or [],
                             cli_args=args)
    return node, declare_params(node)


def test_declared_defaults_and_descriptors_are_the_dataclass(context) -> None:
    node, params = _declared(context)
    try:
        defaults = NodeParams().to_dict()
        kinds = field_kinds()
        for name, default in defaults.items():
            if default == []:  # declared typed, without a value: "not set"
                with pytest.raises(ParameterUninitializedException):
                    node.get_parameter(name)
            else:
                value = node.get_parameter(name).value
                assert (list(value) if kinds[name].endswith("[]") else value) == default, name
            d = node.describe_parameter(name)
            assert d.type == PARAM_TYPES[kinds[name]].value, name
            assert d.description == SPECS[name].description and d.read_only == SPECS[name].read_only
            rng = SPECS[name].range
            if rng is not None and kinds[name] in ("int", "float"):
                r = (d.integer_range or d.floating_point_range)[0]
                assert (r.from_value, r.to_value) == pytest.approx(rng), name
        assert params == NodeParams().resolved(share_dir())
    finally:
        node.destroy_node()


def test_a_yaml_integer_is_accepted_for_a_float(context, tmp_path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    processing_budget_ms: 250\n    sync_tolerance_s: 0\n"
                 "    grid_to_camera: [0, -1, 0, 0, 0, 0, -1, 0, 1, 0, 0, 0]\n    calib_file: ''\n")
    node, params = _declared(context, args=["--ros-args", "--params-file", str(f)])
    try:
        assert params.processing_budget_ms == 250.0 and isinstance(params.processing_budget_ms, float)
        assert params.sync_tolerance_s == 0.0
        np.testing.assert_array_equal(params.grid_to_camera_matrix(), GRID_TO_OPTICAL)
    finally:
        node.destroy_node()


@pytest.mark.parametrize("override", [Parameter("queue_size", value=0), Parameter("processing_budget_ms", value="x"),
                                      Parameter("marker_max_rate_hz", value=-1.0)])
def test_bad_values_and_types_raise_parameter_errors(context, override) -> None:
    with pytest.raises(ParameterException, match=override.name):
        _declared(context, [override])


# -- runtime changes on the running node ---------------------------------------------------
@pytest.fixture(scope="module")
def harness():
    h = Harness({}, domain_id=DOMAIN_ID)
    try:
        yield h
    finally:
        h.close()


def test_runtime_parameters_apply_and_the_rest_are_refused(harness) -> None:
    node = harness.node
    ok = node.set_parameters([Parameter("marker_max_rate_hz", value=5.0), Parameter("occupancy_min_z", value=-1.0),
                              Parameter("free_classes", value=["road"]), Parameter("publish_label_grid", value=False)])
    assert all(r.successful for r in ok), [r.reason for r in ok]
    p = node.params
    assert (p.marker_max_rate_hz, p.occupancy_min_z, p.free_classes, p.publish_label_grid) == (5.0, -1.0, ("road",), False)
    assert node.processor.params is p  # the next frame uses them
    refused = {
        "queue_size": (Parameter("queue_size", value=3), "start-up"),
        "backend": (Parameter("backend", value="onnxruntime"), "read-only"),
        "z band": (Parameter("occupancy_min_z", value=1.0), "occupancy_min_z"),  # above occupancy_max_z
        "class": (Parameter("free_classes", value=["lava"]), "lava"),
        "range": (Parameter("marker_max_rate_hz", value=-2.0), "marker_max_rate_hz"),
    }
    for what, (param, reason) in refused.items():
        (result,) = node.set_parameters([param])
        assert not result.successful and reason in result.reason, (what, result.reason)
    assert node.params is p and node.get_parameter("queue_size").value == NodeParams().queue_size
    node.set_parameters([Parameter("publish_label_grid", value=True), Parameter("free_classes",
                         value=list(NodeParams().free_classes))])


# -- frames ------------------------------------------------------------------------------
def _rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """v rotated by the unit quaternion q (x, y, z, w): q v q*, written out."""
    x, y, z, w = q
    qv = np.array([x, y, z])
    return v + 2 * np.cross(qv, np.cross(qv, v) + w * v)


def test_quaternions_rotate_like_their_matrices() -> None:
    rng = np.random.default_rng(3)
    mats = [GRID_TO_OPTICAL[:3, :3], np.eye(3), np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, -1.0, 1.0])]
    for _ in range(50):
        qr, r = np.linalg.qr(rng.normal(size=(3, 3)))
        qr = qr * np.sign(np.diag(r))
        mats.append(qr if np.linalg.det(qr) > 0 else -qr)
    for R in mats:
        q = rotation_to_quaternion(R)
        assert np.linalg.norm(q) == pytest.approx(1.0) and q[3] >= 0
        for v in np.eye(3):
            np.testing.assert_allclose(_rotate(q, v), R @ v, atol=1e-12)


def test_camera_info_mode_states_the_grid_transform() -> None:
    T = GRID_TO_OPTICAL.copy()
    T[:3, 3] = [0.0, 1.65, 0.0]  # camera 1.65 m above the grid origin: grid origin is below (optical y down)
    p = NodeParams(calib_file="", grid_to_camera=tuple(T.ravel()))
    t, q = grid_pose_in_camera(p.grid_to_camera_matrix())
    np.testing.assert_allclose(t, [0.0, 1.65, 0.0])
    text = frames_summary(p, tf_available=False)
    assert "'occdepth_grid'" in text and "static_transform_publisher" in text and "--y 1.65" in text
    assert "--child-frame-id occdepth_grid" in text
    assert "/tf_static" in frames_summary(p, tf_available=True)
    assert "'velodyne'" in frames_summary(NodeParams(), tf_available=False)


# -- the node process: exit codes ----------------------------------------------------------
def _node_process(*ros_args: str, merged: bool = False) -> subprocess.Popen:
    """The node's entry point in its own process; ``merged``: stderr (ROS logging) into stdout."""
    env = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN_ID), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "export"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-c", "import sys; from occdepth_ros.node.ros_node import main; sys.exit(main())",
           "--ros-args", "-p", "preset:=compact", "-p", "backend:=torch", *ros_args]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            stderr=subprocess.STDOUT if merged else subprocess.PIPE)


@pytest.mark.parametrize("args, words", [
    (("-p", "queue_size:=0"), "queue_size"),
    (("-p", "x:="), "bad ROS arguments"),
    (("-p", "processing_budget_ms:=fast"), "processing_budget_ms"),
    (("-p", "calib_file:=/nonexistent/calib.txt"), "calib_file"),
])
def test_bad_parameters_exit_2_with_one_line(args, words) -> None:
    proc = _node_process(*args)
    out, err = proc.communicate(timeout=START_TIMEOUT_S)
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    ours = [line for line in err.splitlines() if line.startswith("occdepth_node:")]
    assert len(ours) == 1 and words in ours[0], err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_end_the_node_cleanly(sig) -> None:
    proc = _node_process("-p", "processing_budget_ms:=1000", merged=True)  # an integer for a float, too
    lines = []
    end = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < end:
        line = proc.stdout.readline() if proc.poll() is None else ""
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if "outputs in frame" in line:  # the last start-up line: spinning from here on
            break
    assert any("outputs in frame" in line for line in lines), "".join(lines)
    time.sleep(0.5)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=STOP_TIMEOUT_S)
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "ExternalShutdownException" not in out, out
