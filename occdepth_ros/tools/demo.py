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
import time
from pathlib import Path

import numpy as np
from sensor_msgs.msg import Image, PointCloud2

from ..classes import load_class_set
from ..data.images import read_rgb
from ..data.kitti_odometry import KittiSequence
from ..data.synth.cli import main as synth_main
from ..checkpoint import choose_weights
from ..node.ros_node import OccDepthNode
from ..resources import default_model_path
from ..node.messages import label_grid_array
from ..node.stereo_sync import stamp_to_ns
from ..viz.render import render_panel
from .kitti2bag import ConvertOptions, convert
from .node_on_bag import NodeOnBag

SETTLE_TIMEOUT_S = 60.0  # after the bag ends, wait this long at most for the last frames
DEMO_DOMAIN_ID = 42


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
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a node parameter (YAML value), e.g. --set precision=fp32 --set pipelined=false")
    return p


def parameter_overrides(pairs: list[str]) -> dict[str, object]:
    """``NAME=VALUE`` strings -> parameter values (YAML scalars: true, 2, fp32)."""
    import yaml

    out: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"occdepth-demo: --set wants NAME=VALUE, got {pair!r}")
        out[name] = yaml.safe_load(value)
    return out


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
    args.checkpoint, args.preset, untrained = choose_weights(args.checkpoint, args.preset)
    if untrained:
        print(f"warning: {default_model_path()} not found; using the {args.preset} preset with UNTRAINED weights",
              file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seq, bag, start_ns = prepare_bag(args, out)
    overrides = {"calib_file": str(seq.path / "calib.txt"), "frame_id": "velodyne", "threads": args.threads}
    overrides.update({k: str(v) for k, v in (("checkpoint", args.checkpoint), ("preset", args.preset)) if v})
    overrides.update(parameter_overrides(args.set))
    topics = {"cloud": (PointCloud2, "/occdepth_node/voxels"), "labels": (Image, "/occdepth_node/label_grid")}
    with NodeOnBag(bag, overrides, topics, args.domain_id) as run:
        stats, play_start = run.play(rate=args.rate)
        end = time.monotonic() + SETTLE_TIMEOUT_S
        while not settled(run) and time.monotonic() < end:
            time.sleep(0.05)
        clouds = [(t, stamp_to_ns(m.header.stamp.sec, m.header.stamp.nanosec), m.width)
                  for t, m in zip(run.arrivals["cloud"], run.messages("cloud"))]
        report(args, clouds, run.node, stats, play_start, start_ns)
        labels = run.messages("labels")
        save_picture(labels[-1] if labels else None, run.node, seq, out)
    return 0 if clouds else 1


def settled(run: NodeOnBag) -> bool:
    """Every pair the node formed has ended published or dropped."""
    drops = run.node.stats.drops
    done = run.count("cloud") + drops["busy"] + drops["bad_input"] + drops["calibration"]
    return done >= run.node.sync.counters.matched


def report(args, clouds: list[tuple[float, int, int]], node: OccDepthNode, stats, play_start: float,
           first_stamp_ns: int) -> None:
    """clouds: (arrival wall time, stamp ns, points) per received voxel cloud."""
    frames_in = stats.per_topic.get("/left/image_rect", 0)
    # a frame's publication time = play start + its bag offset / rate
    latencies = [arrival - (play_start + (stamp - first_stamp_ns) * 1e-9 / args.rate) for arrival, stamp, _ in clouds]
    span = clouds[-1][0] - clouds[0][0] if len(clouds) > 1 else float("nan")
    proc = node.stats.processing_ms()
    paired = node.sync.counters.matched
    print(f"\nnetwork: {node.processor.engine.backend.describe()}; "
          f"{'pipelined' if node.params.pipelined else 'sequential'} stages")
    print(f"model {node.processor.engine.cfg.name}: {frames_in} stereo frames played at "
          f"{10 * args.rate:.1f} Hz, {paired} pairs reached the node, {len(clouds)} voxel clouds published")
    if paired < frames_in:
        print(f"  {frames_in - paired} frames were lost in DDS before the node (best-effort sensor-data QoS, "
              "large images, a busy CPU); lower --rate to see every frame")
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


def save_picture(msg: Image | None, node: OccDepthNode, seq: KittiSequence, out: Path) -> None:
    if msg is None:
        return
    cfg = node.processor.engine.cfg
    labels = label_grid_array(msg)
    left = read_rgb(seq.image_paths(seq.frame_ids()[-1])[0])
    path = out / "demo.png"
    render_panel(labels, load_class_set(cfg.class_set), image=left, title=f"occdepth_node ({cfg.name})").save(path)
    print(f"picture of the last grid: {path}")


if __name__ == "__main__":
    sys.exit(main())
