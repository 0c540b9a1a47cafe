"""occdepth_node: synchronised stereo images (+ camera_info) in, semantic voxels out.

A thin rclpy layer: callbacks only pair messages and hand the newest set on (the latest
pair wins while inference runs; replaced sets count as drops). With ``pipelined`` (the
default) :class:`FramePipeline` runs :class:`FrameProcessor`'s stages on three threads,
so decoding and message building overlap the network; without it one worker runs them
in turn. All logic lives in plain modules.

Outputs, stamped with the left image's stamp, in the ``frame_id`` frame (the grid's frame;
for KITTI the velodyne frame, x forward, y left, z up; ``grid_to_camera`` / the calibration's
Tr is the transform from it into the left rectified optical frame):

- ``~/voxels`` sensor_msgs/PointCloud2: occupied voxel centres with x, y, z, rgb, label
  (and confidence); the primary dense output.
- ``~/voxel_markers`` visualization_msgs/MarkerArray: DELETEALL + one CUBE_LIST per class,
  built only when subscribed, at most ``marker_max_rate_hz``, ``marker_max_voxels`` cubes.
- ``~/occupancy`` nav_msgs/OccupancyGrid: bird's-eye view (-1 unknown, 0 free, 100 occupied
  in the z band), reliable and transient_local.
- ``~/label_grid`` sensor_msgs/Image (``8UC<Z>``): the dense class grid (rows x, columns y, channels z).
- ``/diagnostics``, ``~/debug/processing_time_ms``, ``~/debug/pipeline_latency_ms``.

With ``fuse``, every frame also enters a temporal map (map_fusion.MapFuser) through the pose
at its stamp, from ``odom_topic`` (nav_msgs/Odometry) or TF; the map is published in the
odometry frame: ``~/map/voxels`` (PointCloud2), ``~/map/occupancy`` (OccupancyGrid), both
latched, and ``~/map/voxel_markers`` at the marker rate. A frame without a pose is not fused
(warned, counted in the diagnostics); its own outputs go out as always. ``~/map/clear``
(std_srvs/Trigger) empties the map before the next fused frame.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from dataclasses import fields

import rclpy
import torch
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException, ParameterUninitializedException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks, UnsupportedEventTypeError
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_policy_name_from_kind,
    qos_profile_sensor_data,
    qos_profile_system_default,
)
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from nav_msgs.msg import OccupancyGrid, Odometry
from std_msgs.msg import Float64
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray
from diagnostic_msgs.msg import DiagnosticArray

from ..checkpoint import CheckpointError
from ..classes import load_class_set
from ..fusion.class_prior import resolve_class_prior
from ..geometry.calib import CalibrationError
from ..inference import InputError, StereoInference
from ..model.config import ConfigError
from ..resources import default_model_path, share_dir
from ..runtime import BackendError, host_memory
from occdepth_export.backends import create_backend
from .frames import frames_summary, grid_pose_in_camera
from .input_qos import IMAGE_DEPTH, auto_best_effort
from .latest_slot import LatestSlot
from .map_fusion import CLEARED, FRAME_CHANGED, WRONG_FRAME, FuseResult, MapFuser
from .messages import diagnostic_array, label_grid, make_header, marker_array, occupancy_grid, point_cloud2
from .param_specs import SPECS, ParamSpec, field_kinds
from .params import NodeParams
from .pipeline_stages import FramePipeline, host_threads_for
from .pose_buffer import INVALID, JUMP, MISSING, OUT_OF_ORDER, RESTART, PoseBuffer, PoseLookup, pose_from_odometry
from .processor import FUSION_FAILED, FrameOutputs, FrameProcessor
from .stats import RuntimeStats
from .stereo_sync import INFO_STREAMS, NS_PER_S, StereoSync, stamp_to_ns, stream_queue_sizes
from .stream_watch import ReasonThrottle, StreamWatch
from .voxel_outputs import marker_groups, z_band_layers

try:  # tf2_ros is no PyPI package: publish the grid's static transform where ROS provides it
    from geometry_msgs.msg import TransformStamped
    from tf2_ros import Buffer as TfBuffer
    from tf2_ros import StaticTransformBroadcaster, TransformException, TransformListener
except ImportError:
    StaticTransformBroadcaster = TfBuffer = TransformListener = None
    TransformException = Exception

LOG_THROTTLE_S = 5.0
WORKER_POLL_S = 0.1
INPUT_WATCH_PERIOD_S = 0.5  # AUTO QoS: how often publishers' reliability is looked at
# Sync counters -> the drop reasons of the diagnostics (one each, so nobody has to guess why).
SYNC_DROPS = {"overflow": "overflow", "unmatched": "unmatched", "flushed": "flushed",
              "backwards": "stamp_backwards", "duplicate": "duplicate"}
TOPIC_KEYS = {"left_image": "left_image_topic", "right_image": "right_image_topic",
              "left_info": "left_info_topic", "right_info": "right_info_topic"}
ODOM_DEPTH = 100  # odometry messages queued for the callback (100 Hz odometry over a 1 s stall)


def input_qos_profile(choice: str, best_effort: bool, depth: int) -> QoSProfile:
    """The subscription QoS of one input: ``choice`` is input_qos; ``best_effort`` is AUTO's verdict."""
    choice = choice.upper()
    if choice == "SENSOR_DATA" or (choice == "AUTO" and best_effort):
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(depth, qos_profile_sensor_data.depth),
                          reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
    if choice == "SYSTEM_DEFAULT":
        return qos_profile_system_default
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


PARAM_TYPES = {"bool": Parameter.Type.BOOL, "int": Parameter.Type.INTEGER, "float": Parameter.Type.DOUBLE,
               "str": Parameter.Type.STRING, "int[]": Parameter.Type.INTEGER_ARRAY,
               "float[]": Parameter.Type.DOUBLE_ARRAY, "str[]": Parameter.Type.STRING_ARRAY}
# What a float (array) parameter also accepts at start-up: YAML ``1`` for ``1.0``.
INT_TO_FLOAT = {Parameter.Type.DOUBLE: Parameter.Type.INTEGER, Parameter.Type.DOUBLE_ARRAY: Parameter.Type.INTEGER_ARRAY}


def descriptor(name: str, spec: ParamSpec, kind: str) -> ParameterDescriptor:
    """rcl_interfaces descriptor: description, type, range where one applies, read-only."""
    d = ParameterDescriptor(name=name, type=PARAM_TYPES[kind].value, description=spec.description,
                            read_only=spec.read_only)
    if spec.range is not None:
        lo, hi = spec.range
        if kind == "int":
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
        elif kind == "float":
            d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    if not spec.runtime and not spec.read_only:
        d.additional_constraints = "read at start-up; restart the node to change it"
    return d


def _accept_ints_for_floats(node: Node, kinds: dict[str, str]) -> None:
    """Before declaring: an integer override of a float parameter becomes that float
    (rclpy would refuse it as the wrong type). The overrides are rclpy's own dict."""
    overrides = getattr(node, "_parameter_overrides", None)
    if not isinstance(overrides, dict):
        return
    for name, kind in kinds.items():
        p = overrides.get(name)
        want = PARAM_TYPES[kind]
        if p is not None and kind.endswith("[]") and isinstance(p.value, (list, tuple)) and len(p.value) == 0:
            overrides[name] = Parameter(name, want, [])  # YAML [] has no element type
        elif p is not None and INT_TO_FLOAT.get(want) == p.type_:
            value = [float(v) for v in p.value] if kind == "float[]" else float(p.value)
            overrides[name] = Parameter(name, want, value)


def declare_params(node: Node) -> NodeParams:
    """Declare every NodeParams field with its default and descriptor; read back what was set."""
    defaults, kinds = NodeParams(), field_kinds()
    _accept_ints_for_floats(node, kinds)
    values = {}
    for f in fields(NodeParams):
        default, kind = getattr(defaults, f.name), kinds[f.name]
        desc = descriptor(f.name, SPECS[f.name], kind)
        if isinstance(default, tuple) and not default:  # typed: no default value
            node.declare_parameter(f.name, PARAM_TYPES[kind], desc)
        else:
            node.declare_parameter(f.name, list(default) if isinstance(default, tuple) else default, desc)
        try:
            value = node.get_parameter(f.name).value
        except ParameterUninitializedException:  # typed, no default, not set
            continue
        if value is not None:
            values[f.name] = value
    return NodeParams.from_dict(values).resolved(share_dir())


class OccDepthNode(Node):
    def __init__(self, node_name: str = "occdepth_node", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        params = declare_params(self).validate()
        checkpoint = params.checkpoint or (None if params.preset else str(default_model_path()))
        if params.host_memory_tuning:  # process-wide: before the backend allocates anything
            host_memory.keep_freed_memory()
        backend = create_backend(params.backend, checkpoint, params.preset or None, device=params.device,
                                 threads=params.threads or None, precision=params.precision,
                                 ort_provider=params.ort_provider)
        cfg = backend.cfg
        self.classes = load_class_set(cfg.class_set)
        params.validate(self.classes.names)
        z_band_layers(cfg.grid, params.occupancy_min_z, params.occupancy_max_z)
        self.params = params
        engine = StereoInference(backend, threads=params.threads or None)
        warm_s = engine.warm_up()
        self.processor = FrameProcessor(engine, params, self.classes, on_note=self.get_logger().info)
        self.fuser: MapFuser | None = None
        self._class_prior_line = ""
        self._tf_buffer = None
        if params.fuse:
            if params.use_tf and TfBuffer is None:
                raise ValueError("parameter use_tf needs tf2_ros, which is not installed here (a ROS install "
                                 "provides it; it is no PyPI package): set use_tf false and publish "
                                 f"nav_msgs/Odometry on odom_topic ({params.odom_topic}) instead")
            prior, self._class_prior_line = resolve_class_prior(params.map_class_prior, checkpoint, self.classes)
            self.fuser = MapFuser(params, cfg.grid, self.classes, lookup=self._tf_pose if params.use_tf else None,
                                  class_prior=None if prior is None else prior.probabilities)
            self.processor.fuser = self.fuser
        self._odom_reported = (0, 0, 0)  # (unfused frames, jumps + restarts, out of order) at the last report
        streams = params.sync_streams()
        self.sync = StereoSync(streams, params.sync_tolerance_ns(), stream_queue_sizes(streams, params.queue_size),
                               params.stamp_reset_jump_ns())
        self._throttle = ReasonThrottle(LOG_THROTTLE_S)
        self._sync_seen = self.sync.counters
        self.slot: LatestSlot[tuple] = LatestSlot()
        self.stats = RuntimeStats(params.processing_budget_ms, params.stats_window)
        self._last_marker_time = 0.0
        self._create_io()
        self._tf = StaticTransformBroadcaster(self) if StaticTransformBroadcaster and not params.calib_file else None
        self._tf_parent: str | None = None
        self.add_on_set_parameters_callback(self._on_set_parameters)  # after declaring: runtime changes only
        self._pipeline: FramePipeline | None = None
        self._worker: threading.Thread | None = None
        if params.pipelined:
            host_threads = host_threads_for(backend.name, params.host_threads)
            if host_threads:
                torch.set_num_threads(host_threads)
            self._pipeline = FramePipeline(self.processor, self.slot, self._publish_live, self._reject_error,
                                           self.stats.count_drop, self._wanted_outputs).start()
        else:
            self._worker = threading.Thread(target=self._work, name="occdepth_inference", daemon=True)
            self._worker.start()
        self.get_logger().info(
            f"model {cfg.name} ({checkpoint or 'preset ' + params.preset}) on {backend.describe()}, "
            f"grid {cfg.grid.dims} @ {cfg.grid.voxel_size} m in frame '{params.grid_frame()}', "
            f"calibration from {self._calibration_summary()}; warm-up {warm_s:.2f} s"
        )
        self.get_logger().info(frames_summary(params, self._tf is not None))
        if self.fuser is not None:
            source = self._pose_source()
            if not params.use_tf:
                source += f" (nav_msgs/Odometry, child frame {params.grid_frame()})"
            self.get_logger().info(
                f"fuse: map of {self.fuser.cfg.dims} voxels @ {self.fuser.cfg.voxel_size} m "
                f"({self.fuser.cfg.extent_xy_m:g} m square around the robot) from poses by {source}; "
                f"outputs ~/map/voxels, ~/map/occupancy, ~/map/voxel_markers in the odometry frame; "
                f"{self._class_prior_line}")

    def _calibration_summary(self) -> str:
        fc = self.processor.file_calibration
        if fc is None:
            return "camera_info (its width and height must match the images)"
        h, w = fc.calibration.image_size
        scaling = ("; other sizes of the same aspect ratio get scaled intrinsics" if self.params.scale_intrinsics_to_image
                   else "; images of any other size are refused")
        return f"{self.params.calib_file} for {w}x{h} images (size from {fc.size_source}){scaling}"

    def _on_set_parameters(self, changed: list[Parameter]) -> SetParametersResult:
        """Apply runtime parameters (markers, z band, free classes, publish flags) to the next
        frame after validating them together; refuse start-up ones with the reason."""
        ours = {p.name: p.value for p in changed if p.name in SPECS}
        fixed = sorted(n for n in ours if not SPECS[n].runtime)
        if fixed:
            return SetParametersResult(successful=False, reason=f"{', '.join(fixed)}: read at start-up only; "
                                       "restart the node (or relaunch) to change it")
        if not ours:
            return SetParametersResult(successful=True)
        try:
            new = dataclasses.replace(self.params, **NodeParams.from_dict(ours).changed_fields(ours))
            new.validate(self.classes.names)
            z_band_layers(self.processor.engine.cfg.grid, new.occupancy_min_z, new.occupancy_max_z)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.params = self.processor.params = new
        if self.fuser is not None:  # the map's bird's-eye view follows the z band and free classes
            self.fuser.params = new
        self.get_logger().info("set " + ", ".join(f"{k}={v!r}" for k, v in ours.items()))
        return SetParametersResult(successful=True)

    # -- wiring ---------------------------------------------------------------------
    def _create_io(self) -> None:
        p = self.params
        self._subs: dict[str, tuple[object, bool]] = {}  # stream -> (subscription, best effort)
        for stream in p.sync_streams():
            self._subscribe(stream, best_effort=False)
        self.watch = StreamWatch({s: sub.topic_name for s, (sub, _) in self._subs.items()})
        out = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        grid_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.TRANSIENT_LOCAL if p.occupancy_transient_local
                              else DurabilityPolicy.VOLATILE)
        events = lambda: PublisherEventCallbacks(incompatible_qos=self._on_incompatible_qos)  # noqa: E731
        self.pub_cloud = self.create_publisher(PointCloud2, "~/voxels", out, event_callbacks=events())
        self.pub_markers = self.create_publisher(MarkerArray, "~/voxel_markers", out, event_callbacks=events())
        self.pub_grid = self.create_publisher(OccupancyGrid, "~/occupancy", grid_qos, event_callbacks=events())
        self.pub_labels = self.create_publisher(Image, "~/label_grid", out, event_callbacks=events())
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.pub_time = self.create_publisher(Float64, "~/debug/processing_time_ms", 10)
        self.pub_latency = self.create_publisher(Float64, "~/debug/pipeline_latency_ms", 10)
        self.sub_odom = None
        if p.fuse:
            map_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self.pub_map_cloud = self.create_publisher(PointCloud2, "~/map/voxels", map_qos, event_callbacks=events())
            self.pub_map_grid = self.create_publisher(OccupancyGrid, "~/map/occupancy", map_qos,
                                                      event_callbacks=events())
            self.pub_map_markers = self.create_publisher(MarkerArray, "~/map/voxel_markers", out,
                                                         event_callbacks=events())
            self._last_map_marker_time = 0.0
            self.srv_clear = self.create_service(Trigger, "~/map/clear", self._on_clear_map)
            if p.use_tf:
                self._tf_buffer = TfBuffer()
                self._tf_listener = TransformListener(self._tf_buffer, self, spin_thread=True)
            else:
                odom_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=ODOM_DEPTH,
                                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
                self.sub_odom = self.create_subscription(
                    Odometry, p.odom_topic, self._on_odometry, odom_qos,
                    event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._on_odometry_qos))
        self.create_timer(p.diagnostics_period_s, self._publish_diagnostics)
        self.create_timer(INPUT_WATCH_PERIOD_S, self._watch_inputs)
        self._match_publishers()

    def _subscribe(self, stream: str, best_effort: bool) -> None:
        """(Re)create one input subscription; QoS events are logged and counted."""
        p = self.params
        msg_type = Image if stream.endswith("image") else CameraInfo
        depth = self.sync.queue_sizes[self.sync.streams.index(stream)] if stream in INFO_STREAMS else IMAGE_DEPTH
        qos = input_qos_profile(p.input_qos, best_effort, depth)
        if stream in self._subs:
            self.destroy_subscription(self._subs[stream][0])
        callback = lambda msg, s=stream: self._on_message(s, msg)  # noqa: E731
        try:
            sub = self.create_subscription(msg_type, getattr(p, TOPIC_KEYS[stream]), callback, qos,
                                           event_callbacks=SubscriptionEventCallbacks(
                                               incompatible_qos=lambda e, s=stream: self._on_incompatible_qos(e, s),
                                               message_lost=lambda e, s=stream: self._on_message_lost(s, e)))
        except UnsupportedEventTypeError:  # a middleware without the message-lost event
            sub = self.create_subscription(msg_type, getattr(p, TOPIC_KEYS[stream]), callback, qos,
                                           event_callbacks=SubscriptionEventCallbacks(
                                               incompatible_qos=lambda e, s=stream: self._on_incompatible_qos(e, s)))
        self._subs[stream] = (sub, qos.reliability == ReliabilityPolicy.BEST_EFFORT)

    def _match_publishers(self) -> None:
        """input_qos AUTO: a topic whose publisher offers only best effort is subscribed best effort."""
        if self.params.input_qos.upper() != "AUTO":
            return
        for stream, (sub, best_effort) in list(self._subs.items()):
            if best_effort:
                continue
            topic = self.watch.topics[stream]
            offers = [i.qos_profile.reliability != ReliabilityPolicy.BEST_EFFORT
                      for i in self.get_publishers_info_by_topic(topic)]
            if auto_best_effort(offers):
                self._subscribe(stream, best_effort=True)
                self._warn(f"qos_auto:{stream}", f"a publisher of {topic} offers only best effort: subscribed "
                           "best effort (input_qos AUTO); large best-effort images can be lost in transit, "
                           "publish reliably if the driver allows it")

    def _on_incompatible_qos(self, event, stream: str | None = None) -> None:
        """A peer whose QoS cannot match: counted and logged, except what AUTO resolves itself
        (a best-effort publisher of an input, re-subscribed best effort by _match_publishers)."""
        policy = qos_policy_name_from_kind(event.last_policy_kind)
        if stream is not None and self.params.input_qos.upper() == "AUTO" and policy == "RELIABILITY":
            return
        self.stats.count_event("qos_incompatible")
        where = f"input {self.watch.topics[stream]}" if stream else "an output"
        self._warn(f"qos_incompatible:{stream}", f"incompatible QoS ({policy}) between {where} and a peer: "
                   "no messages flow between them")

    def _on_message_lost(self, stream: str, event) -> None:
        n = int(event.total_count_change)
        if n > 0:
            self.stats.count_drop("lost", n)
            self._warn("lost", f"{n} message(s) on {self.watch.topics[stream]} lost in the middleware")

    def _watch_inputs(self) -> None:
        self._match_publishers()
        for gone in self.watch.missing():
            self._warn(f"missing:{gone.stream}", f"{gone.describe()}: check the topic name/remap, the "
                       "publisher and its QoS (ros2 topic info -v)")

    def _on_message(self, stream: str, msg) -> None:
        self.watch.seen(stream)
        if stream == "left_image":
            self.stats.record_input()
            if self._tf is not None and msg.header.frame_id and msg.header.frame_id != self._tf_parent:
                self._publish_grid_transform(msg.header)
        matched = self.sync.add(stream, stamp_to_ns(msg.header.stamp.sec, msg.header.stamp.nanosec), msg)
        self._account_sync()
        if matched is not None and self.slot.put(matched):
            self.stats.count_drop("busy")

    def _account_sync(self) -> None:
        now = self.sync.counters
        for counter, reason in SYNC_DROPS.items():
            delta = getattr(now, counter) - getattr(self._sync_seen, counter)
            if delta <= 0:
                continue
            self.stats.count_drop(reason, delta)
            if reason == "stamp_backwards":
                self._warn(reason, "input stamps went backwards; message(s) dropped")
            elif reason == "duplicate":
                self._warn(reason, "input stamp repeated on one stream; message(s) dropped")
            elif reason == "unmatched":
                topic = self.watch.topics[now.last_unmatched_stream]
                self._warn(reason, f"a message on {topic} found no partner: stamps "
                           f"{now.last_unmatched_spread_ns / NS_PER_S * 1e3:.3f} ms apart, tolerance "
                           f"{self.sync.tolerance_ns / NS_PER_S * 1e3:g} ms (approximate_sync, sync_tolerance_s)")
        self._sync_seen = now

    def _publish_grid_transform(self, header) -> None:
        """Static TF: the left camera's frame (the image's frame_id) -> the grid frame."""
        t, q = grid_pose_in_camera(self.params.grid_to_camera_matrix())
        tf = TransformStamped()
        tf.header.stamp, tf.header.frame_id = header.stamp, header.frame_id
        tf.child_frame_id = self.params.grid_frame()
        tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = (float(v) for v in t)
        r = tf.transform.rotation
        r.x, r.y, r.z, r.w = (float(v) for v in q)
        self._tf.sendTransform(tf)
        self._tf_parent = header.frame_id
        self.get_logger().info(f"static transform {header.frame_id} -> {tf.child_frame_id} published")

    # -- odometry ---------------------------------------------------------------------
    def _on_odometry(self, msg: Odometry) -> None:
        """Into the map's pose buffer; what it refuses is counted there and warned here."""
        pose, h = msg.pose.pose, msg.header
        result = self.fuser.add_odometry(stamp_to_ns(h.stamp.sec, h.stamp.nanosec), h.frame_id, msg.child_frame_id,
                                         (pose.position.x, pose.position.y, pose.position.z),
                                         (pose.orientation.x, pose.orientation.y, pose.orientation.z,
                                          pose.orientation.w))
        topic = self.sub_odom.topic_name
        if result == WRONG_FRAME:
            self._warn("odom_wrong_frame", f"odometry on {topic} is for child frame {msg.child_frame_id!r}, not the "
                       f"grid frame {self.params.grid_frame()!r}: ignored (publish the grid frame's odometry, or "
                       "use_tf to look the grid frame up through TF)")
        elif result == FRAME_CHANGED:
            self._warn("odom_frame_changed", f"odometry on {topic} is in frame {h.frame_id!r}, but the map is kept "
                       f"in {self.fuser.map_frame!r} (its first message's): ignored")
        elif result == INVALID:
            self._warn("odom_invalid", f"odometry on {topic} with a non-finite pose, a quaternion of norm "
                       "far from 1 or a zero stamp: ignored")
        elif result == OUT_OF_ORDER:
            self._warn("odom_out_of_order", f"odometry on {topic} not newer than the previous message: dropped")
        elif result in (JUMP, RESTART):
            self.get_logger().info(f"{self.fuser.buffer.counters.last_restart} on {topic}: the map resets "
                                   "before the next frame")

    def _on_odometry_qos(self, event) -> None:
        self.stats.count_event("qos_incompatible")
        policy = qos_policy_name_from_kind(event.last_policy_kind)
        self._warn("qos_incompatible:odom", f"incompatible QoS ({policy}) between the odometry subscription "
                   f"{self.sub_odom.topic_name} (reliable, volatile) and a publisher: no odometry flows, "
                   "nothing is fused")

    def _tf_pose(self, buffer: PoseBuffer, stamp_ns: int) -> PoseLookup:
        """use_tf: odom_frame <- grid frame at the image stamp (waiting up to odom_wait_s),
        through the pose buffer (jump detection, counters)."""
        from rclpy.duration import Duration
        from rclpy.time import Time

        p = self.params
        try:
            tf = self._tf_buffer.lookup_transform(p.odom_frame, p.grid_frame(), Time(nanoseconds=stamp_ns),
                                                  timeout=Duration(nanoseconds=int(p.odom_wait_s * NS_PER_S)))
        except TransformException as exc:
            buffer.counters.missing += 1
            return PoseLookup(MISSING, None, buffer.generation, f"TF {p.odom_frame} <- {p.grid_frame()}: {exc}")
        t, r = tf.transform.translation, tf.transform.rotation
        T = pose_from_odometry((t.x, t.y, t.z), (r.x, r.y, r.z, r.w))
        if T is None:
            buffer.counters.missing += 1
            return PoseLookup(MISSING, None, buffer.generation, "TF transform with an invalid rotation")
        self.fuser.add_pose(stamp_ns, T)
        return buffer.pose_at(stamp_ns)

    # -- worker ---------------------------------------------------------------------
    def _work(self) -> None:
        while not self.slot.closed:
            msgs = self.slot.take(timeout=WORKER_POLL_S)
            if msgs is None:
                continue
            try:
                result = self.processor.process(msgs, self._wanted_outputs())
            except Exception as exc:  # noqa: BLE001 - keep the node alive, say why
                self._reject_error(exc)
                continue
            self._publish_live(result)

    def _publish_live(self, result: FrameOutputs) -> None:
        """Publish, unless the node is shutting down: a signal invalidates the context before
        the stages stop, and a publish then must end quietly, not in a traceback."""
        try:
            self._publish(result)
        except Exception:  # noqa: BLE001 - publishing while shutting down
            if self.slot.closed or not self.context.ok():
                return
            raise

    def _reject_error(self, exc: BaseException) -> None:
        """A frame that failed in a stage: counted by reason and named in a log line."""
        if isinstance(exc, InputError):
            self._reject("bad_input", f"bad input, frame skipped: {exc}", _first_words(exc))
        elif isinstance(exc, CalibrationError):
            self._reject("calibration", f"calibration problem, frame skipped: {exc}", _first_words(exc))
        else:
            self._reject("bad_input", f"frame failed ({type(exc).__name__}: {exc})", type(exc).__name__)

    def _markers_due(self, publisher, last_time: float) -> bool:
        """Markers (per frame or of the map) are subscribed and due at marker_max_rate_hz."""
        p = self.params
        return (p.marker_max_rate_hz > 0 and publisher.get_subscription_count() > 0
                and time.monotonic() - last_time >= 1.0 / p.marker_max_rate_hz)

    def _wanted_outputs(self) -> frozenset[str]:
        """No work for outputs nobody subscribes to. The occupancy grid is always made:
        it is latched (transient local), so a late subscriber gets the latest one."""
        wanted = {"bev"}
        if self.pub_cloud.get_subscription_count() > 0:
            wanted.add("cloud")
        if self._markers_due(self.pub_markers, self._last_marker_time):
            wanted.add("voxels")
        if self.fuser is not None:
            if self.pub_map_cloud.get_subscription_count() > 0:
                wanted.add("map_cloud")
            if self._markers_due(self.pub_map_markers, self._last_map_marker_time):
                wanted.add("map_voxels")
        return frozenset(wanted)

    def _reject(self, reason: str, message: str, detail: str) -> None:
        self.stats.count_drop(reason, detail=message)
        self._warn(f"{reason}:{detail}", message)

    def _warn(self, key: str, message: str) -> None:
        """A warning throttled per ``key`` (one per reason), so a second reason is never hidden;
        ``warning`` on Jazzy and newer, ``warn`` on Humble."""
        if self._throttle.allow(key):
            logger = self.get_logger()
            (getattr(logger, "warning", None) or logger.warn)(message)

    def _publish(self, r: FrameOutputs) -> None:
        p = self.params
        header = make_header(r.stamp_ns, p.grid_frame())
        if r.cloud is not None:
            self.pub_cloud.publish(point_cloud2(r.cloud, header))
        if p.publish_label_grid and self.pub_labels.get_subscription_count() > 0:
            self.pub_labels.publish(label_grid(r.prediction.labels, header))
        self.pub_grid.publish(occupancy_grid(r.bev, header))
        if r.voxels is not None and self._markers_due(self.pub_markers, self._last_marker_time):
            groups = marker_groups(r.voxels, self.classes, max_voxels=p.marker_max_voxels)
            self.pub_markers.publish(marker_array(groups, header, self.processor.engine.cfg.grid.voxel_size))
            self._last_marker_time = time.monotonic()
        if r.fusion is not None:
            self._publish_map(r.fusion)
        latency_s = self.get_clock().now().nanoseconds * 1e-9 - r.stamp_ns * 1e-9
        self.stats.record_processed(r.processing_s, latency_s)
        self.pub_time.publish(Float64(data=r.processing_s * 1e3))
        self.pub_latency.publish(Float64(data=latency_s * 1e3))

    def _on_clear_map(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """~/map/clear: the map empties before the next fused frame (the fusing thread owns
        it), and its latched outputs follow with that frame."""
        self.fuser.request_clear()
        response.success = True
        response.message = "the map clears before the next fused frame"
        self.get_logger().info(f"fuse: {response.message} (~/map/clear)")
        return response

    def _pose_source(self) -> str:
        """Where the map's poses come from, as log lines and diagnostics name it."""
        p = self.params
        return f"TF {p.odom_frame} <- {p.grid_frame()}" if p.use_tf else f"odometry topic {self.sub_odom.topic_name}"

    def _publish_map(self, f: FuseResult) -> None:
        """The map's outputs of a fused frame; a frame that could not be fused is named."""
        if f.status == MISSING:
            self._warn("odom_missing", f"fuse: no pose for a frame ({f.reason}; {self._pose_source()}): not fused, the "
                       "single-frame outputs go on")
            return
        if f.status == FUSION_FAILED:
            self._warn("fusion_failed", f"fuse: fusing a frame failed ({f.reason}); the single-frame outputs go on")
            return
        if f.reset == CLEARED:
            self.get_logger().info("fuse: map cleared on request")
        elif f.reset:
            self._warn("map_reset", f"fuse: map reset ({f.reset}; {self._pose_source()})")
        m = f.outputs
        header = make_header(m.stamp_ns, m.frame_id)
        if m.cloud is not None:
            self.pub_map_cloud.publish(point_cloud2(m.cloud, header))
        self.pub_map_grid.publish(occupancy_grid(m.bev, header))
        if m.voxels is not None and self._markers_due(self.pub_map_markers, self._last_map_marker_time):
            groups = marker_groups(m.voxels, self.classes, max_voxels=self.params.marker_max_voxels, centre=m.robot_xyz)
            self.pub_map_markers.publish(marker_array(groups, header, self.fuser.cfg.voxel_size))
            self._last_map_marker_time = time.monotonic()

    def _fusion_diagnostics(self) -> tuple[list[str], dict[str, str]]:
        """Problems since the last report (frames without a pose, map resets, odometry out
        of order) and the fusion counters, for /diagnostics."""
        if self.fuser is None:
            return [], {}
        c, b = self.fuser.counters, self.fuser.buffer.counters
        now = (c.frames_unfused, b.jumps + b.restarts, b.out_of_order)
        new = [n - old for n, old in zip(now, self._odom_reported)]
        self._odom_reported = now
        source = self._pose_source()
        problems = []
        if new[0]:
            problems.append(f"{new[0]} frame(s) not fused: no pose from {source} ({c.last_missing})")
        if new[1]:
            problems.append(f"{new[1]} map reset(s): {b.last_restart}")
        if new[2]:
            problems.append(f"{new[2]} odometry message(s) out of order on {source}")
        values = {"fuse_frames_fused": str(c.frames_fused), "fuse_frames_unfused": str(c.frames_unfused),
                  "fuse_map_resets": str(self.fuser.map.resets), "fuse_map_clears": str(c.clears),
                  "odom_received": str(b.received),
                  "odom_out_of_order": str(b.out_of_order), "odom_jumps": str(b.jumps),
                  "odom_restarts": str(b.restarts), "odom_late": str(b.late), "odom_missing": str(b.missing),
                  "odom_invalid": str(b.invalid), "odom_wrong_frame": str(c.wrong_frame + c.frame_changed),
                  "fuse_last_ms": f"{c.last_fuse_ms:.1f}", "fuse_class_prior": self._class_prior_line,
                  "fuse_map_mib": f"{self.fuser.map.memory_bytes() / 2**20:.1f}",
                  "fuse_class_voxels": str(self.fuser.map.class_voxels())}
        if c.last_missing:
            values["last_odom_missing"] = c.last_missing
        return problems, values

    def _publish_diagnostics(self) -> None:
        header = make_header(self.get_clock().now().nanoseconds, "")
        queues = {f"queue_{s}": str(n) for s, n in self.sync.queue_lengths().items()}
        ages = {f"last_{s}_s": age for s, age in self.watch.ages().items()}
        problems = [gone.describe() for gone in self.watch.missing()]
        fusion_problems, fusion_values = self._fusion_diagnostics()
        report = self.stats.report(problems=problems + fusion_problems,
                                   extra_values={**queues, **ages, **fusion_values})
        self.pub_diag.publish(diagnostic_array(report, header, f"{self.get_name()}: pipeline",
                                               hardware_id=self.get_fully_qualified_name()))

    def destroy_node(self) -> None:
        self.slot.close()
        if self._pipeline is not None:
            self._pipeline.close()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
        super().destroy_node()


def _first_words(exc: Exception, n: int = 4) -> str:
    """A throttle key per kind of reject (its message's first words, without the numbers)."""
    return " ".join(w for w in str(exc).split()[:n] if not any(c.isdigit() for c in w))


# Exit codes (docs/NODE.md): 0 = stopped by SIGINT/SIGTERM or shutdown, 2 = bad
# arguments, parameters, model or calibration (one line on stderr says which).
EXIT_OK, EXIT_CONFIG = 0, 2
STARTUP_ERRORS = (ValueError, ParameterException, CheckpointError, CalibrationError, ConfigError, BackendError)


def main(argv: list[str] | None = None) -> int:
    try:
        rclpy.init(args=argv)
    except RuntimeError as exc:  # rclpy's RCLError: an unparsable --ros-args (e.g. '-p x:=')
        print(f"occdepth_node: bad ROS arguments: {str(exc).split('. Error:')[0]}", file=sys.stderr)
        return EXIT_CONFIG
    node = None
    try:
        node = OccDepthNode()
        rclpy.spin(node)
    except STARTUP_ERRORS as exc:
        print(f"occdepth_node: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():  # a real failure: let it show
            raise
        # else a signal shut the context down while the node was starting: a clean stop
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
