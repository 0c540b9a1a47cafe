"""occdepth-demo: the node on a replayed bag, end to end in one process.

A synthetic KITTI-format stereo sequence is written (or an existing KITTI sequence is
used), converted to a rosbag2, played over DDS into occdepth_node, and the node's outputs
are collected. It prints the rate, the latency from a frame's publication to its voxel
cloud's arrival, the drops by reason, and saves a picture of the last voxel grid.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import UInt8MultiArray

from ..classes import load_class_set
from ..data.images import read_rgb
from ..data.kitti_odometry import KittiSequence
from ..data.synth.cli import main as synth_main
from ..node.ros_node import DEFAULT_MODEL, OccDepthNode
from ..resources import model_path
from ..node.stereo_sync import stamp_to_ns
from ..viz.render import render_panel
from .bag_player import BagPlayer
from .kitti2bag import ConvertOptions, convert

SETTLE_S = 3.0  # wait for the last frame's outputs after the bag ends
DEMO_DOMAIN_ID = 42


@dataclass
class Collected:
    clouds: list[tuple[float, int, int]] = field(default_factory=list)  # (arrival, stamp_ns, points)
    last_labels: UInt8MultiArray | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="occdepth-demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kitti", help="KITTI-layout root to replay; default: generate a synthetic sequence")
    p.add_argument("--sequence", default="00")
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rate", type=float, default=1.0, help="bag playback speed (1.0 = 10 Hz KITTI)")
    p.add_argument("--checkpoint", default="", help="weights; default: models/default.safetensors")
    p.add_argument("--preset", default="")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default="out/demo")
    p.add_argument("--domain-id", type=int, default=DEMO_DOMAIN_ID)
    return p


def prepare_bag(args: argparse.Namespace, out: Path) -> tuple[KittiSequence, Path, int]:
    root = Path(args.kitti) if args.kitti else out / "data"
    if not args.kitti:
        synth_main(["--out", str(root), "--sequences", args.sequence, "--frames", str(args.frames),
                    "--seed", str(args.seed), "--voxel-every", "0"])
    seq = KittiSequence(root, args.sequence)
    bag = out / "bag"
    shutil.rmtree(bag, ignore_errors=True)
    start_ns = time.time_ns() + 2_000_000_000  # stamps ~ wall time, so latencies are meaningful
    convert(ConvertOptions(kitti=root, sequence=args.sequence, out=bag, frames=args.frames,
                           start_time_ns=start_ns))
    return seq, bag, start_ns


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.checkpoint and not args.preset and not model_path(DEFAULT_MODEL).is_file():
        print(f"warning: {model_path(DEFAULT_MODEL)} not found; using the compact preset with UNTRAINED weights",
              file=sys.stderr)
        args.preset = "compact"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seq, bag, start_ns = prepare_bag(args, out)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=args.domain_id)
    overrides = [Parameter("calib_file", value=str(seq.path / "calib.txt")),
                 Parameter("frame_id", value="velodyne"), Parameter("threads", value=args.threads)]
    overrides += [Parameter(k, value=v) for k, v in (("checkpoint", args.checkpoint), ("preset", args.preset)) if v]
    got = Collected()
    node = OccDepthNode(context=context, parameter_overrides=overrides)
    sink = rclpy.create_node("occdepth_demo_sink", context=context)
    player_node = rclpy.create_node("occdepth_demo_player", context=context)

    def on_cloud(msg: PointCloud2) -> None:
        with got.lock:
            got.clouds.append((time.time(), stamp_to_ns(msg.header.stamp.sec, msg.header.stamp.nanosec), msg.width))

    def on_labels(msg: UInt8MultiArray) -> None:
        got.last_labels = msg

    sink.create_subscription(PointCloud2, "/occdepth_node/voxels", on_cloud, 10)
    sink.create_subscription(UInt8MultiArray, "/occdepth_node/label_grid", on_labels, 10)
    executor = MultiThreadedExecutor(context=context)
    for n in (node, sink, player_node):
        executor.add_node(n)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        time.sleep(1.0)  # discovery
        with BagPlayer(bag, player_node, rate=args.rate) as player:
            play_start = time.time()
            stats = player.play()
        time.sleep(SETTLE_S)
        report(args, got, node, stats, play_start, start_ns)
        save_picture(got, node, seq, out)
    finally:
        executor.shutdown()
        node.destroy_node()
        sink.destroy_node()
        player_node.destroy_node()
        rclpy.try_shutdown(context=context)
    return 0 if got.clouds else 1


def report(args, got: Collected, node: OccDepthNode, stats, play_start: float, first_stamp_ns: int) -> None:
    frames_in = stats.per_topic.get("/left/image_rect", 0)
    with got.lock:
        clouds = list(got.clouds)
    # a frame's publication time = play start + its bag offset / rate
    latencies = [arrival - (play_start + (stamp - first_stamp_ns) * 1e-9 / args.rate) for arrival, stamp, _ in clouds]
    span = clouds[-1][0] - clouds[0][0] if len(clouds) > 1 else float("nan")
    proc = node.stats.processing_ms()
    print(f"\nmodel {node.processor.engine.cfg.name}: {frames_in} stereo frames played at "
          f"{10 * args.rate:.1f} Hz, {len(clouds)} voxel clouds published")
    if len(clouds) > 1:
        print(f"output rate {(len(clouds) - 1) / span:.2f} Hz")
    if latencies:
        print(f"latency, frame published -> cloud received: median {statistics.median(latencies) * 1e3:.0f} ms, "
              f"max {max(latencies) * 1e3:.0f} ms")
    if proc:
        print(f"processing time: median {proc[0]:.0f} ms, max {proc[1]:.0f} ms")
    print("drops: " + ", ".join(f"{k} {v}" for k, v in node.stats.drops.items()) + "  (busy = latest pair wins)")
    if clouds:
        print(f"occupied voxels in the last cloud: {clouds[-1][2]}")


def save_picture(got: Collected, node: OccDepthNode, seq: KittiSequence, out: Path) -> None:
    if got.last_labels is None:
        return
    cfg = node.processor.engine.cfg
    labels = np.frombuffer(bytes(got.last_labels.data), dtype=np.uint8).reshape(cfg.grid.dims)
    left = read_rgb(seq.image_paths(seq.frame_ids()[-1])[0])
    path = out / "demo.png"
    render_panel(labels, load_class_set(cfg.class_set), image=left, title=f"occdepth_node ({cfg.name})").save(path)
    print(f"picture of the last grid: {path}")


if __name__ == "__main__":
    sys.exit(main())
