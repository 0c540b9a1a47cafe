"""The launch files evaluated with the real launch and launch_ros (the Jazzy sources in
../shared/ros/jazzy-src; launch is not on PyPI): what they declare and start. A toolchain check
like test_colcon_launch: it skips, saying so, where those sources are absent. The same facts
are checked without the toolchain, from the files' text, in test_launch_and_configs."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

from helpers import ros_launch
from helpers.ros_launch import JAZZY_SRC
from helpers.launch_expectations import KITTI_REPLAY_ARGS, ROOT, STEREO_ARGS
from occdepth_ros.node.param_specs import SPECS
from occdepth_ros.node.params import NodeParams

pytestmark = pytest.mark.skipif(not JAZZY_SRC.is_dir(),
                                reason=f"{JAZZY_SRC} (the ROS 2 launch sources) is absent; launch is not on PyPI")


@pytest.fixture(scope="module")
def launch_env(tmp_path_factory):
    """launch + launch_ros from the Jazzy sources, and an ament index whose occdepth_ros
    share folder is this checkout (what FindPackageShare resolves)."""
    prefix = tmp_path_factory.mktemp("prefix")
    index = prefix / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / "occdepth_ros").write_text("")
    (prefix / "share" / "occdepth_ros").symlink_to(ROOT)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMENT_PREFIX_PATH", str(prefix))
        for path in ros_launch.source_paths(JAZZY_SRC):
            mp.syspath_prepend(str(path))
        ros_launch._composition_stand_in()
        yield prefix


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), ROOT / "launch" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _declared(description, context) -> dict[str, str]:
    from launch.actions import DeclareLaunchArgument
    from launch.utilities import perform_substitutions

    return {e.name: perform_substitutions(context, e.default_value) if e.default_value is not None else None
            for e in description.entities if isinstance(e, DeclareLaunchArgument)}


def test_stereo_launch_declares_its_arguments_and_starts_the_node(launch_env) -> None:
    from launch import LaunchContext
    from launch_ros.actions import Node

    module = _load("stereo.launch.py")
    context = LaunchContext()
    declared = _declared(module.generate_launch_description(), context)
    assert set(declared) == STEREO_ARGS
    assert declared["config"] == str(launch_env / "share" / "occdepth_ros" / "config" / "kitti.yaml")
    assert declared["use_rviz"] == "false" and declared["bag"] == ""
    assert set(module.PARAMETER_ARGS) <= set(SPECS)  # every parameter argument is a declared parameter
    assert set(module.REMAP_ARGS.values()) == {NodeParams().left_image_topic, NodeParams().right_image_topic,
                                               NodeParams().left_info_topic, NodeParams().right_info_topic}
    # defaults: the node alone, with the KITTI config and no overrides
    context.launch_configurations.update(declared)
    (node,) = module._setup(context)
    assert isinstance(node, Node) and (node.node_package, node.node_executable) == ("occdepth_ros", "occdepth_node")
    settings = module.node_settings(context.launch_configurations.get)
    assert settings["parameters"] == [declared["config"], {}] and settings["remappings"] == []
    # a generic camera: its config, remaps, one override, RViz on its own config
    generic = str(ROOT / "config" / "generic_stereo.yaml")
    context.launch_configurations.update({"config": generic, "left_image": "/zed/left/image_rect_color",
                                          "device": "cuda", "use_rviz": "true"})
    node, rviz = module._setup(context)
    assert (rviz.node_package, rviz.node_executable) == ("rviz2", "rviz2")
    settings = module.node_settings(context.launch_configurations.get)
    assert settings["parameters"] == [generic, {"device": "cuda"}]
    assert settings["remappings"] == [("left/image_rect", "/zed/left/image_rect_color")]
    assert (ROOT / "rviz" / settings["rviz_config"]).is_file() and settings["rviz_config"] == "generic_stereo.rviz"
    assert settings["rviz_extra_args"] == []
    from launch_ros.utilities import evaluate_parameters, normalize_parameters

    for text, fuse in (("true", True), ("False", False)):  # the node's bool parameter, not a string
        context.launch_configurations["fuse"] = text
        overrides = module.node_settings(context.launch_configurations.get)["parameters"][1]
        assert evaluate_parameters(context, normalize_parameters([overrides])) == ({"device": "cuda", "fuse": fuse},)
        rviz = module.node_settings(context.launch_configurations.get)["rviz_config"]
        assert rviz == ("occdepth_map.rviz" if fuse else "generic_stereo.rviz") and (ROOT / "rviz" / rviz).is_file()
    context.launch_configurations["fuse"] = "yes"
    with pytest.raises(ValueError, match="fuse must be true or false"):
        module.node_settings(context.launch_configurations.get)
    context.launch_configurations["fuse"] = ""
    context.launch_configurations["fixed_frame"] = "base_link"
    assert module.node_settings(context.launch_configurations.get)["rviz_extra_args"] == ["--fixed-frame", "base_link"]


def test_kitti_replay_launch_includes_stereo_with_the_kitti_config(launch_env) -> None:
    from launch import LaunchContext
    from launch.actions import IncludeLaunchDescription
    from launch.utilities import perform_substitutions

    description = _load("kitti_replay.launch.py").generate_launch_description()
    context = LaunchContext()
    declared = _declared(description, context)
    assert set(declared) == KITTI_REPLAY_ARGS
    assert declared["bag"] is None  # required
    context.launch_configurations.update({k: v or "x" for k, v in declared.items()})
    (include,) = [e for e in description.entities if isinstance(e, IncludeLaunchDescription)]
    text = lambda x: x if isinstance(x, str) else perform_substitutions(context, x if isinstance(x, (list, tuple)) else [x])  # noqa: E731
    args = {text(k): text(v) for k, v in include.launch_arguments}
    assert args["config"] == str(launch_env / "share" / "occdepth_ros" / "config" / "kitti.yaml")
    assert args["bag_loop"] == "true" and set(declared) <= set(args)
    source = include.launch_description_source
    source.get_launch_description(context)  # resolves and loads the included file
    assert source.location == str(launch_env / "share" / "occdepth_ros" / "launch" / "stereo.launch.py")
