"""Node parameter files, launch files and the RViz config agree with the node."""

from __future__ import annotations

import importlib.util
import py_compile
from pathlib import Path

import pytest
import yaml

from occdepth_ros.classes import load_class_set
from occdepth_ros.node.params import NodeParams
from occdepth_ros.resources import share_dir

ROOT = Path(__file__).resolve().parents[1]
NODE_OUTPUTS = {"/occdepth_node/voxels", "/occdepth_node/voxel_markers", "/occdepth_node/occupancy"}


@pytest.mark.parametrize("name", ["kitti.yaml", "generic_stereo.yaml"])
def test_node_configs_validate(name: str) -> None:
    data = yaml.safe_load((ROOT / "config" / name).read_text())
    params = NodeParams.from_dict(data["/**"]["ros__parameters"]).resolved(share_dir())
    params.validate(load_class_set().names)
    if params.calib_file:
        assert Path(params.calib_file).is_file()


@pytest.mark.parametrize("name", ["stereo.launch.py", "kitti_replay.launch.py"])
def test_launch_files_compile(name: str, tmp_path) -> None:
    py_compile.compile(str(ROOT / "launch" / name), cfile=str(tmp_path / "x.pyc"), doraise=True)


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None,
                    reason="launch/launch_ros are not on PyPI; the launch description is built on a real ROS install")
def test_stereo_launch_description_builds() -> None:
    spec = importlib.util.spec_from_file_location("stereo_launch", ROOT / "launch" / "stereo.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.generate_launch_description().entities


def test_rviz_config_shows_the_node_outputs() -> None:
    cfg = yaml.safe_load((ROOT / "rviz" / "occdepth.rviz").read_text())
    topics = {d["Topic"]["Value"] for d in cfg["Visualization Manager"]["Displays"] if "Topic" in d}
    assert NODE_OUTPUTS <= topics
    assert cfg["Visualization Manager"]["Global Options"]["Fixed Frame"] == "velodyne"
