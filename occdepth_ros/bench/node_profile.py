"""Where a replayed node's CPU goes: occdepth-demo run in this process with each stage of
the node timed in *thread CPU time* (time.thread_time), which leaves out the time a thread
waits for a core: the parts of one run compare with each other on a machine other jobs
are loading, where wall times do not. (Across runs it still moves with the load: shared
caches and cores make the same work take more CPU time on a busy machine.)

It wraps, for the run, the node's stage calls (FrameProcessor.prepare / infer / finish,
OccDepthNode._publish and its callbacks), the calls inside them (decode, resize and
normalise, argmax, occupied voxels, cloud, bird's-eye grid, message builders), every
rclpy publish (the bag player's too) and the cyclic GC; and it reads each OS thread's CPU
time from /proc before and after the replay: the network's own worker threads show there
(ONNX Runtime / OpenVINO threads carry no Python name), as do the player and the executors.

    python -m occdepth_ros.bench.node_profile --kitti out/replay/data --frames 60 --out out/replay/profile

Arguments are occdepth-demo's. Linux only (/proc).
"""

from __future__ import annotations

import functools
import gc
import os
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import rclpy.publisher

from ..inference import pipeline as inference_pipeline
from ..node import processor as node_processor
from ..node import ros_node
from ..tools import demo, node_session

MIN_THREAD_CPU_S = 0.05  # threads below this over the run are left out of the table


@dataclass
class Tally:
    cpu_s: float = 0.0
    wall_s: float = 0.0
    calls: int = 0


@dataclass
class Profile:
    tallies: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    gc: Tally = field(default_factory=Tally)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, cpu_s: float, wall_s: float) -> None:
        with self.lock:
            t = self.tallies[name]
            t.cpu_s += cpu_s
            t.wall_s += wall_s
            t.calls += 1

    def reset(self) -> None:
        with self.lock:
            self.tallies.clear()
            self.gc = Tally()


def _wrap(profile: Profile, owner: Any, attr: str, name: str) -> None:
    fn = getattr(owner, attr)

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            profile.add(name, time.thread_time() - cpu, time.perf_counter() - wall)

    setattr(owner, attr, timed)


def instrument(profile: Profile) -> None:
    """Wrap the node's stages and their parts (for this process's lifetime)."""
    fp, si, node = node_processor.FrameProcessor, inference_pipeline.StereoInference, ros_node.OccDepthNode
    for owner, attr, name in (
        (fp, "prepare", "prepare (stage)"), (node_processor, "decode_image", "prepare: decode"),
        (si, "set_calibration", "prepare: calibration"), (si, "prepare", "prepare: resize, normalise"),
        (si, "seen_mask", "prepare: seen mask"),
        (fp, "infer", "network (stage, calling thread)"),
        (fp, "finish", "finish (stage)"), (si, "postprocess", "finish: argmax"),
        (node_processor, "occupied_voxels", "finish: occupied voxels"),
        (node_processor, "voxel_cloud", "finish: cloud array"), (node_processor, "bev_occupancy", "finish: bird's-eye grid"),
        (node, "_publish", "publish (stage)"), (ros_node, "point_cloud2", "publish: PointCloud2"),
        (ros_node, "label_grid", "publish: label grid"), (ros_node, "occupancy_grid", "publish: OccupancyGrid"),
        (ros_node, "marker_groups", "publish: marker groups"), (ros_node, "marker_array", "publish: MarkerArray"),
        (node, "_on_message", "callback: input message"), (node, "_publish_diagnostics", "callback: diagnostics"),
        (node, "_watch_inputs", "callback: input watch"),
        (rclpy.publisher.Publisher, "publish", "rclpy publish (node and player)"),
    ):
        _wrap(profile, owner, attr, name)
    started: dict[int, tuple[float, float]] = {}

    def on_gc(phase: str, info: dict) -> None:
        tid = threading.get_ident()
        if phase == "start":
            started[tid] = (time.thread_time(), time.perf_counter())
            return
        cpu, wall = started.pop(tid, (time.thread_time(), time.perf_counter()))
        profile.gc.cpu_s += time.thread_time() - cpu
        profile.gc.wall_s += time.perf_counter() - wall
        profile.gc.calls += 1

    gc.callbacks.append(on_gc)


def thread_cpu() -> dict[int, tuple[str, float]]:
    """OS thread id -> (its name, CPU seconds used so far), from /proc/self/task."""
    ticks = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/self/task/{tid}/comm") as f:
                comm = f.read().strip()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(tid)] = (names.get(int(tid), comm), (int(stat[11]) + int(stat[12])) / ticks)
    return out


def table(profile: Profile, clouds: int, wall_s: float, cpu_s: float,
          before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> str:
    n = max(clouds, 1)
    lines = [f"replay window {wall_s:.1f} s, process CPU {cpu_s:.1f} s ({cpu_s / wall_s:.2f} cores), {clouds} clouds, "
             f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
             "", "| part | calls | thread CPU ms / call | wall ms / call | thread CPU ms / cloud |", "|---|---:|---:|---:|---:|"]
    rows = sorted(profile.tallies.items()) + [("cyclic GC", profile.gc)]
    for name, t in rows:
        c = max(t.calls, 1)
        lines.append(f"| {name} | {t.calls} | {t.cpu_s / c * 1e3:.2f} | {t.wall_s / c * 1e3:.2f} | {t.cpu_s / n * 1e3:.2f} |")
    lines += ["", "| OS thread | CPU s | ms / cloud |", "|---|---:|---:|"]
    used = sorted(((cpu - before.get(tid, (name, 0.0))[1], name, tid) for tid, (name, cpu) in after.items()), reverse=True)
    lines += [f"| {name} ({tid}) | {d:.2f} | {d / n * 1e3:.1f} |" for d, name, tid in used if d >= MIN_THREAD_CPU_S]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    profile = Profile()
    instrument(profile)
    window: dict[str, Any] = {}
    play = node_session.NodeSession.play
    report = demo.report

    def timed_play(self: node_session.NodeSession, *args: Any, **kwargs: Any) -> Any:
        profile.reset()  # start-up and warm-up are not the replay
        window.update(threads=thread_cpu(), wall=time.perf_counter(), cpu=time.process_time())
        return play(self, *args, **kwargs)

    def report_with_profile(args: Any, clouds: list, node: Any, *rest: Any) -> None:
        after, wall, cpu = thread_cpu(), time.perf_counter() - window["wall"], time.process_time() - window["cpu"]
        report(args, clouds, node, *rest)
        print("\n" + table(profile, len(clouds), wall, cpu, window["threads"], after))

    node_session.NodeSession.play = timed_play  # type: ignore[method-assign]
    demo.report = report_with_profile
    try:
        return demo.main(argv)
    finally:
        node_session.NodeSession.play = play  # type: ignore[method-assign]
        demo.report = report



if __name__ == "__main__":
    sys.exit(main())
