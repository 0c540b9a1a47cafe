"""ament_python package that also installs with pip into a virtualenv.

geffnet (the official EfficientNet implementation) is installed with --no-deps by the
Makefile: its metadata asks for torchvision, which would pull a CUDA torch.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "occdepth_ros"


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
        # the native lift's sources: occdepth_ros.ops.native_lift compiles them on first use
        share("export/plugin", "CMakeLists.txt"),
        share("export/plugin/include/occdepth"),
        share("export/plugin/src"),
    ],
    zip_safe=False,
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
            "occdepth_node = occdepth_ros.cli.node:main",
            "occdepth-kitti2bag = occdepth_ros.cli.kitti2bag:main",
            "occdepth-play = occdepth_ros.cli.play:main",
            "occdepth-demo = occdepth_ros.cli.demo:main",
            "occdepth-bench = occdepth_ros.cli.bench:main",
            "occdepth-export-onnx = occdepth_ros.cli.export_onnx:main",
            "occdepth-build-engine = occdepth_ros.cli.build_engine:main",
        ],
    },
)
