"""requirements.txt installs on aarch64 (Jetson): every x86-64-only wheel sits behind a marker.

X86_ONLY comes from pip's resolver asked for each marked requirement with an aarch64 target
(JetPack 6: Python 3.10):

    pip install --dry-run --ignore-installed --target t --python-version 3.10 --only-binary=:all: \\
        --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 --platform manylinux_2_34_aarch64 <req>

which found no distribution for each name below (the ros-jazzy-* wheels are pure Python but pin
ros-* wheels built for manylinux_2_28_x86_64 only). The requirements left after evaluating the
markers for aarch64 resolve as a whole: `.ci/resolve-aarch64` (needs the package index) runs
that check, 51 packages.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]

X86_ONLY = {
    "ros-jazzy-rclpy", "ros-jazzy-builtin-interfaces", "ros-jazzy-std-msgs", "ros-jazzy-geometry-msgs",
    "ros-jazzy-sensor-msgs", "ros-jazzy-nav-msgs", "ros-jazzy-visualization-msgs",
    "ros-jazzy-diagnostic-msgs", "ros-jazzy-std-srvs", "ros-jazzy-lifecycle-msgs",
    "onnxruntime-openvino", "tensorrt-rtx-cu13-libs", "tensorrt-rtx-cu13-bindings",
}
# On a Jetson ROS 2 is the system's (Humble from apt), so no ROS wheel is installed there,
# including the pure-Python ones.
ROS_WHEEL_PREFIX = "ros-"


def _environment(machine: str, python: str) -> dict[str, str]:
    env = default_environment()
    env.update(platform_machine=machine, sys_platform="linux", platform_system="Linux", os_name="posix",
               python_version=python, python_full_version=f"{python}.0", implementation_name="cpython",
               platform_python_implementation="CPython")
    return env


def requirements() -> list[Requirement]:
    out = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(Requirement(line))
    return out


def installed_names(machine: str, python: str) -> set[str]:
    env = _environment(machine, python)
    return {canonicalize_name(r.name) for r in requirements() if r.marker is None or r.marker.evaluate(env)}


@pytest.mark.parametrize("python", ["3.10", "3.11", "3.12"])
def test_aarch64_installs_no_x86_only_wheel_and_no_ros_wheel(python: str) -> None:
    names = installed_names("aarch64", python)
    assert not names & X86_ONLY
    assert not {n for n in names if n.startswith(ROS_WHEEL_PREFIX)}
    assert {"onnxruntime", "rosbags", "colcon-core", "colcon-ros", "numpy"} <= names


def test_x86_64_installs_everything_it_lists_once() -> None:
    names = installed_names("x86_64", "3.11")
    assert X86_ONLY <= names
    assert "onnxruntime" not in names, "x86-64 takes onnxruntime-openvino, which provides the same module"
    assert len(names) == len(requirements()) - 1  # all but the aarch64 onnxruntime


def test_every_requirement_is_known_to_the_pip_check() -> None:
    names = {canonicalize_name(r.name) for r in requirements()}
    assert X86_ONLY <= names, f"stale names in X86_ONLY: {sorted(X86_ONLY - names)}"


def test_ros_wheels_are_jazzy_and_rclpy_is_pinned_to_7_1() -> None:
    ros = [r for r in requirements() if canonicalize_name(r.name).startswith(ROS_WHEEL_PREFIX)]
    assert ros and all(canonicalize_name(r.name).startswith("ros-jazzy-") for r in ros)
    (rclpy,) = [r for r in ros if canonicalize_name(r.name) == "ros-jazzy-rclpy"]
    assert rclpy.extras == {"fastrtps"}
    assert rclpy.specifier.contains("7.1.6") and not rclpy.specifier.contains("9.1.2")


def test_environment_helper_really_switches_machine() -> None:
    marker = Requirement('x; platform_machine == "x86_64"').marker
    assert marker.evaluate(_environment("x86_64", "3.11"))
    assert not marker.evaluate(_environment("aarch64", "3.11"))
