"""Node delivery: does every stereo pair sent to the fully default node arrive, and is it
either processed or counted as busy (replaced by a newer pair while inference ran)?

A KITTI-size (1241 x 376 rgb8) bag is written with occdepth-kitti2bag's message builders
(synthetic street frames, both images and camera_infos, recorded reliable, 10 Hz stamps) and
played with occdepth-play's BagPlayer at several pair rates into ``occdepth_node`` started as
its own process with no parameters at all (what ``ros2 run occdepth_ros occdepth_node``
does). The node's cumulative /diagnostics counters, read before and after each rate, say
what became of the pairs: processed, busy, another counted drop, or lost (never counted).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SIZE_HW = (376, 1241)  # KITTI odometry 00-02, the default calibration's image size
BAG_PERIOD_NS = 100_000_000  # 10 Hz stamps; a rate of R Hz plays the bag at R / 10
RENDERED_FRAMES = 4  # distinct synthetic pairs, cycled through the bag
DEFAULT_RATES_HZ = (1.0, 2.0, 10.0)
DEFAULT_PAIRS = 30
NODE_START_TIMEOUT_S = 600.0  # torch import, model load, a first ONNX export (backend auto)
SETTLE_S = 5.0  # counters unchanged this long after the last pair: the node is done
SETTLE_TIMEOUT_S = 300.0
TARGET_SHARE = 0.95
NODE_STATUS = "occdepth_node: pipeline"
DROP_PREFIX = "dropped_"
IMAGE_TOPICS = ("/left/image_rect", "/right/image_rect")
MATCH_TIMEOUT_S = 60.0


@dataclass
class DeliveryRow:
    rate_hz: float
    sent: int
    processed: int
    busy: int
    other_drops: dict[str, int] = field(default_factory=dict)  # counted drops besides busy, by reason
    lost: int = 0  # sent but never counted anywhere
    wall_s: float = 0.0

    @property
    def accounted_share(self) -> float:
        """(processed + busy) / sent: the delivery target's measure."""
        return (self.processed + self.busy) / self.sent if self.sent else 0.0


def _say(msg: str) -> None:
    print(f"[occdepth-bench delivery] {msg}", file=sys.stderr, flush=True)


# -- the bag ------------------------------------------------------------------------
def write_bag(folder: Path, pairs: int, seed: int = 11) -> Path:
    """A 10 Hz KITTI-size bag of ``pairs`` stereo pairs (images + camera_infos), recorded reliable."""
    from ..data.kitti_odometry import KittiSequence
    from ..data.synth.cli import main as synth_main
    from ..tools.kitti2bag import (ConvertOptions, add_connections, frame_messages, open_writer, read_pair,
                                   stereo_projections, typestore)

    h, w = SIZE_HW
    synth = folder / "synth"
    if synth_main(["--out", str(synth), "--sequences", "00", "--frames", str(RENDERED_FRAMES), "--seed", str(seed),
                   "--voxel-every", "0", "--image-size", str(h), str(w)]) != 0:
        raise RuntimeError("occdepth-synth failed")
    seq = KittiSequence(synth, "00")
    rendered = [read_pair(seq, f) for f in seq.frame_ids()[:RENDERED_FRAMES]]
    opts = ConvertOptions(kitti=synth, sequence="00", out=folder / "bag")
    ts, projections = typestore(), stereo_projections(seq)
    with open_writer(opts.out, opts.storage, opts.compress) as writer:
        conns = add_connections(writer, ts, opts)
        for i in range(pairs):
            stamp = opts.start_time_ns + i * BAG_PERIOD_NS
            for stream, msg in frame_messages(ts, opts, rendered[i % len(rendered)], projections, stamp):
                writer.write(conns[stream], stamp, ts.serialize_cdr(msg, msg.__msgtype__))
    return opts.out


# -- the node, watched ----------------------------------------------------------------
class DiagnosticsWatch:
    """The node's latest cumulative counters from /diagnostics, and a player node, on one domain."""

    def __init__(self, domain_id: int) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("occdepth_delivery_bench", context=self.context)
        self.values: dict[str, str] = {}
        self.reports = 0
        self._lock = threading.Lock()
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._keep, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _keep(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.endswith(NODE_STATUS):
                with self._lock:
                    self.values = {kv.key: kv.value for kv in status.values}
                    self.reports += 1

    def counters(self) -> dict[str, int]:
        """frames_processed and every dropped_* counter (cumulative since the node started)."""
        with self._lock:
            return {k: int(v) for k, v in self.values.items() if k == "frames_processed" or k.startswith(DROP_PREFIX)}

    def wait_ready(self, topics: list[str], timeout_s: float, node_proc: subprocess.Popen) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if node_proc.poll() is not None:
                raise RuntimeError(f"occdepth_node exited with {node_proc.returncode} before it was ready")
            with self._lock:
                reported = self.reports > 0
            if reported and all(self.node.count_subscribers(t) > 0 for t in topics):
                return
            time.sleep(0.2)
        raise RuntimeError(f"occdepth_node not subscribed to {topics} within {timeout_s:.0f} s")

    def wait_settled(self, expected: int, before: dict[str, int]) -> dict[str, int]:
        """Counters once every pair is accounted for, or once they stopped changing."""
        end = time.monotonic() + SETTLE_TIMEOUT_S
        last, since = None, time.monotonic()
        while time.monotonic() < end:
            now = self.counters()
            delta = sum(now.get(k, 0) - before.get(k, 0) for k in now)
            if delta >= expected and now == last:
                return now
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= SETTLE_S + 2.0:
                return now
            time.sleep(0.25)
        return self.counters()

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


def start_node(domain_id: int, log_path: Path) -> subprocess.Popen:
    """``occdepth_node`` with no parameters, in its own process (and process group)."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), PYTHONUNBUFFERED="1")
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    log = log_path.open("w")
    return subprocess.Popen([sys.executable, "-m", "occdepth_ros.node.ros_node"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop_node(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


def _wait_matched(publishers: list[Any], node_proc: subprocess.Popen) -> None:
    """Every image publisher matched by the node: a pair sent before that is never delivered
    (volatile), and would show up as an unmatched partner, which is not what is measured."""
    end = time.monotonic() + MATCH_TIMEOUT_S
    while not all(p.get_subscription_count() > 0 for p in publishers):
        if time.monotonic() > end or node_proc.poll() is not None:
            raise RuntimeError("occdepth_node did not match the player's image publishers")
        time.sleep(0.1)
    time.sleep(0.5)  # both sides' matching is not simultaneous: let the node's side finish too


def _row(rate: float, sent: int, before: dict[str, int], after: dict[str, int], wall_s: float) -> DeliveryRow:
    d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    processed, busy = d.pop("frames_processed", 0), d.pop(f"{DROP_PREFIX}busy", 0)
    other = {k[len(DROP_PREFIX):]: v for k, v in d.items() if v}
    lost = max(0, sent - processed - busy - sum(other.values()))
    return DeliveryRow(rate, sent, processed, busy, other, lost, wall_s)


def bench_delivery(out: Path, rates_hz: tuple[float, ...] = DEFAULT_RATES_HZ, pairs: int = DEFAULT_PAIRS,
                   domain_id: int = 74) -> list[DeliveryRow]:
    """Play ``pairs`` pairs at each rate into one default node; one row per rate."""
    from ..tools.bag_player import BagPlayer

    out.mkdir(parents=True, exist_ok=True)
    _say(f"writing a {pairs}-pair {SIZE_HW[1]}x{SIZE_HW[0]} bag")
    bag = write_bag(out, pairs)
    watch = DiagnosticsWatch(domain_id)
    proc = start_node(domain_id, out / "node.log")
    rows = []
    try:
        _say("starting occdepth_node with no parameters")
        watch.wait_ready(list(IMAGE_TOPICS), NODE_START_TIMEOUT_S, proc)
        for rate in rates_hz:
            before = watch.counters()
            with BagPlayer(bag, watch.node, rate=rate * BAG_PERIOD_NS / 1e9) as player:
                _wait_matched([player.publishers[t] for t in IMAGE_TOPICS], proc)
                _say(f"{rate:g} Hz: playing {pairs} pairs")
                stats = player.play()
            after = watch.wait_settled(pairs, before)
            rows.append(_row(rate, stats.per_topic[IMAGE_TOPICS[0]], before, after, stats.wall_s))
            _say(f"{rate:g} Hz: {asdict(rows[-1])}")
    finally:
        watch.close()
        rc = stop_node(proc)
        _say(f"occdepth_node exited with {rc}; its log: {out / 'node.log'}")
    return rows


def markdown_table(rows: list[DeliveryRow]) -> str:
    lines = ["| pair rate | sent | processed | busy | other counted drops | lost | processed or busy |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        other = ", ".join(f"{k} {v}" for k, v in sorted(r.other_drops.items())) or "0"
        lines.append(f"| {r.rate_hz:g} Hz | {r.sent} | {r.processed} | {r.busy} | {other} | {r.lost} | "
                     f"{100 * r.accounted_share:.0f} % |")
    return "\n".join(lines) + "\n"
