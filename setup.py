"""ament_python package that also installs with pip into a virtualenv.

geffnet (the official EfficientNet implementation) is installed with --no-deps by the
Makefile: its metadata asks for torchvision, which would pull a CUDA torch.

The native CPU kernel of the lift op (occdepth_ros.ops._svs_native) is a torch C++
extension built here, against the torch already installed: ``pip install
--no-build-isolation`` (the Makefile) and ``colcon build`` both run this file with that
torch. Without torch headers or a C++ compiler the package installs without it and the
op runs its torch reference. Flags are portable (-O3, OpenMP where the compiler has it);
OCCDEPTH_MARCH_NATIVE=1 adds -march=native for the building machine's CPU.
"""

import os
import subprocess
import sys
import tempfile
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "occdepth_ros"
MARCH_NATIVE_ENV = "OCCDEPTH_MARCH_NATIVE"
NATIVE_SOURCES = ["occdepth_ros/ops/csrc/svs_extension.cpp", "export/plugin/src/svs_cpu.cpp"]
NATIVE_INCLUDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "export", "plugin", "include")


def compiler_accepts(flag: str) -> bool:
    """Whether the C++ compiler builds a small OpenMP-using file with ``flag``."""
    cxx = os.environ.get("CXX", "c++")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.cpp")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n")
        try:
            done = subprocess.run([cxx, flag, src, "-o", os.path.join(tmp, "probe")], capture_output=True,
                                  timeout=120)
        except (OSError, subprocess.SubprocessError):
            return False
    return done.returncode == 0


def native_extension() -> dict:
    """ext_modules and cmdclass for the native kernel; empty (with a warning) without torch."""
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError as exc:
        print(f"warning: {PACKAGE}: no torch at build time ({exc}); the lift op will run its torch "
              "reference on the CPU (install with --no-build-isolation to build the native kernel)",
              file=sys.stderr)
        return {}

    class OptionalBuildExtension(BuildExtension):
        """A failed compile leaves the package usable: the op falls back to the reference."""

        def build_extension(self, ext) -> None:
            try:
                super().build_extension(ext)
            except Exception as exc:  # noqa: BLE001 - any compiler failure: install without it
                print(f"warning: {PACKAGE}: building {ext.name} failed ({exc}); the lift op will run its "
                      "torch reference on the CPU", file=sys.stderr)
                self.extensions = [e for e in self.extensions if e is not ext]  # nothing to copy or install

    flags = ["-O3"]  # the C++ standard: torch's default for extensions
    link = []
    if compiler_accepts("-fopenmp"):
        flags.append("-fopenmp")
        link.append("-fopenmp")
    if os.environ.get(MARCH_NATIVE_ENV, "") not in ("", "0"):
        flags.append("-march=native")
    ext = CppExtension(f"{PACKAGE}.ops._svs_native", NATIVE_SOURCES, include_dirs=[NATIVE_INCLUDE],
                       extra_compile_args=flags, extra_link_args=link)
    return {"ext_modules": [ext], "cmdclass": {"build_ext": OptionalBuildExtension}}


def share(folder: str, pattern: str = "*") -> tuple[str, list[str]]:
    files = [p for p in glob(f"{folder}/{pattern}") if "." in p.split("/")[-1] and not p.endswith("README.md")]
    return (f"share/{PACKAGE}/{folder}", sorted(files))


setup(
    name=PACKAGE,
    version="0.1.0",
    # occdepth_export (ONNX export, engine builder) lives beside the plugin in export/.
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]) + ["occdepth_export"],
    package_dir={"occdepth_export": "export/occdepth_export"},
    python_requires=">=3.10",
    install_requires=["numpy", "pyyaml", "pillow", "safetensors", "tqdm", "torch>=2.1"],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        share("config", "*.yaml"),
        share("config/classes"),
        share("config/models"),
        share("config/calib"),
        share("launch"),
        share("models"),
        share("rviz"),
    ],
    zip_safe=False,
    **native_extension(),
    maintainer="occdepth_ros maintainers",
    maintainer_email="occdepth-ros@users.noreply.github.com",
    description="OccDepth stereo 3D semantic scene completion: model, export and ROS 2 node",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            # every console script is a thin main in occdepth_ros/cli/
            "occdepth-infer = occdepth_ros.cli.infer:main",
            "occdepth-inspect = occdepth_ros.cli.inspect:main",
            "occdepth-synth = occdepth_ros.cli.synth:main",
            "occdepth-train = occdepth_ros.cli.train:main",
            "occdepth-eval = occdepth_ros.cli.evaluate:main",
            "occdepth-class-prior = occdepth_ros.cli.class_prior:main",
            "occdepth-predict = occdepth_ros.cli.predict:main",
            "occdepth_node = occdepth_ros.cli.node:main",
            "occdepth-kitti2bag = occdepth_ros.cli.kitti2bag:main",
            "occdepth-play = occdepth_ros.cli.play:main",
            "occdepth-demo = occdepth_ros.cli.demo:main",
            "occdepth-bench = occdepth_ros.cli.bench:main",
            "occdepth-export-onnx = occdepth_ros.cli.export_onnx:main",
            "occdepth-build-engine = occdepth_ros.cli.build_engine:main",
            "occdepth-quantize = occdepth_ros.cli.quantize:main",
        ],
    },
)
