"""occdepth-bench: per-stage latency, the fused lift vs the reference, message-building
cost, and the performance targets, as markdown tables, a JSON file and a PNG chart.

Timings are only meaningful on an otherwise idle machine; the report records the load
average at the start and warns when the machine was busy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..runtime import host_memory
from ..runtime.auto_backend import AUTO
from ..runtime.ort_providers import ORT_PROVIDER_CHOICES
from .delivery import DEFAULT_PAIRS, DEFAULT_RATES_HZ, TARGET_SHARE, bench_delivery, markdown_table
from .frames import StereoFrame, kitti_frame, synthetic_frame
from .micro import MESSAGE_COUNTS, MESSAGE_GRID_PRESET, LiftResult, MessageResult, bench_lift, bench_messages
from .paired import PairedResult, bench_paired
from .pipeline import BENCH_BACKENDS, LoopbackPublisher, PipelineResult, bench_backend, ros_unavailable_reason
from .report import (DEFAULT_PRESET, FAIL, LIFT_TARGET_PRESETS, ORT_PAIR, evaluate_targets, markdown, write_json,
                     write_png)

JSON_NAME, MARKDOWN_NAME, PNG_NAME = "bench.json", "bench.md", "bench.png"
DELIVERY_JSON, DELIVERY_MARKDOWN = "delivery.json", "delivery.md"
DEFAULT_DOMAIN_ID = 73  # a private DDS domain for the publish stage
BUSY_LOAD_PER_CORE = 0.5  # a 1-minute load average above this per core: timings contaminated


@dataclass(frozen=True)
class Effort:
    """Iterations of one section: warm-up runs, timed runs, and a time budget per item."""

    warmup: int
    iters: int
    budget_s: float | None


FULL = {"pipeline": Effort(2, 20, 120.0), "lift": Effort(1, 10, 60.0), "messages": Effort(2, 20, 10.0),
        "fusion": Effort(3, 30, 20.0)}
QUICK = {"pipeline": Effort(1, 2, None), "lift": Effort(1, 2, None), "messages": Effort(1, 2, None),
         "fusion": Effort(1, 2, None)}
QUICK_BACKENDS = ("torch",)
QUICK_LIFT_PRESETS = ("compact",)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="occdepth-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=[DEFAULT_PRESET],
                   help="models for the per-stage pipeline: 'default' (models/default.safetensors) or a preset "
                        "name (random weights), e.g. kitti_b3_f32 (~20 s/frame on 2 cores)")
    p.add_argument("--backends", nargs="+", choices=(*BENCH_BACKENDS, AUTO), default=None,
                   help=f"runtime backends (default: all, {', '.join(QUICK_BACKENDS)} with --quick)")
    p.add_argument("--lift-presets", nargs="*", default=None,
                   help=f"presets whose lift shapes are benchmarked (default: {' '.join(LIFT_TARGET_PRESETS)}; "
                        f"{' '.join(QUICK_LIFT_PRESETS)} with --quick)")
    p.add_argument("--message-grid", default=MESSAGE_GRID_PRESET, help="preset whose output grid the messages use")
    p.add_argument("--message-counts", nargs="*", type=int, default=list(MESSAGE_COUNTS))
    p.add_argument("--warmup", type=int, help="warm-up runs of everything (default 1-2)")
    p.add_argument("--iters", type=int, help="timed runs of everything (default 10-20, 2 with --quick)")
    p.add_argument("--ort-provider", choices=ORT_PROVIDER_CHOICES, default="",
                   help="onnxruntime's execution provider (default: the best installed for the CPU: openvino, else cpu)")
    p.add_argument("--threads", type=int, default=0, help="torch/ONNX Runtime/lift threads; 0 = library default")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 timed runs, torch only, compact lift only")
    p.add_argument("--out", default="out/bench", help="folder for bench.json, bench.md and bench.png")
    p.add_argument("--kitti", help="KITTI-layout root to take the frame from (default: a synthetic frame)")
    p.add_argument("--sequence", default="00")
    p.add_argument("--frame", type=int, default=0)
    p.add_argument("--domain-id", type=int, default=DEFAULT_DOMAIN_ID, help="DDS domain of the publish stage")
    p.add_argument("--no-publish", action="store_true", help="skip the rclpy publish stage")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-fusion", action="store_true", help="skip the temporal-map timing")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target FAILs")
    p.add_argument("--delivery", action="store_true",
                   help="only the node delivery run: a KITTI-size bag played into the default occdepth_node "
                        "(its own process) at --delivery-rates; pairs sent / processed / busy / lost")
    p.add_argument("--delivery-rates", nargs="+", type=float, default=list(DEFAULT_RATES_HZ), help="pair rates, Hz")
    p.add_argument("--delivery-pairs", type=int, default=DEFAULT_PAIRS, help="pairs played at each rate")
    p.add_argument("--network-rounds", type=int, metavar="N",
                   help="only the network: eager torch, ONNX Runtime fp32 and int8 in N rotating rounds "
                        "(rounds.md / rounds.json in --out)")
    return p


def _efforts(args: argparse.Namespace) -> dict[str, Effort]:
    base = QUICK if args.quick else FULL
    return {k: Effort(e.warmup if args.warmup is None else args.warmup, e.iters if args.iters is None else args.iters,
                      e.budget_s) for k, e in base.items()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_meta(args: argparse.Namespace, frame: StereoFrame) -> dict[str, Any]:
    load = os.getloadavg()
    cores = os.cpu_count() or 1
    meta = {"mode": "quick" if args.quick else "full", "machine": f"{_cpu_model()}, {cores} CPUs, {platform.system()}",
            "cores": cores, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "loadavg": [round(v, 2) for v in load], "frame": frame.source, "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv[1:], "warning": ""}
    if load[0] > BUSY_LOAD_PER_CORE * cores:
        meta["warning"] = (f"The machine was busy (load average {load[0]:.2f} on {cores} cores): "
                           "these timings are contaminated; rerun on an idle machine for real figures.")
    return meta


def _say(msg: str) -> None:
    print(f"[occdepth-bench] {msg}", file=sys.stderr, flush=True)


def run_delivery(args: argparse.Namespace, out: Path) -> int:
    """``--delivery``: the table for docs/BENCHMARKS.md's "Node delivery"; exit 1 with
    ``--strict`` when a rate stays under the target share."""
    load = os.getloadavg()
    rows = bench_delivery(out, tuple(args.delivery_rates), args.delivery_pairs, args.domain_id)
    text = (f"{_cpu_model()}, {os.cpu_count()} CPUs, load average {load[0]:.2f} at the start\n\n"
            + markdown_table(rows))
    print(text)
    (out / DELIVERY_MARKDOWN).write_text(text)
    (out / DELIVERY_JSON).write_text(json.dumps([{**asdict(r), "accounted_share": r.accounted_share}
                                                 for r in rows], indent=2))
    _say(f"wrote {out / DELIVERY_JSON}, {out / DELIVERY_MARKDOWN}")
    return 1 if args.strict and any(r.accounted_share < TARGET_SHARE for r in rows) else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.delivery:
        return run_delivery(args, Path(args.out))
    host_memory.keep_freed_memory()  # as the node does by default (its host_memory_tuning parameter)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    efforts = _efforts(args)
    backends = args.backends or list(QUICK_BACKENDS if args.quick else BENCH_BACKENDS)
    lift_presets = args.lift_presets if args.lift_presets is not None else list(
        QUICK_LIFT_PRESETS if args.quick else LIFT_TARGET_PRESETS)
    progress = not args.no_progress
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    frame = kitti_frame(args.kitti, args.sequence, args.frame) if args.kitti else synthetic_frame(out / "frame")
    meta = machine_meta(args, frame)
    if meta["warning"]:
        _say(meta["warning"])
    if args.network_rounds:
        from .rounds import bench_rounds, write_rounds

        result = bench_rounds(frame, args.network_rounds, 2 if args.warmup is None else args.warmup,
                              threads=args.threads or None, ort_provider=args.ort_provider, progress=progress)
        print(write_rounds(out, meta, result))
        return 0

    ros_reason = ros_unavailable_reason()
    publisher = None
    if ros_reason is None and not args.no_publish:
        try:
            publisher = LoopbackPublisher(args.domain_id)
        except Exception as exc:  # noqa: BLE001 - DDS could not start: report, do not abort
            ros_reason = f"rclpy loopback publisher failed ({type(exc).__name__}: {exc})"
    pipelines: list[PipelineResult] = []
    try:
        for preset in args.presets:
            for name in backends:
                _say(f"pipeline: {preset} / {name}")
                e = efforts["pipeline"]
                pipelines.append(bench_backend(name, preset, frame, e.warmup, e.iters, e.budget_s, publisher,
                                               ros_reason, args.threads or None, progress, args.ort_provider))
    finally:
        if publisher is not None:
            publisher.close()

    paired: PairedResult | None = None
    if DEFAULT_PRESET in args.presets and set(ORT_PAIR) <= set(backends):
        _say(f"{' vs '.join(ORT_PAIR)}: alternating forward passes")
        e = efforts["pipeline"]
        paired = bench_paired(ORT_PAIR, DEFAULT_PRESET, frame, e.warmup, e.iters, e.budget_s, args.threads or None,
                              progress, ort_provider=args.ort_provider)

    lifts: list[LiftResult] = []
    for preset in lift_presets:
        _say(f"lift: {preset} shapes, naive vs fused")
        e = efforts["lift"]
        lifts.append(bench_lift(preset, e.warmup, e.iters, e.budget_s))

    messages: list[MessageResult] = []
    msg_reason = ros_unavailable_reason()
    if msg_reason is None and args.message_counts:
        _say(f"messages: {args.message_grid} grid at {', '.join(map(str, args.message_counts))} occupied voxels")
        e = efforts["messages"]
        messages = bench_messages(args.message_grid, tuple(args.message_counts), e.warmup, e.iters, e.budget_s)
    elif msg_reason is not None:
        _say(f"messages skipped: {msg_reason}")

    fusion = None
    if not args.no_fusion:
        from .fusion import FUSION_PRESET, bench_fusion

        _say(f"temporal map: one frame into the rolling map, {FUSION_PRESET} grid")
        e = efforts["fusion"]
        fusion = bench_fusion(e.warmup, e.iters, e.budget_s)

    targets = evaluate_targets(pipelines, lifts, messages, paired, fusion)
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    text = markdown(meta, pipelines, lifts, messages, targets, paired, fusion)
    print(text)
    (out / MARKDOWN_NAME).write_text(text)
    write_json(out / JSON_NAME, meta, pipelines, lifts, messages, targets, paired, fusion)
    write_png(out / PNG_NAME, pipelines, lifts, messages)
    _say(f"wrote {out / JSON_NAME}, {out / MARKDOWN_NAME}, {out / PNG_NAME}")
    return 1 if args.strict and any(t.status == FAIL for t in targets) else 0


if __name__ == "__main__":
    sys.exit(main())
