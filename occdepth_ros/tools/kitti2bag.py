"""occdepth-kitti2bag: a KITTI odometry sequence -> a rosbag2 the node can listen to.

Writes, per frame, the rectified colour pair and its camera_infos on the node's
default topics (image_pipeline layout):

    /left/image_rect   /left/camera_info    sensor_msgs/msg/Image (rgb8), CameraInfo
    /right/image_rect  /right/camera_info

and, when the sequence has a ``poses.txt``, its odometry:

    /odom              nav_msgs/msg/Odometry (frame odom, child frame velodyne)

All messages of a frame carry the same header stamp (``--start-time`` +
``times.txt``), which is also their bag receive time, so the node's exact-time
pairing matches them. CameraInfo holds KITTI's P2/P3 unchanged (both relative to
cam0), K = P[:3, :3], R = identity, no distortion: the images are rectified already.

Odometry: ``poses.txt`` holds cam0's pose in the first frame's cam0; through the
calibration's Tr (velodyne -> cam0) it becomes the grid frame's (``velodyne``) pose in
the first frame's grid frame, ``odom``: T_odom_from_grid = Tr^-1 P Tr, so the odom frame
has the grid's axes (x forward, z up). The pose is written, the twist is left zero
(poses.txt holds no velocities) and the covariances are zero (unknown). Each frame's
odometry is written just before its images.

QoS: every topic is recorded as *offered* RELIABLE / VOLATILE / KEEP_LAST(10) (as a
camera driver would offer), because ``ros2 bag play`` adopts the recorded offer and a
reliable publisher matches both best-effort (SENSOR_DATA, the node's default) and
reliable subscribers (RViz, image_view); a best-effort offer would leave reliable
subscribers without data. ``--qos best_effort`` records the other offer.

Pure Python (rosbags), no ROS install needed. Example:

    occdepth-kitti2bag --kitti /data/kitti --sequence 08 --frames 200 --out /tmp/seq08_bag
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..data.images import ImageReadError, read_rgb
from ..data.kitti_odometry import KittiSequence
from ..geometry.calib import CalibrationError
from ..geometry.poses import rotation_to_quaternion
from ..node.params import DEFAULT_ODOM_FRAME, DEFAULT_ODOM_TOPIC, KITTI_GRID_FRAME
from ..node.stereo_sync import NS_PER_S, seconds_to_ns

#: Default epoch added to times.txt (2023-11-14T22:13:20Z): fixed so the same input gives
#: the same bag, and non-zero because stamp 0 means "latest"/"unset" to tf2 and others.
DEFAULT_START_TIME = "1700000000"
STORAGES = ("mcap", "sqlite3")
QOS_CHOICES = ("reliable", "best_effort")
QOS_DEPTH = 10
BAG_VERSION = 9
LEFT_FRAME_ID = "camera_left_optical"
RIGHT_FRAME_ID = "camera_right_optical"
IMAGE_MSGTYPE = "sensor_msgs/msg/Image"
INFO_MSGTYPE = "sensor_msgs/msg/CameraInfo"
ODOM_MSGTYPE = "nav_msgs/msg/Odometry"
COVARIANCE_SIZE = 36
RGB_CHANNELS = 3


class ConversionError(RuntimeError):
    """The input sequence or the output location is unusable; the message says why."""


@dataclass(frozen=True)
class TopicNames:
    """Absolute topic names: the node's relative defaults under ``namespace``."""

    namespace: str = ""

    def _full(self, rel: str) -> str:
        ns = self.namespace.strip("/")
        return f"/{ns}/{rel}" if ns else f"/{rel}"

    @property
    def left_image(self) -> str:
        return self._full("left/image_rect")

    @property
    def right_image(self) -> str:
        return self._full("right/image_rect")

    @property
    def left_info(self) -> str:
        return self._full("left/camera_info")

    @property
    def right_info(self) -> str:
        return self._full("right/camera_info")


@dataclass(frozen=True)
class ConvertOptions:
    """Everything ``convert`` needs; the CLI maps one flag to one field."""

    kitti: Path
    sequence: str
    out: Path
    storage: str = "mcap"
    frames: int | None = None  # None = all frames from ``start``
    start: int = 0  # index into the sorted frame list
    start_time_ns: int = int(DEFAULT_START_TIME) * NS_PER_S
    left_frame_id: str = LEFT_FRAME_ID
    right_frame_id: str = RIGHT_FRAME_ID
    topics: TopicNames = field(default_factory=TopicNames)
    qos: str = "reliable"
    compress: bool = False
    odometry: bool = True  # write poses.txt as nav_msgs/Odometry where the sequence has one
    odom_topic: str = DEFAULT_ODOM_TOPIC  # absolute: not moved by the topic namespace
    odom_frame_id: str = DEFAULT_ODOM_FRAME
    grid_frame_id: str = KITTI_GRID_FRAME  # child frame: the frame calib.txt's Tr starts in


@dataclass(frozen=True)
class ConvertResult:
    out: Path
    frames: int
    messages: int
    first_stamp_ns: int
    last_stamp_ns: int
    odometry: str  # what was done about odometry, for the log line


# -- rosbags helpers ---------------------------------------------------------------
def typestore() -> Any:
    """The ROS 2 Jazzy store (the wheels' distro; Image and CameraInfo are the same in Humble)."""
    from rosbags.typesys import Stores, get_typestore

    for name in ("ROS2_JAZZY", "LATEST"):
        if hasattr(Stores, name):
            return get_typestore(getattr(Stores, name))
    raise ConversionError("rosbags has no ROS 2 type store")  # pragma: no cover


def offered_qos(reliability: str = "reliable") -> Any:
    """The offer ``ros2 bag play`` will re-offer; zero durations mean 'infinite/default'."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    if reliability not in QOS_CHOICES:
        raise ValueError(f"qos must be one of {QOS_CHOICES}, got {reliability!r}")
    rel = QosReliability.RELIABLE if reliability == "reliable" else QosReliability.BEST_EFFORT
    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, QOS_DEPTH, rel, QosDurability.VOLATILE, zero, zero,
               QosLiveliness.AUTOMATIC, zero, False)


def parse_start_time(text: str) -> int:
    """Epoch seconds (decimal, e.g. '1317000000.25') -> ns, exactly (no float rounding)."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation as exc:
        raise ValueError(f"--start-time must be a number of seconds, got {text!r}") from exc
    if not value.is_finite() or value < 0:
        raise ValueError(f"--start-time must be finite and >= 0, got {text!r}")
    return int((value * NS_PER_S).to_integral_value())


# -- messages ----------------------------------------------------------------------
def header(ts: Any, stamp_ns: int, frame_id: str) -> Any:
    sec, nanosec = divmod(int(stamp_ns), NS_PER_S)
    Time = ts.types["builtin_interfaces/msg/Time"]
    return ts.types["std_msgs/msg/Header"](stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def image_msg(ts: Any, rgb: np.ndarray, stamp_ns: int, frame_id: str) -> Any:
    """rgb8 Image of an (H, W, 3) uint8 array, rows packed (step = 3 W)."""
    if rgb.ndim != 3 or rgb.shape[2] != RGB_CHANNELS or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    return ts.types[IMAGE_MSGTYPE](
        header=header(ts, stamp_ns, frame_id), height=h, width=w, encoding="rgb8",
        is_bigendian=0, step=w * RGB_CHANNELS, data=np.ascontiguousarray(rgb).reshape(-1),
    )


def camera_info_msg(ts: Any, P: np.ndarray, width: int, height: int, stamp_ns: int, frame_id: str) -> Any:
    """CameraInfo of a rectified camera: p = P (3x4), k = P[:3, :3], r = I, no distortion."""
    P = np.asarray(P, dtype=np.float64)
    if P.shape != (3, 4):
        raise ValueError(f"projection must be 3x4, got {P.shape}")
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                      do_rectify=False)
    return ts.types[INFO_MSGTYPE](
        header=header(ts, stamp_ns, frame_id), height=int(height), width=int(width),
        distortion_model="plumb_bob", d=np.zeros(0, dtype=np.float64),
        k=P[:, :3].reshape(-1).copy(), r=np.eye(3).reshape(-1), p=P.reshape(-1).copy(),
        binning_x=0, binning_y=0, roi=roi,
    )


def odometry_msg(ts: Any, T_odom_from_grid: np.ndarray, stamp_ns: int, frame_id: str, child_frame_id: str) -> Any:
    """Odometry with the pose of ``child_frame_id`` in ``frame_id``; zero twist and covariances."""
    T = np.asarray(T_odom_from_grid, dtype=np.float64)
    q = rotation_to_quaternion(T[:3, :3])
    q = q / np.linalg.norm(q)  # poses.txt rotations are printed to ~9 digits: not exactly orthonormal
    g = "geometry_msgs/msg/"
    pose = ts.types[g + "Pose"](position=ts.types[g + "Point"](x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                                orientation=ts.types[g + "Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                                                       w=float(q[3])))
    zero = ts.types[g + "Vector3"](x=0.0, y=0.0, z=0.0)
    return ts.types[ODOM_MSGTYPE](
        header=header(ts, stamp_ns, frame_id), child_frame_id=child_frame_id,
        pose=ts.types[g + "PoseWithCovariance"](pose=pose, covariance=np.zeros(COVARIANCE_SIZE)),
        twist=ts.types[g + "TwistWithCovariance"](twist=ts.types[g + "Twist"](linear=zero, angular=zero),
                                                  covariance=np.zeros(COVARIANCE_SIZE)),
    )


# -- input -------------------------------------------------------------------------
def open_sequence(kitti: Path, sequence: str) -> KittiSequence:
    if not Path(kitti).is_dir():
        raise ConversionError(f"KITTI root not found: {kitti}")
    try:
        seq = KittiSequence(kitti, sequence)
    except FileNotFoundError as exc:
        raise ConversionError(f"{exc} (expected <kitti>/sequences/<sequence>/)") from exc
    for sub in ("image_2", "image_3"):
        if not (seq.path / sub).is_dir():
            raise ConversionError(f"image folder not found: {seq.path / sub}")
    return seq


def select_frames(seq: KittiSequence, start: int, frames: int | None) -> list[str]:
    """Frame stems ``start .. start+frames`` of the sorted left-image list."""
    ids = seq.frame_ids()
    if not ids:
        raise ConversionError(f"no PNG images in {seq.path / 'image_2'}")
    if start < 0 or start >= len(ids):
        raise ConversionError(f"--start {start} is outside the sequence's {len(ids)} frames")
    if frames is not None and frames < 1:
        raise ConversionError(f"--frames must be >= 1, got {frames}")
    return ids[start:] if frames is None else ids[start:start + frames]


def frame_stamps(seq: KittiSequence, frame_ids: list[str], start_time_ns: int) -> list[int]:
    """Header stamps: start time + times.txt line ``int(frame)`` (KITTI numbers frames from 0)."""
    try:
        times = seq.times()
    except (FileNotFoundError, ValueError) as exc:
        raise ConversionError(str(exc)) from exc
    stamps = []
    for fid in frame_ids:
        idx = int(fid)
        if idx >= len(times):
            raise ConversionError(f"{seq.path / 'times.txt'} has {len(times)} lines; frame {fid} has none")
        stamps.append(start_time_ns + seconds_to_ns(times[idx]))
    return stamps


def stereo_projections(seq: KittiSequence) -> tuple[np.ndarray, np.ndarray]:
    try:
        calib = seq.calib()
    except (FileNotFoundError, CalibrationError) as exc:
        raise ConversionError(str(exc)) from exc
    missing = [k for k in ("P2", "P3") if k not in calib]
    if missing:
        raise ConversionError(f"{seq.path / 'calib.txt'} lacks {', '.join(missing)}")
    return calib["P2"], calib["P3"]


def grid_poses(seq: KittiSequence, frame_ids: list[str]) -> np.ndarray | None:
    """T_odom_from_grid (N, 4, 4) of the frames (``KittiSequence.grid_poses``); None when
    the sequence has no poses.txt."""
    if not seq.has_poses():
        return None
    try:
        return seq.grid_poses(frame_ids)
    except (FileNotFoundError, ValueError) as exc:
        raise ConversionError(str(exc)) from exc


def read_pair(seq: KittiSequence, frame: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        left_path, right_path = seq.image_paths(frame)
        return read_rgb(left_path), read_rgb(right_path)
    except (FileNotFoundError, ImageReadError) as exc:
        raise ConversionError(str(exc)) from exc


# -- output ------------------------------------------------------------------------
def open_writer(out: Path, storage: str, compress: bool) -> Any:
    """A rosbags Writer (not yet opened); mcap compresses chunks, sqlite3 messages (zstd)."""
    from rosbags.rosbag2 import Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin

    if storage not in STORAGES:
        raise ConversionError(f"--storage must be one of {STORAGES}, got {storage!r}")
    if out.exists():
        raise ConversionError(f"output {out} exists already; rosbag2 writers never overwrite")
    if not out.parent.is_dir():
        raise ConversionError(f"output folder's parent does not exist: {out.parent}")
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    writer = Writer(out, version=BAG_VERSION, storage_plugin=plugin)
    if compress:
        mode = CompressionMode.STORAGE if storage == "mcap" else CompressionMode.MESSAGE
        writer.set_compression(mode, CompressionFormat.ZSTD)
    return writer


def add_connections(writer: Any, ts: Any, opts: ConvertOptions, odometry: bool = False) -> dict[str, Any]:
    """One connection per stream, keyed like node.stereo_sync's stream names (+ ``odom``)."""
    qos = [offered_qos(opts.qos)]
    t = opts.topics
    spec = {"left_image": (t.left_image, IMAGE_MSGTYPE), "left_info": (t.left_info, INFO_MSGTYPE),
            "right_image": (t.right_image, IMAGE_MSGTYPE), "right_info": (t.right_info, INFO_MSGTYPE)}
    if odometry:
        spec["odom"] = (opts.odom_topic, ODOM_MSGTYPE)
    return {key: writer.add_connection(topic, msgtype, typestore=ts, offered_qos_profiles=qos)
            for key, (topic, msgtype) in spec.items()}


def frame_messages(ts: Any, opts: ConvertOptions, pair: tuple[np.ndarray, np.ndarray],
                   projections: tuple[np.ndarray, np.ndarray], stamp_ns: int) -> list[tuple[str, Any]]:
    """(stream, message) in write order: each image right before its camera_info."""
    out = []
    for side, rgb, P, frame_id in (("left", pair[0], projections[0], opts.left_frame_id),
                                   ("right", pair[1], projections[1], opts.right_frame_id)):
        h, w = rgb.shape[:2]
        out.append((f"{side}_image", image_msg(ts, rgb, stamp_ns, frame_id)))
        out.append((f"{side}_info", camera_info_msg(ts, P, w, h, stamp_ns, frame_id)))
    return out


def validate_options(opts: ConvertOptions) -> None:
    for name in ("left_frame_id", "right_frame_id", "odom_frame_id", "grid_frame_id"):
        value = getattr(opts, name)
        if not value or value.startswith("/"):
            raise ConversionError(f"{name} must be a non-empty tf2 frame name without a leading '/', "
                                  f"got {value!r}")
    if opts.qos not in QOS_CHOICES:
        raise ConversionError(f"--qos must be one of {QOS_CHOICES}, got {opts.qos!r}")
    if opts.odometry and (not opts.odom_topic.startswith("/") or opts.odom_topic.strip() != opts.odom_topic
                          or len(opts.odom_topic) < 2):
        raise ConversionError(f"--odom-topic must be an absolute topic name, got {opts.odom_topic!r}")
    if opts.odometry and opts.odom_frame_id == opts.grid_frame_id:
        raise ConversionError(f"--odom-frame-id and --grid-frame-id are both {opts.odom_frame_id!r}; "
                              "odometry relates two different frames")


def convert(opts: ConvertOptions, progress: bool = True) -> ConvertResult:
    """Write the bag; on any error the partial output folder (created here) is removed."""
    validate_options(opts)
    seq = open_sequence(opts.kitti, opts.sequence)
    frame_ids = select_frames(seq, opts.start, opts.frames)
    stamps = frame_stamps(seq, frame_ids, opts.start_time_ns)
    projections = stereo_projections(seq)
    poses = grid_poses(seq, frame_ids) if opts.odometry else None
    if poses is not None:
        odometry = (f"odometry from poses.txt on {opts.odom_topic} ({opts.odom_frame_id} -> "
                    f"{opts.grid_frame_id})")
    else:
        odometry = "no odometry (--no-odometry)" if not opts.odometry else \
            f"no odometry: {seq.path / 'poses.txt'} does not exist"
    ts = typestore()
    writer = open_writer(Path(opts.out), opts.storage, opts.compress)
    count = 0
    try:
        with writer:
            conns = add_connections(writer, ts, opts, odometry=poses is not None)
            bar = tqdm(zip(frame_ids, stamps), total=len(frame_ids), unit="frame", desc="kitti2bag",
                       disable=not progress)
            for i, (frame, stamp) in enumerate(bar):
                messages = frame_messages(ts, opts, read_pair(seq, frame), projections, stamp)
                if poses is not None:  # first: the pose at an image's stamp is there when the image is
                    messages.insert(0, ("odom", odometry_msg(ts, poses[i], stamp, opts.odom_frame_id,
                                                             opts.grid_frame_id)))
                for stream, msg in messages:
                    writer.write(conns[stream], stamp, ts.serialize_cdr(msg, msg.__msgtype__))
                    count += 1
    except BaseException:
        # rosbags' abort leaves a storage file without index or metadata.yaml: useless
        # to every reader, and it would block a rerun (writers never overwrite).
        shutil.rmtree(opts.out, ignore_errors=True)
        raise
    return ConvertResult(Path(opts.out), len(frame_ids), count, stamps[0], stamps[-1], odometry)


# -- CLI ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="occdepth-kitti2bag", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kitti", required=True, type=Path, help="dataset root holding sequences/<seq>/")
    p.add_argument("--sequence", required=True, help="sequence name, e.g. 00")
    p.add_argument("--out", required=True, type=Path, help="bag folder to create (must not exist)")
    p.add_argument("--storage", choices=STORAGES, default="mcap")
    p.add_argument("--frames", type=int, default=None, help="number of frames (default: all)")
    p.add_argument("--start", type=int, default=0, help="index of the first frame")
    p.add_argument("--start-time", default=DEFAULT_START_TIME,
                   help=f"epoch seconds added to times.txt (default {DEFAULT_START_TIME})")
    p.add_argument("--left-frame-id", default=LEFT_FRAME_ID)
    p.add_argument("--right-frame-id", default=RIGHT_FRAME_ID)
    p.add_argument("--namespace", default="", help="topic namespace, e.g. 'stereo' -> /stereo/left/...")
    p.add_argument("--qos", choices=QOS_CHOICES, default="reliable",
                   help="reliability recorded as the offered QoS (default reliable: matches every subscriber)")
    p.add_argument("--compress", action="store_true",
                   help="zstd: mcap chunk compression, sqlite3 per-message compression")
    p.add_argument("--no-odometry", action="store_true",
                   help="do not write poses.txt as nav_msgs/Odometry (default: written when poses.txt exists)")
    p.add_argument("--odom-topic", default=DEFAULT_ODOM_TOPIC,
                   help=f"odometry topic, absolute (default {DEFAULT_ODOM_TOPIC}; the namespace does not move it)")
    p.add_argument("--odom-frame-id", default=DEFAULT_ODOM_FRAME,
                   help=f"odometry header frame: the first frame's grid frame (default {DEFAULT_ODOM_FRAME})")
    p.add_argument("--grid-frame-id", default=KITTI_GRID_FRAME,
                   help=f"odometry child frame: the frame of calib.txt's Tr, the node's grid frame "
                        f"(default {KITTI_GRID_FRAME})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def options_from_args(args: argparse.Namespace) -> ConvertOptions:
    try:
        start_ns = parse_start_time(args.start_time)
    except ValueError as exc:
        raise ConversionError(str(exc)) from exc
    return ConvertOptions(
        kitti=args.kitti, sequence=args.sequence, out=args.out, storage=args.storage, frames=args.frames,
        start=args.start, start_time_ns=start_ns, left_frame_id=args.left_frame_id,
        right_frame_id=args.right_frame_id, topics=TopicNames(args.namespace), qos=args.qos,
        compress=args.compress, odometry=not args.no_odometry, odom_topic=args.odom_topic,
        odom_frame_id=args.odom_frame_id, grid_frame_id=args.grid_frame_id,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = convert(options_from_args(args), progress=not args.quiet)
    except ConversionError as exc:
        print(f"occdepth-kitti2bag: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {result.frames} frames ({result.messages} messages) to {result.out}; {result.odometry}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
