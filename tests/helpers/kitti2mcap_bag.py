"""A bag laid out the way the third-party converter kitti2mcap (KITTI raw drives) writes it.

What it shares with that converter's output, message for message:
- topics ``/kitti/camera_color_{left,right}/image_raw`` (sensor_msgs/msg/Image, ``rgb8``) and
  ``/kitti/camera_color_{left,right}/camera_info``, plus ``/tf_static`` (tf2_msgs/msg/TFMessage,
  base_link -> each camera), frame ids equal to the topic's camera name (no ``_optical``);
- each camera stamped from its own timestamps file, so right trails left (0.3 ms here), and the
  bag's receive time is the message's stamp;
- camera_info as the converter fills it from calib_cam_to_cam.txt: K = the unrectified K_0N,
  R = R_rect_0N, P = P_rect_0N (both relative to camera 0; the right one carries the baseline),
  ``plumb_bob`` with D = 0 (the images are rectified);
- one storage file with no offered QoS profiles (the converter writes none) and no
  metadata.yaml: rosbags writes the bag folder, the .mcap is then moved out on its own.

The numbers below are KITTI-raw-like calibration values (1242 x 375 colour pair, ~0.54 m baseline).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

KITTI_RAW_SIZE = (375, 1242)  # (H, W)
RIGHT_LAG_NS = 300_000  # 0.3 ms
LEFT, RIGHT = "camera_color_left", "camera_color_right"
TOPIC = {side: (f"/kitti/{side}/image_raw", f"/kitti/{side}/camera_info") for side in (LEFT, RIGHT)}
TF_STATIC = "/tf_static"

K = {LEFT: [959.791, 0.0, 696.0217, 0.0, 956.9251, 224.1806, 0.0, 0.0, 1.0],
     RIGHT: [903.7596, 0.0, 695.7519, 0.0, 901.9653, 224.2509, 0.0, 0.0, 1.0]}
R_RECT = {LEFT: [0.9998817, 0.01511453, -0.002841595, -0.01511724, 0.9998853, -0.000933851,
                 0.002827154, 0.0009766976, 0.9999955],
          RIGHT: [0.9998321, -0.007193136, 0.01685599, 0.007232804, 0.9999712, -0.002317976,
                  -0.01683901, 0.002439539, 0.9998553]}
P_RECT = {LEFT: [721.5377, 0.0, 609.5593, 44.85728, 0.0, 721.5377, 172.854, 0.2163791, 0.0, 0.0, 1.0, 0.002745884],
          RIGHT: [721.5377, 0.0, 609.5593, -339.5242, 0.0, 721.5377, 172.854, 2.199936, 0.0, 0.0, 1.0, 0.002729905]}
# base_link -> camera translations (m); rotations as the converter would take them from the
# extrinsics chain are irrelevant here and left at identity.
CAMERA_OFFSET = {LEFT: (0.27, 0.06, 0.72), RIGHT: (0.27, -0.48, 0.72)}


@dataclass(frozen=True)
class Kitti2McapBag:
    path: Path  # the single .mcap file
    left_stamps_ns: list[int]
    right_stamps_ns: list[int]


def _typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def _header(ts: Any, stamp_ns: int, frame_id: str) -> Any:
    sec, nsec = divmod(stamp_ns, 1_000_000_000)
    return ts.types["std_msgs/msg/Header"](stamp=ts.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                                           frame_id=frame_id)


def _image(ts: Any, rgb: np.ndarray, stamp_ns: int, frame_id: str) -> Any:
    h, w = rgb.shape[:2]
    return ts.types["sensor_msgs/msg/Image"](header=_header(ts, stamp_ns, frame_id), height=h, width=w,
                                             encoding="rgb8", is_bigendian=0, step=3 * w,
                                             data=np.ascontiguousarray(rgb, dtype=np.uint8).reshape(-1))


def _camera_info(ts: Any, side: str, stamp_ns: int) -> Any:
    h, w = KITTI_RAW_SIZE
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return ts.types["sensor_msgs/msg/CameraInfo"](
        header=_header(ts, stamp_ns, side), height=h, width=w, distortion_model="plumb_bob",
        d=np.zeros(5), k=np.array(K[side]), r=np.array(R_RECT[side]), p=np.array(P_RECT[side]),
        binning_x=0, binning_y=0, roi=roi)


def _tf_static(ts: Any, stamp_ns: int) -> Any:
    T = ts.types
    transforms = []
    for side, (x, y, z) in CAMERA_OFFSET.items():
        transforms.append(T["geometry_msgs/msg/TransformStamped"](
            header=_header(ts, stamp_ns, "base_link"), child_frame_id=side,
            transform=T["geometry_msgs/msg/Transform"](
                translation=T["geometry_msgs/msg/Vector3"](x=x, y=y, z=z),
                rotation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))))
    return T["tf2_msgs/msg/TFMessage"](transforms=transforms)


def write_kitti2mcap_bag(out_file: Path, pairs: list[tuple[np.ndarray, np.ndarray]], start_ns: int,
                         period_ns: int = 100_000_000) -> Kitti2McapBag:
    """Write ``pairs`` (rectified 375 x 1242 rgb) as one .mcap file at ``out_file``."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = _typestore()
    folder = out_file.with_suffix(".bagdir")
    left_stamps = [start_ns + i * period_ns for i in range(len(pairs))]
    right_stamps = [s + RIGHT_LAG_NS for s in left_stamps]
    with Writer(folder, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {}
        for side in (LEFT, RIGHT):
            image_topic, info_topic = TOPIC[side]
            conns[image_topic] = writer.add_connection(image_topic, "sensor_msgs/msg/Image", typestore=ts)
            conns[info_topic] = writer.add_connection(info_topic, "sensor_msgs/msg/CameraInfo", typestore=ts)
        conns[TF_STATIC] = writer.add_connection(TF_STATIC, "tf2_msgs/msg/TFMessage", typestore=ts)

        def put(topic: str, stamp: int, msg: Any) -> None:
            writer.write(conns[topic], stamp, ts.serialize_cdr(msg, msg.__msgtype__))

        put(TF_STATIC, start_ns, _tf_static(ts, start_ns))
        for (left, right), t_left, t_right in zip(pairs, left_stamps, right_stamps):
            for side, rgb, stamp in ((LEFT, left, t_left), (RIGHT, right, t_right)):
                if rgb.shape[:2] != KITTI_RAW_SIZE:
                    raise ValueError(f"kitti2mcap bags hold {KITTI_RAW_SIZE} images, got {rgb.shape[:2]}")
                image_topic, info_topic = TOPIC[side]
                put(image_topic, stamp, _image(ts, rgb, stamp, side))
                put(info_topic, stamp, _camera_info(ts, side, stamp))
    (storage,) = folder.glob("*.mcap")
    shutil.move(str(storage), out_file)
    shutil.rmtree(folder)
    return Kitti2McapBag(out_file, left_stamps, right_stamps)


def synthetic_kitti2mcap_bag(root: Path, frames: int, start_ns: int, seed: int = 31) -> Path:
    """A kitti2mcap-layout bag of ``frames`` synthetic pairs at the raw drives' image size,
    written under ``root`` (the street is rendered by occdepth-synth)."""
    from occdepth_ros.data.images import read_rgb
    from occdepth_ros.data.kitti_odometry import KittiSequence
    from occdepth_ros.data.synth.cli import main as synth_main

    h, w = KITTI_RAW_SIZE
    assert synth_main(["--out", str(root), "--sequences", "00", "--frames", str(frames), "--seed", str(seed),
                       "--voxel-every", "0", "--image-size", str(h), str(w)]) == 0
    seq = KittiSequence(root, "00")
    pairs = [tuple(read_rgb(p) for p in seq.image_paths(f)) for f in seq.frame_ids()[:frames]]
    return write_kitti2mcap_bag(root / "2011_09_26_drive_0001_sync.mcap", pairs, start_ns)
