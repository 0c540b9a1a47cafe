"""What ``ros2 launch <package> <file> name:=value ...`` does, for machines without ros2cli.

    python tests/helpers/ros_launch.py <launch-src-dir> <package> <file.launch.py> [name:=value ...]

Puts the launch and launch_ros sources from ``<launch-src-dir>`` (the Jazzy checkout in
../shared/ros/jazzy-src) on the path, finds the launch file in the package's share folder through
the ament index (AMENT_PREFIX_PATH), includes it with the launch arguments and runs it in a
``launch.LaunchService`` until SIGINT/SIGTERM. The exit status is the service's.

composition_interfaces has no wheel; launch_ros imports three service types from it for
composable nodes, which this project does not use, so a stand-in module declares them and any
use of them fails loudly.
"""

from __future__ import annotations

import signal
import sys
import types
from pathlib import Path

JAZZY_SRC = Path(__file__).resolve().parents[3] / "shared" / "ros" / "jazzy-src"  # ../shared beside the repository
LAUNCH_SOURCES = ("launch-repo/launch", "launch_ros-repo/launch_ros")
COMPOSITION_SERVICES = ("LoadNode", "UnloadNode", "ListNodes")


def source_paths(src_dir: Path) -> list[Path]:
    """The folders to put on sys.path / PYTHONPATH for ``import launch, launch_ros``."""
    return [src_dir / rel for rel in LAUNCH_SOURCES]


def _composition_stand_in() -> None:
    try:
        import composition_interfaces.srv  # noqa: F401  (a real ROS install has it)
        return
    except ImportError:
        pass

    def unusable(name: str) -> type:
        def fail(*_a: object, **_k: object) -> None:
            raise RuntimeError(f"composition_interfaces/srv/{name} is a stand-in: composable nodes are unavailable")
        return type(name, (), {"__init__": fail, "Request": None, "Response": None})

    package = types.ModuleType("composition_interfaces")
    srv = types.ModuleType("composition_interfaces.srv")
    for name in COMPOSITION_SERVICES:
        setattr(srv, name, unusable(name))
    package.srv = srv
    sys.modules.update({"composition_interfaces": package, "composition_interfaces.srv": srv})


def parse_launch_arguments(words: list[str]) -> list[tuple[str, str]]:
    """``name:=value`` words, as ros2 launch reads them; anything else is an error."""
    out = []
    for word in words:
        name, sep, value = word.partition(":=")
        if not sep or not name:
            raise SystemExit(f"ros_launch: launch arguments are name:=value, got {word!r}")
        out.append((name, value))
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        raise SystemExit(__doc__)
    src_dir, package, file_name, *rest = argv
    sys.path[:0] = [str(p) for p in source_paths(Path(src_dir))]
    _composition_stand_in()
    from ament_index_python.packages import get_package_share_directory
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    path = Path(get_package_share_directory(package)) / "launch" / file_name
    include = IncludeLaunchDescription(PythonLaunchDescriptionSource(str(path)),
                                       launch_arguments=parse_launch_arguments(rest))
    service = LaunchService(argv=rest, noninteractive=True)
    service.include_launch_description(LaunchDescription([include]))
    # Ctrl-C as in a terminal: a shell without job control (a CI script, `make test &`)
    # starts background jobs with SIGINT ignored, and then Python installs no SIGINT handler;
    # launch hears signals only through Python's (signal.set_wakeup_fd), so it would never stop.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return service.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
