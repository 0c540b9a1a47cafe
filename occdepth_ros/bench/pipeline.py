"""Per-stage latency of one stereo frame through the node's processing, per backend.

The stages are the node's own calls (FrameProcessor.process and OccDepthNode._publish),
taken apart so each can be timed. For the eager torch backend the network is timed in
its parts (2D net, depth net, lift, 3D net: OccDepth.forward's calls); for any other
backend only its whole ``forward`` can be timed, as one "network" stage. Each backend
is also timed through its ``forward`` (``network_forward``), which is what backends are
compared on. A staged run is checked once against the backend's own forward and
StereoInference.predict, so the decomposition cannot drift from what the node runs.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..classes import load_class_set
from ..inference import StereoInference
from ..node.image_decode import decode_image
from ..node.voxel_outputs import bev_occupancy, marker_groups, occupied_voxels, voxel_cloud
from .frames import StereoFrame
from .measure import Stat, memory_probe, time_ms

NETWORK, HOST = "network", "host"
# Rate-limited side outputs (RViz markers: at most marker_max_rate_hz, only with a
# subscriber): timed, shown, but not part of every frame's total.
PERIODIC = "periodic"
# Every stage a staged (torch) run reports, in order; opaque backends report NETWORK_STAGE
# in place of the four network stages.
TORCH_NETWORK_STAGES = ("2D net", "depth net", "lift", "3D net")
NETWORK_STAGE = "network"
HOST_BEFORE = ("decode", "preprocess")
HOST_AFTER = ("postprocess", "message build", "markers", "publish")
STAGES = HOST_BEFORE + TORCH_NETWORK_STAGES + HOST_AFTER
# Which runtime backends are benchmarked: adding one is one name here (and in
# occdepth_export.backends.create_backend).
BENCH_BACKENDS = ("torch", "onnxruntime", "tensorrt")
BENCH_TOPIC_PREFIX = "occdepth_bench"
DISCOVERY_TIMEOUT_S = 10.0
STAMP_NS = 1_000_000_000


@dataclass
class Stage:
    name: str
    kind: str
    fn: Callable[[dict[str, Any]], None]  # reads and writes the frame's state
    settle: Callable[[], None] | None = None  # untimed, after the stage (e.g. let DDS deliver)


@dataclass
class PipelineResult:
    preset: str
    backend: str
    status: str = "ok"  # "ok", or "n/a" with reason
    reason: str = ""
    describe: str = ""
    stages: list[Stat] = field(default_factory=list)
    network_forward: Stat | None = None
    occupied_voxels: int | None = None
    check: str = ""

    def timed(self) -> list[Stat]:
        return [s for s in self.stages if s.samples_ms]

    @property
    def total_p50(self) -> float:
        """Every frame's stages; periodic ones (markers) excluded."""
        return float(sum(s.p50 for s in self.timed() if s.kind != PERIODIC))

    @property
    def periodic_p50(self) -> float:
        return float(sum(s.p50 for s in self.timed() if s.kind == PERIODIC))

    @property
    def network_p50(self) -> float:
        return float(sum(s.p50 for s in self.timed() if s.kind == NETWORK))

    @property
    def non_network_share(self) -> float | None:
        total = self.total_p50
        return None if total <= 0 else (total - self.network_p50) / total

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset, "backend": self.backend, "status": self.status, "reason": self.reason,
            "describe": self.describe, "stages": [s.to_dict() for s in self.stages],
            "network_forward": self.network_forward.to_dict() if self.network_forward else None,
            "total_p50_ms": round(self.total_p50, 3), "network_p50_ms": round(self.network_p50, 3),
            "non_network_share": None if self.non_network_share is None else round(self.non_network_share, 4),
            "occupied_voxels": self.occupied_voxels, "check": self.check,
        }


# -- ROS side (optional) --------------------------------------------------------------------
def ros_unavailable_reason() -> str | None:
    try:
        importlib.import_module("rclpy")
        importlib.import_module(f"{__package__.rsplit('.', 1)[0]}.node.messages")  # the ROS message types
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken ROS install
        return f"rclpy/ROS messages not importable ({type(exc).__name__}: {exc})"
    return None


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class LoopbackPublisher:
    """The node's output publishers (same QoS) and one subscriber per topic, on a private
    DDS domain restricted to this host."""

    def __init__(self, domain_id: int) -> None:
        import rclpy
        from nav_msgs.msg import OccupancyGrid
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image, PointCloud2
        from visualization_msgs.msg import MarkerArray

        self.rclpy = rclpy
        self.context = rclpy.Context()
        with _env(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOCALHOST_ONLY="1"):
            rclpy.init(context=self.context, domain_id=domain_id)
            self.node = rclpy.create_node("occdepth_bench", context=self.context)
            self.sink = rclpy.create_node("occdepth_bench_subscriber", context=self.context)
        out = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)  # as OccDepthNode
        grid = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
        types = {"voxels": (PointCloud2, out), "label_grid": (Image, out),
                 "occupancy": (OccupancyGrid, grid), "voxel_markers": (MarkerArray, out)}
        self.received = {name: 0 for name in types}
        self.pubs = {}
        for name, (msg_type, qos) in types.items():
            topic = f"{BENCH_TOPIC_PREFIX}/{name}"
            self.pubs[name] = self.node.create_publisher(msg_type, topic, qos)
            self.sink.create_subscription(msg_type, topic, lambda _msg, n=name: self._count(n), qos)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.sink)
        deadline = time.monotonic() + DISCOVERY_TIMEOUT_S
        while any(p.get_subscription_count() < 1 for p in self.pubs.values()):
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"bench subscriber not matched within {DISCOVERY_TIMEOUT_S} s")
            self.executor.spin_once(timeout_sec=0.05)

    def _count(self, name: str) -> None:
        self.received[name] += 1

    def publish(self, name: str, msg: Any) -> None:
        self.pubs[name].publish(msg)

    def drain(self) -> None:
        """Let the subscriber take what was published (untimed)."""
        for _ in range(len(self.pubs) * 2):
            self.executor.spin_once(timeout_sec=0.01)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.sink.destroy_node()
        self.rclpy.shutdown(context=self.context)


# -- stages ------------------------------------------------------------------------------------
def _torch_network_stages(model: torch.nn.Module, lift: Any) -> list[Stage]:
    """OccDepth.forward taken apart (same calls, same order)."""
    cfg = model.cfg

    def net2d(st: dict[str, Any]) -> None:
        with torch.inference_mode():
            st["feats"] = model.image_features(st["images"])

    def depth(st: dict[str, Any]) -> None:
        st["depth_prob"] = None
        if cfg.depth.enabled:
            with torch.inference_mode():
                f = st["feats"][cfg.depth.feature_scale]
                b, v = f.shape[:2]
                logits = model.flosp_depth(f.flatten(0, 1), lift.pixel_size.reshape(b * v, 1))
                st["depth_prob"] = logits.unflatten(0, (b, v)).softmax(dim=2)

    def lift_stage(st: dict[str, Any]) -> None:
        with torch.inference_mode():
            st["x3d"] = model.lift_op(
                [st["feats"][s] for s in cfg.sfa_scales], lift.pixel_index, cfg.grid.feature_dims,
                depth_prob=st["depth_prob"], depth_coords=lift.depth_coords if cfg.depth.enabled else None,
                gate_scale=cfg.depth.gate_scale, fusion=cfg.sfa_fusion)

    def net3d(st: dict[str, Any]) -> None:
        with torch.inference_mode():
            st["logits"] = model.net_3d_decoder(st["x3d"])["ssc_logit"].float().cpu()

    fns = (net2d, depth, lift_stage, net3d)
    return [Stage(name, NETWORK, fn) for name, fn in zip(TORCH_NETWORK_STAGES, fns)]


def build_stages(engine: StereoInference, frame: StereoFrame, lift: Any, staged_model: torch.nn.Module | None,
                 publisher: LoopbackPublisher | None, ros_reason: str | None) -> list[Stage]:
    """The frame's stages; ``staged_model``: time the torch network in its parts."""
    from ..node.params import NodeParams

    cfg = engine.cfg
    classes = load_class_set(cfg.class_set)
    params = NodeParams()
    left_msg, right_msg = frame.messages()

    def decode(st: dict[str, Any]) -> None:
        st["left"] = decode_image(left_msg, "left image")
        st["right"] = decode_image(right_msg, "right image")

    def preprocess(st: dict[str, Any]) -> None:
        engine.set_calibration(frame.calibration)  # cached after the first frame, as in the node
        st["images"] = engine.prepare([st["left"], st["right"]])

    def network(st: dict[str, Any]) -> None:
        st["logits"] = engine.backend.forward(st["images"], lift)

    def postprocess(st: dict[str, Any]) -> None:  # StereoInference.predict after the network
        st["pred"] = engine.postprocess(st["logits"], with_confidence=params.publish_confidence)

    def message_build(st: dict[str, Any]) -> None:  # FrameProcessor.process + OccDepthNode._publish
        pred = st["pred"]
        st["voxels"] = occupied_voxels(pred.labels, cfg.grid, classes,
                                       confidence=pred.confidence if params.publish_confidence else None,
                                       seen=pred.seen, include_unseen=params.publish_unseen_voxels)
        cloud = voxel_cloud(st["voxels"], classes, with_confidence=params.publish_confidence)
        bev = bev_occupancy(pred.labels, cfg.grid, classes, params.occupancy_min_z, params.occupancy_max_z,
                            seen=pred.seen, free_classes=params.free_classes)
        if ros_reason is None:
            from ..node.messages import label_grid, make_header, occupancy_grid, point_cloud2

            st["header"] = make_header(STAMP_NS, params.frame_id)
            st["msgs"] = {"voxels": point_cloud2(cloud, st["header"]), "label_grid": label_grid(pred.labels, st["header"]),
                          "occupancy": occupancy_grid(bev, st["header"])}

    def markers(st: dict[str, Any]) -> None:  # at most marker_max_rate_hz in the node: build + publish
        from ..node.messages import marker_array

        groups = marker_groups(st["voxels"], classes, max_voxels=params.marker_max_voxels)
        msg = marker_array(groups, st["header"], cfg.grid.voxel_size)
        if publisher is not None:
            publisher.publish("voxel_markers", msg)

    def publish(st: dict[str, Any]) -> None:
        for name, msg in st["msgs"].items():
            publisher.publish(name, msg)

    stages = [Stage("decode", HOST, decode), Stage("preprocess", HOST, preprocess)]
    if staged_model is not None:
        stages += _torch_network_stages(staged_model, lift)
    else:
        stages.append(Stage(NETWORK_STAGE, NETWORK, network))
    stages += [Stage("postprocess", HOST, postprocess), Stage("message build", HOST, message_build)]
    if ros_reason is None:
        stages.append(Stage("markers", PERIODIC, markers, settle=publisher.drain if publisher is not None else None))
    if publisher is not None:
        stages.append(Stage("publish", HOST, publish, settle=publisher.drain))
    return stages


def run_stages(stages: list[Stage], warmup: int, iters: int, budget_s: float | None, progress: bool,
               label: str) -> tuple[list[Stat], dict[str, Any]]:
    """Every stage in order per frame; warm-up frames untimed; then one frame with each
    stage under the memory probe. Returns the stats and the last frame's state."""
    stats = [Stat(s.name, kind=s.kind) for s in stages]
    start = time.perf_counter()
    state: dict[str, Any] = {}
    with tqdm(total=warmup + iters, desc=label, unit="frame", disable=not progress, leave=False) as bar:
        for i in range(warmup + iters):
            state = {}
            for stage, stat in zip(stages, stats):
                ms, _ = time_ms(lambda: stage.fn(state))
                if i >= warmup:
                    stat.samples_ms.append(ms)
                if stage.settle is not None:
                    stage.settle()
            bar.update()
            timed = i + 1 - warmup
            if budget_s is not None and timed >= 2 and time.perf_counter() - start > budget_s:
                break
    state = {}
    for stage, stat in zip(stages, stats):
        with memory_probe() as probe:
            stage.fn(state)
        stat.py_peak_mb, stat.rss_peak_mb = probe.py_peak_mb, probe.rss_peak_mb
        if stage.settle is not None:
            stage.settle()
    return stats, state


def check_staged(engine: StereoInference, frame: StereoFrame, lift: Any, state: dict[str, Any]) -> str:
    """The staged logits and labels against the backend's forward and predict()."""
    logits = engine.backend.forward(state["images"], lift)
    scale = float(logits.abs().max())
    err = float((logits - state["logits"]).abs().max()) / max(scale, 1e-12)
    labels = engine.predict([state["left"], state["right"]]).labels
    same = float(np.mean(labels == state["pred"].labels))
    ok = err < 1e-4 and same > 0.9999
    return f"{'ok' if ok else 'MISMATCH'}: staged logits max rel err {err:.1e}, labels equal {same:.4%}"


def bench_backend(name: str, preset: str, frame: StereoFrame, warmup: int, iters: int, budget_s: float | None,
                  publisher: LoopbackPublisher | None, ros_reason: str | None, threads: int | None,
                  progress: bool, ort_provider: str = "") -> PipelineResult:
    """One (preset, backend): the staged frame, then the backend's forward on its own."""
    from occdepth_export.backends import create_backend

    result = PipelineResult(preset=preset, backend=name)
    try:
        backend = create_backend(name, preset=None if preset == "default" else preset, threads=threads,
                                 precision="fp32", ort_provider=ort_provider)
    except Exception as exc:  # noqa: BLE001 - BackendError, a missing package, a failed export
        result.status, result.reason = "n/a", f"{type(exc).__name__}: {exc}"
        return result
    result.describe = backend.describe()
    engine = StereoInference(backend)
    engine.set_calibration(frame.calibration)
    lift = engine.rig_lookup.to_torch()
    staged = getattr(backend, "model", None) if name == "torch" else None
    stages = build_stages(engine, frame, lift, staged, publisher, ros_reason)
    result.stages, state = run_stages(stages, warmup, iters, budget_s, progress, f"{preset}/{name}")
    result.occupied_voxels = len(state["voxels"]) if "voxels" in state else None
    result.check = check_staged(engine, frame, lift, state) if staged is not None else "n/a (not staged)"
    if ros_reason is not None:
        result.stages += [Stat(n, kind=HOST, note=f"skipped: {ros_reason}") for n in ("markers", "publish")]
    elif publisher is None:
        result.stages.append(Stat("publish", kind=HOST, note="skipped: --no-publish"))
    images = state["images"]
    fwd = Stage("network_forward", NETWORK, lambda st: st.update(out=backend.forward(images, lift)))
    (result.network_forward,), _ = run_stages([fwd], warmup, iters, budget_s, progress, f"{preset}/{name} forward")
    return result
