"""What each node parameter means, its range, and whether it may change at run time.

Plain Python (no ROS types): ``ros_node`` turns these into rcl_interfaces
ParameterDescriptors, and docs/NODE.md's parameter table is generated from them
(a test keeps the two equal). Defaults live in NodeParams only.

* ``read_only``: fixed for the node's life (model, backend, device, calibration source,
  grid pose and frame); rclpy itself refuses a change.
* ``runtime``: applied to the next frame when set (``ros2 param set``).
* neither: read at start-up; a change is refused with that reason.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..runtime.factory import BACKEND_CHOICES, PRECISIONS
from ..runtime.ort_providers import ORT_PROVIDER_CHOICES
from .params import INPUT_QOS_CHOICES, NodeParams

BIG = 1.0e9  # upper end of ranges that have no natural one


@dataclass(frozen=True)
class ParamSpec:
    description: str
    range: tuple[float, float] | None = None  # inclusive; integer params get an integer range
    read_only: bool = False
    runtime: bool = False


def _choices(values) -> str:
    return " | ".join(repr(v) if v == "" else str(v) for v in values)


SPECS: dict[str, ParamSpec] = {
    "left_image_topic": ParamSpec("left rectified image (sensor_msgs/Image); relative, so namespaces and remaps move it"),
    "right_image_topic": ParamSpec("right rectified image (sensor_msgs/Image)"),
    "left_info_topic": ParamSpec("left camera_info; used only when calib_file is empty"),
    "right_info_topic": ParamSpec("right camera_info; used only when calib_file is empty"),
    "input_qos": ParamSpec(f"QoS profile of the input subscriptions: {_choices(INPUT_QOS_CHOICES)}; AUTO = "
                           "reliable, best effort on a topic whose publishers offer only that"),
    "approximate_sync": ParamSpec("pair messages whose stamps differ by up to sync_tolerance_s (else exact stamps)"),
    "sync_tolerance_s": ParamSpec("largest stamp spread of a pair when approximate_sync is true, s", (0.0, 1.0)),
    "queue_size": ParamSpec("messages kept per image stream while waiting for partners (camera_info streams "
                            "get a deeper queue)", (1, 1000)),
    "stamp_reset_jump_s": ParamSpec("a stamp this far back restarts the pairing (bag loop), s; 0 = never",
                                    (0.0, BIG)),
    "calib_file": ParamSpec("KITTI calib.txt or stereo YAML (relative: working dir, then the package share); "
                            "empty = calibration from camera_info", read_only=True),
    "calib_image_size": ParamSpec("[width, height] of the images calib_file is for; empty = the file says "
                                  "(KITTI '# image_size: W H' line, YAML image_width/height, a sequence's image_2)",
                                  read_only=True),
    "scale_intrinsics_to_image": ParamSpec("images of another size but the same aspect ratio as the calibration: "
                                           "scale the intrinsics (logged) instead of refusing them", read_only=True),
    "grid_to_camera": ParamSpec("12 (3x4) or 16 (4x4) numbers, row-major: grid frame -> left rectified optical "
                                "frame, camera_info mode; empty = grid at the camera, x forward, z up",
                                read_only=True),
    "checkpoint": ParamSpec("weights (.safetensors, official .ckpt, .onnx, .engine); empty = the shipped model",
                            read_only=True),
    "preset": ParamSpec("model preset; empty = taken from the checkpoint", read_only=True),
    "backend": ParamSpec(f"inference backend: {_choices(BACKEND_CHOICES)} (auto: the fastest present)",
                         read_only=True),
    "precision": ParamSpec(f"network precision: {_choices(PRECISIONS)} (auto: int8 on OpenVINO, else fp32; "
                           "fp16: TensorRT; int8: ONNX Runtime, docs/INT8.md)", read_only=True),
    "ort_provider": ParamSpec(f"ONNX Runtime provider: {_choices(ORT_PROVIDER_CHOICES)} ('' = the best installed)",
                              read_only=True),
    "device": ParamSpec("cpu, cuda or cuda:N", read_only=True),
    "threads": ParamSpec("CPU threads of torch / ONNX Runtime; 0 = the library's default", (0, 1024),
                         read_only=True),
    "host_memory_tuning": ParamSpec("keep freed host memory for reuse (fewer page faults per CPU forward pass); "
                                    "process-wide, set before the model loads", read_only=True),
    "pipelined": ParamSpec("decode, network and message building on their own threads, overlapping frames",
                           read_only=True),
    "host_threads": ParamSpec("torch threads of the decode and message stages when pipelined and the network "
                              "is not torch; 0 = torch's default", (0, 1024), read_only=True),
    "frame_id": ParamSpec("frame the outputs are labelled in; empty = the calibration's grid frame: velodyne "
                          "for a KITTI calib.txt, else occdepth_grid (docs/NODE.md, Frames)", read_only=True),
    "publish_confidence": ParamSpec("add a confidence field to ~/voxels", runtime=True),
    "publish_unseen_voxels": ParamSpec("publish completed voxels outside every camera's view", runtime=True),
    "publish_label_grid": ParamSpec("publish the dense class grid on ~/label_grid", runtime=True),
    "occupancy_min_z": ParamSpec("lower end of the z band that counts as occupied in ~/occupancy, m (grid frame)",
                                 (-BIG, BIG), runtime=True),
    "occupancy_max_z": ParamSpec("upper end of that z band, m", (-BIG, BIG), runtime=True),
    "free_classes": ParamSpec("classes a robot may drive on: free in ~/occupancy", runtime=True),
    "occupancy_transient_local": ParamSpec("~/occupancy latched (transient local, REP-2003 map QoS)"),
    "marker_max_voxels": ParamSpec("cap on the cubes in ~/voxel_markers", (0, 10_000_000), runtime=True),
    "marker_max_rate_hz": ParamSpec("most ~/voxel_markers per second; 0 disables them", (0.0, 1000.0),
                                    runtime=True),
    "fuse": ParamSpec("temporal map: integrate every frame into a semantic voxel map in the odometry frame "
                      "through the pose at its stamp; publishes ~/map/* (per-frame outputs unchanged)"),
    "odom_topic": ParamSpec("nav_msgs/Odometry of the grid frame (child_frame_id = the grid frame) when fuse "
                            "is true and use_tf is false; the map is kept in its header.frame_id"),
    "use_tf": ParamSpec("look the pose up in TF (odom_frame <- grid frame, at the image stamp) instead of "
                        "odom_topic; needs tf2_ros (a ROS install)"),
    "odom_frame": ParamSpec("with use_tf: the fixed frame the map is kept and published in"),
    "odom_max_age_s": ParamSpec("odometry farther than this from an image's stamp does not count: that frame "
                                "is not fused (warned, counted), s", (0.001, 3600.0)),
    "odom_wait_s": ParamSpec("how long a frame newer than the newest odometry waits for more before the newest "
                             "pose is used (counted as late), s", (0.0, 10.0)),
    "odom_jump_m": ParamSpec("a step between consecutive odometry poses longer than this resets the map, m",
                             (0.001, BIG)),
    "odom_jump_rad": ParamSpec("a rotation between consecutive odometry poses larger than this resets the map, "
                               "rad", (0.001, math.pi)),
    "map_voxel_size": ParamSpec("voxel size of the map, m; 0 = the model grid's", (0.0, BIG)),
    "map_extent_m": ParamSpec("side of the map's square window in x and y, centred on the robot, m; its height "
                              "band is the model grid's", (0.01, BIG)),
    "map_decay": ParamSpec("evidence a map voxel keeps per fused frame it goes unobserved (1 = never forgets)",
                           (1e-6, 1.0)),
    "map_class_prior": ParamSpec("the network's class prior (a YAML of occdepth-class-prior) the map divides "
                                 "class evidence by; empty = the shipped model's when it runs, 'none' = no prior"),
    "processing_budget_ms": ParamSpec("processing time per frame above which diagnostics warn, ms",
                                      (0.001, BIG)),
    "diagnostics_period_s": ParamSpec("period of /diagnostics, s", (0.001, 3600.0)),
    "stats_window": ParamSpec("frames in the rolling statistics", (2, 100_000)),
}

RUNTIME = frozenset(name for name, spec in SPECS.items() if spec.runtime)
READ_ONLY = frozenset(name for name, spec in SPECS.items() if spec.read_only)


def field_kinds() -> dict[str, str]:
    """name -> 'bool' | 'int' | 'float' | 'str' | 'int[]' | 'float[]' | 'str[]' (from NodeParams)."""
    kinds = {}
    for f in dataclasses.fields(NodeParams):
        t = str(f.type).replace(" ", "")
        kinds[f.name] = {"tuple[int,...]": "int[]", "tuple[float,...]": "float[]", "tuple[str,...]": "str[]"}.get(t, t)
    return kinds


def markdown_table() -> str:
    """docs/NODE.md's parameter table: name, type, default, range, when it applies, meaning."""
    defaults = NodeParams()
    kinds = field_kinds()
    rows = ["| name | type | default | range | changes | description |", "| --- | --- | --- | --- | --- | --- |"]
    for name, spec in SPECS.items():
        default = getattr(defaults, name)
        shown = list(default) if isinstance(default, tuple) else default
        rng = "" if spec.range is None else f"{spec.range[0]:g} .. {spec.range[1]:g}"
        when = "read-only" if spec.read_only else ("runtime" if spec.runtime else "start-up")
        desc = spec.description.replace("|", "\\|")
        rows.append(f"| `{name}` | {kinds[name]} | `{shown!r}` | {rng} | {when} | {desc} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # regenerate docs/NODE.md's table: python -m occdepth_ros.node.param_specs
    print(markdown_table(), end="")
