"""package.xml declares exactly what the installed code imports and what the launch files start.

The imports are read from the source (AST of occdepth_ros/, export/occdepth_export/ and launch/,
including imports inside functions and ``importlib.import_module("name")``), so neither the
manifest nor the code can drift alone: a new third-party import fails here until package.xml
names its rosdep key (or, where rosdep has none, a ``no-rosdep-key`` comment).
"""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OWN_PACKAGES = {"occdepth_ros", "occdepth_export"}
SOURCE_DIRS = ("occdepth_ros", "export/occdepth_export")
NO_KEY_TAG = "no-rosdep-key:"

# Python module -> rosdep key; None where rosdep has no key (checked against ros/rosdistro's
# rosdep/python.yaml and base.yaml: onnx, onnxscript, safetensors, geffnet and tensorrt have none).
# ROS packages are their own keys.
MODULE_KEY: dict[str, str | None] = {
    "rclpy": "rclpy",
    "rcl_interfaces": "rcl_interfaces",
    "ament_index_python": "ament_index_python",
    "builtin_interfaces": "builtin_interfaces",
    "std_msgs": "std_msgs",
    "geometry_msgs": "geometry_msgs",
    "sensor_msgs": "sensor_msgs",
    "nav_msgs": "nav_msgs",
    "visualization_msgs": "visualization_msgs",
    "diagnostic_msgs": "diagnostic_msgs",
    "std_srvs": "std_srvs",
    "tf2_ros": "tf2_ros",
    "tf2_msgs": "tf2_msgs",
    "launch": "launch",
    "launch_ros": "launch_ros",
    "numpy": "python3-numpy",
    "yaml": "python3-yaml",
    "PIL": "python3-pil",
    "tqdm": "python3-tqdm",
    "cv2": "python3-opencv",
    "torch": "python3-torch",
    "onnxruntime": "python3-onnxruntime-pip",
    "rosbags": "python3-rosbags-pip",
    "safetensors": None,
    "onnx": None,
    "onnxscript": None,
    "onnx_ir": None,
    "geffnet": None,
    "nncf": None,
    "tensorrt": None,
}
# What a launch file starts -> the packages that provide it.
NODE_PACKAGE_KEYS = {"rviz2": {"rviz2"}}
ROS2_VERB_KEYS = {"bag": {"ros2bag", "rosbag2_storage_default_plugins"}}


# -- reading the code ---------------------------------------------------------------
def _imported_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"):
            names.add(node.args[0].value)
    return names


def third_party_imports(files: list[Path]) -> dict[str, set[str]]:
    """Top-level module -> files importing it, leaving out the standard library and our own."""
    out: dict[str, set[str]] = {}
    for path in files:
        for name in _imported_names(ast.parse(path.read_text(), str(path))):
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top not in OWN_PACKAGES:
                out.setdefault(top, set()).add(str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name)
    return out


def _string_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = 'text'`` assignments, to resolve ``Node(package=PACKAGE)``."""
    consts = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            consts.update({t.id: stmt.value.value for t in stmt.targets if isinstance(t, ast.Name)})
    return consts


def _text(node: ast.AST, consts: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return consts.get(node.id)
    return None


def launched_keys(files: list[Path]) -> set[str]:
    """Keys for ``Node(package=...)`` and ``ExecuteProcess(cmd=['ros2', <verb>, ...])``."""
    keys: set[str] = set()
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        consts = _string_constants(tree)
        lists = {t.id: n.value for n in ast.walk(tree) if isinstance(n, ast.Assign) and isinstance(n.value, ast.List)
                 for t in n.targets if isinstance(t, ast.Name)}  # cmd = ['ros2', ...]; ExecuteProcess(cmd=cmd)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = getattr(node.func, "id", getattr(node.func, "attr", ""))
            kwargs = {k.arg: k.value for k in node.keywords}
            if func == "Node" and "package" in kwargs:
                package = _text(kwargs["package"], consts)
                assert package is not None, f"{path.name}: Node(package=...) is not a constant"
                if package not in OWN_PACKAGES:
                    keys |= NODE_PACKAGE_KEYS.get(package, {package})
            elif func == "ExecuteProcess" and "cmd" in kwargs:
                cmd = kwargs["cmd"]
                cmd = lists.get(cmd.id) if isinstance(cmd, ast.Name) else cmd
                assert isinstance(cmd, ast.List), f"{path.name}: ExecuteProcess(cmd=...) is not a list literal"
                words = [_text(e, consts) for e in cmd.elts[:2]]
                assert words[0] == "ros2", f"{path.name}: ExecuteProcess runs {words[0]!r}; map it to its package"
                assert words[1] in ROS2_VERB_KEYS, f"{path.name}: 'ros2 {words[1]}' needs an entry in ROS2_VERB_KEYS"
                keys |= ROS2_VERB_KEYS[words[1]]
    return keys


# -- reading the manifest -------------------------------------------------------------
def manifest(path: Path) -> tuple[set[str], set[str], set[str]]:
    """(run-time dependency keys, test dependency keys, modules named in no-rosdep-key comments)."""
    root = ET.parse(path, parser=ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))).getroot()
    run = {e.text.strip() for tag in ("depend", "exec_depend") for e in root.iter(tag)}
    test = {e.text.strip() for e in root.iter("test_depend")}
    no_key = set()
    for node in root.iter():
        if node.tag is ET.Comment and node.text.strip().startswith(NO_KEY_TAG):
            no_key.add(node.text.strip()[len(NO_KEY_TAG):].split()[0])
    return run, test, no_key


def _code_files() -> list[Path]:
    return sorted(p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py"))


def _launch_files() -> list[Path]:
    return sorted((ROOT / "launch").glob("*.py"))


# -- tests --------------------------------------------------------------------------
def test_every_import_has_a_known_key() -> None:
    unknown = {m: sorted(f) for m, f in third_party_imports(_code_files() + _launch_files()).items()
               if m not in MODULE_KEY}
    assert not unknown, f"imports without a rosdep mapping (add to MODULE_KEY and package.xml): {unknown}"


def test_manifest_declares_exactly_the_imports_and_launched_packages() -> None:
    imports = third_party_imports(_code_files() + _launch_files())
    wanted = {MODULE_KEY[m] for m in imports if MODULE_KEY.get(m)} | launched_keys(_launch_files())
    wanted_no_key = {m for m in imports if m in MODULE_KEY and MODULE_KEY[m] is None}
    run, _, no_key = manifest(ROOT / "package.xml")
    assert sorted(run - wanted) == [], "package.xml declares dependencies the code never imports or starts"
    assert sorted(wanted - run) == [], "the code imports or starts packages package.xml does not declare"
    assert no_key == wanted_no_key, "the no-rosdep-key comments must name exactly the key-less imports"


def test_manifest_is_format_3_ament_python_with_pytest() -> None:
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "occdepth_ros"
    assert root.findtext("export/build_type") == "ament_python"
    _, test, _ = manifest(ROOT / "package.xml")
    assert test == {"python3-pytest"}


def test_scanner_finds_nested_optional_and_dynamic_imports(tmp_path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        "import os, numpy.linalg as la\n"
        "from occdepth_ros.node import x\n"
        "from . import sibling\n"
        "def f():\n"
        "    try:\n"
        "        import tf2_ros\n"
        "    except ImportError:\n"
        "        from cv2 import imread\n"
        "    importlib.import_module('rosbags.rosbag2')\n"
        "    importlib.import_module(f'{pkg}.msg')\n"
    )
    assert set(third_party_imports([source])) == {"numpy", "tf2_ros", "cv2", "rosbags"}


def test_launch_scanner_resolves_constants_and_ros2_verbs(tmp_path) -> None:
    source = tmp_path / "x.launch.py"
    source.write_text(
        "PKG = 'occdepth_ros'\n"
        "VIEWER = 'rviz2'\n"
        "a = Node(package=PKG, executable='occdepth_node')\n"
        "b = Node(package=VIEWER, executable='rviz2')\n"
        "def f(bag):\n"
        "    cmd = ['ros2', 'bag', 'play', bag]\n"
        "    return ExecuteProcess(cmd=cmd)\n"
    )
    assert launched_keys([source]) == {"rviz2", "ros2bag", "rosbag2_storage_default_plugins"}


def test_manifest_reader_sees_no_key_comments(tmp_path) -> None:
    xml = tmp_path / "package.xml"
    xml.write_text('<package format="3"><exec_depend>rclpy</exec_depend>'
                   "<!-- no-rosdep-key: onnx (pip) --><!-- unrelated --></package>")
    assert manifest(xml) == ({"rclpy"}, set(), {"onnx"})


@pytest.mark.parametrize("dropped", ["cv_bridge", "message_filters", "sensor_msgs_py"])
def test_packages_never_imported_are_not_declared(dropped: str) -> None:
    run, _, _ = manifest(ROOT / "package.xml")
    assert dropped not in run and dropped not in third_party_imports(_code_files())
