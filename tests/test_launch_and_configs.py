"""Node parameter files, launch files and the RViz configs agree with the node. The launch
files are read as Python source here (what they declare and pass on), so this runs on any
clone; test_launch_files_evaluated runs them with the real launch sources."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from helpers.launch_expectations import KITTI_REPLAY_ARGS, LAUNCH_DIR, ROOT, STEREO_ARGS
from occdepth_ros.classes import load_class_set
from occdepth_ros.node.param_specs import SPECS
from occdepth_ros.node.params import DEFAULT_ODOM_FRAME, NodeParams
from occdepth_ros.resources import share_dir

NODE_OUTPUTS = {"/occdepth_node/voxels", "/occdepth_node/voxel_markers", "/occdepth_node/occupancy"}
CONFIGS = ["kitti.yaml", "generic_stereo.yaml"]


@pytest.mark.parametrize("name", CONFIGS)
def test_node_configs_validate(name: str) -> None:
    data = yaml.safe_load((ROOT / "config" / name).read_text())
    params = NodeParams.from_dict(data["/**"]["ros__parameters"]).resolved(share_dir())
    params.validate(load_class_set().names)
    if params.calib_file:
        assert Path(params.calib_file).is_file()


@pytest.mark.parametrize("config, frame", [("kitti.yaml", "velodyne"), ("generic_stereo.yaml", "occdepth_grid")])
def test_each_config_has_an_rviz_config_fixed_on_its_grid_frame(config: str, frame: str) -> None:
    params = NodeParams.from_dict(yaml.safe_load((ROOT / "config" / config).read_text())["/**"]["ros__parameters"])
    assert params.grid_frame() == frame
    rviz_name = {"generic_stereo.yaml": "generic_stereo.rviz"}.get(config, "occdepth.rviz")
    cfg = yaml.safe_load((ROOT / "rviz" / rviz_name).read_text())
    topics = {d["Topic"]["Value"] for d in cfg["Visualization Manager"]["Displays"] if "Topic" in d}
    assert NODE_OUTPUTS <= topics
    assert cfg["Visualization Manager"]["Global Options"]["Fixed Frame"] == frame


def test_the_map_rviz_config_shows_the_map_in_the_odometry_frame() -> None:
    cfg = yaml.safe_load((ROOT / "rviz" / "occdepth_map.rviz").read_text())
    displays = {d["Topic"]["Value"]: d["Topic"] for d in cfg["Visualization Manager"]["Displays"] if "Topic" in d}
    maps = {"/occdepth_node/map/voxels", "/occdepth_node/map/voxel_markers", "/occdepth_node/map/occupancy"}
    assert maps <= set(displays)
    for latched in ("/occdepth_node/map/voxels", "/occdepth_node/map/occupancy"):  # the node's map QoS
        assert displays[latched]["Durability Policy"] == "Transient Local"
    assert cfg["Visualization Manager"]["Global Options"]["Fixed Frame"] == DEFAULT_ODOM_FRAME


# -- the launch files, read as source ----------------------------------------------------------
def _tree(name: str) -> ast.Module:
    return ast.parse((LAUNCH_DIR / name).read_text(), filename=name)


def _calls(tree: ast.Module, func: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == func]


def _declared(tree: ast.Module) -> dict[str, object]:
    """DeclareLaunchArgument name -> its default when written as a literal (else the AST node);
    arguments declared in a loop (a name from a variable) are left to the caller."""
    out = {}
    for call in _calls(tree, "DeclareLaunchArgument"):
        if not isinstance(call.args[0], ast.Constant):
            continue
        default = {k.arg: k.value for k in call.keywords}.get("default_value")
        out[ast.literal_eval(call.args[0])] = ast.literal_eval(default) if isinstance(default, ast.Constant) else default
    return out


def _constant(tree: ast.Module, name: str) -> object:
    """The literal assigned to ``name`` anywhere in the file."""
    (value,) = [n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                and any(getattr(t, "id", None) == name for t in n.targets)]
    return ast.literal_eval(value)


def _value(tree: ast.Module, node: ast.expr) -> object:
    return _constant(tree, node.id) if isinstance(node, ast.Name) else ast.literal_eval(node)


def test_stereo_launch_source_declares_its_arguments_and_the_node() -> None:
    tree = _tree("stereo.launch.py")
    declared = _declared(tree)
    parameter_args, remap_args = _constant(tree, "PARAMETER_ARGS"), _constant(tree, "REMAP_ARGS")
    # the remap arguments are declared in one loop over REMAP_ARGS
    assert len([c for c in _calls(tree, "DeclareLaunchArgument") if not isinstance(c.args[0], ast.Constant)]) == 1
    assert not set(declared) & set(remap_args)
    assert set(declared) | set(remap_args) == STEREO_ARGS
    assert declared["use_rviz"] == "false" and declared["bag"] == ""
    assert set(parameter_args) <= set(SPECS) and set(parameter_args) <= set(declared)
    defaults = NodeParams()
    assert set(remap_args.values()) == {defaults.left_image_topic, defaults.right_image_topic,
                                        defaults.left_info_topic, defaults.right_info_topic}
    started = set()
    for call in _calls(tree, "Node"):
        keywords = {k.arg: k.value for k in call.keywords}
        started.add((_value(tree, keywords["package"]), _value(tree, keywords["executable"])))
    assert started == {("occdepth_ros", "occdepth_node"), ("rviz2", "rviz2")}
    assert "kitti.yaml" in {c.value for c in ast.walk(tree) if isinstance(c, ast.Constant)}


def test_kitti_replay_launch_source_includes_stereo_with_the_kitti_config() -> None:
    tree = _tree("kitti_replay.launch.py")
    names, defaults = _constant(tree, "names"), _constant(tree, "defaults")
    assert set(names) == KITTI_REPLAY_ARGS and set(defaults) < set(names)
    assert "bag" not in defaults  # required
    assert len(_calls(tree, "DeclareLaunchArgument")) == 1 and len(_calls(tree, "IncludeLaunchDescription")) == 1
    constants = {c.value for c in ast.walk(tree) if isinstance(c, ast.Constant)}
    assert {"stereo.launch.py", "kitti.yaml"} <= constants
