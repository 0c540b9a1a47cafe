"""The benchmark's targets, markdown tables, JSON and PNG chart."""

from __future__ import annotations

import json
import math
import operator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from PIL import Image, ImageDraw, ImageFont

from .fusion import FusionResult
from .micro import MESSAGE_KINDS, LiftResult, MessageResult
from .paired import PairedResult
from .pipeline import NETWORK, PipelineResult

# -- targets ------------------------------------------------------------------------------------
NON_NETWORK_SHARE_MAX = 0.10  # of end-to-end latency, default model, eager torch
POINTCLOUD2_MAX_MS = 10.0  # PointCloud2 from the label grid at POINTCLOUD2_TARGET_COUNT voxels
POINTCLOUD2_TARGET_COUNT = 200_000
LIFT_SPEEDUP_MIN = 3.0  # fused native lift over the torch reference
LIFT_TARGET_PRESETS = ("compact", "kitti_b3_f32")
FUSION_MAX_MS = 20.0  # one frame into the temporal map, default model's grid
ORT_SPEEDUP_MIN = 1.3  # ONNX Runtime network time over eager torch, default model
ORT_PAIR = ("torch", "onnxruntime")  # timed in alternation for that target (bench.paired)
DEFAULT_PRESET = "default"  # the shipped model (models/default.safetensors)
PASS, FAIL, NA = "PASS", "FAIL", "n/a"


@dataclass
class Target:
    name: str
    goal: str
    measured: str = ""
    status: str = NA
    value: float | None = None
    detail: str = ""


def _find_pipeline(results: list[PipelineResult], preset: str, backend: str) -> PipelineResult | None:
    return next((r for r in results if r.preset == preset and r.backend == backend), None)


@dataclass(frozen=True)
class Results:
    """Everything one benchmark run measured, as the targets' metrics read it."""

    pipelines: list[PipelineResult]
    lifts: list[LiftResult]
    messages: list[MessageResult]
    paired: PairedResult | None = None
    fusion: FusionResult | None = None


@dataclass(frozen=True)
class Reading:
    """A metric's value (None: not measured), its text, and what the number covers."""

    value: float | None
    measured: str = ""
    detail: str = ""


def non_network_share(r: Results) -> Reading:
    run = _find_pipeline(r.pipelines, DEFAULT_PRESET, "torch")
    if run is None or run.status != "ok" or run.non_network_share is None:
        return Reading(None, detail="not measured: " + ("the default preset/torch backend was not run"
                                                        if run is None else run.reason))
    share = run.non_network_share
    others = [f"{p.backend} {p.non_network_share:.1%}" for p in r.pipelines
              if p.preset == DEFAULT_PRESET and p.backend != "torch" and p.status == "ok"
              and p.non_network_share is not None]
    marker_ms = run.periodic_p50
    with_markers = (run.total_p50 + marker_ms - run.network_p50) / (run.total_p50 + marker_ms)
    return Reading(share, f"{share:.1%} ({run.total_p50 - run.network_p50:.1f} of {run.total_p50:.1f} ms p50)",
                   "decode+preprocess+postprocess+message build+publish; RViz markers (at most 1 Hz, only with a "
                   f"subscriber) excluded: a frame that also sends them takes +{marker_ms:.1f} ms "
                   f"({with_markers:.1%} non-network)" + (f"; other backends: {', '.join(others)}" if others else ""))


def pointcloud2_ms(r: Results) -> Reading:
    msg = next((m for m in r.messages if m.kind == "PointCloud2" and m.occupied == POINTCLOUD2_TARGET_COUNT), None)
    if msg is None or not msg.stat.samples_ms:
        return Reading(None, detail="not measured" + (f": {msg.stat.note}" if msg is not None else ""))
    return Reading(msg.stat.p50, f"{msg.stat.p50:.2f} ms p50 ({msg.stat.p99:.2f} p99), {msg.grid} grid",
                   "label grid -> occupied voxels -> cloud -> sensor_msgs/PointCloud2")


def fusion_ms(r: Results) -> Reading:
    f = r.fusion
    if f is None or not f.integrate.samples_ms:
        return Reading(None, detail="not measured (--no-fusion)" if f is None else "not measured")
    return Reading(f.integrate.p50, f"{f.integrate.p50:.1f} ms p50 ({f.integrate.p99:.1f} p99), "
                   f"{'x'.join(map(str, f.grid))} grid, {f.classes} classes",
                   f"RollingSemanticMap.integrate with the argmax labels given; render {f.render.p50:.1f} ms, "
                   f"occupied() {f.occupied.p50:.1f} ms p50; map {f.memory_mb:.0f} MiB")


def lift_speedup(preset: str) -> Callable[[Results], Reading]:
    def metric(r: Results) -> Reading:
        lift = next((x for x in r.lifts if x.preset == preset), None)
        if lift is None:
            return Reading(None, detail="not measured (not in --lift-presets)")
        return Reading(lift.ratio, f"{lift.ratio:.1f}x ({lift.reference.p50:.1f} -> {lift.fused.p50:.1f} ms p50)")

    return metric


def ort_speedup(r: Results) -> Reading:
    """Judged on the alternating torch/ONNX Runtime timing when present (the sequential
    figure goes in the detail), else on the pipelines' forward timings."""
    torch_run, ort_run = (_find_pipeline(r.pipelines, DEFAULT_PRESET, name) for name in ORT_PAIR)
    runs = (torch_run, ort_run)
    sequential = seq_text = None
    if all(x is not None and x.status == "ok" and x.network_forward is not None for x in runs):
        sequential = torch_run.network_forward.p50 / ort_run.network_forward.p50
        seq_text = (f"{sequential:.2f}x ({torch_run.network_forward.p50:.0f} -> "
                    f"{ort_run.network_forward.p50:.0f} ms p50, backend forward, one backend after the other)")
    paired = r.paired
    if paired is not None and paired.status == "ok" and paired.round_ratios:
        first, second = (paired.stats[name].p50 for name in paired.backends)
        return Reading(paired.ratio, f"{paired.ratio:.2f}x (median of {len(paired.round_ratios)} alternating "
                                     f"rounds; {first:.0f} -> {second:.0f} ms p50)",
                       f"timed one after the other: {seq_text}" if seq_text is not None else "")
    if sequential is not None:
        return Reading(sequential, seq_text, "not timed in alternation"
                       + (f" ({paired.reason})" if paired is not None and paired.reason else ""))
    why = [f"{name}: " + ("not run (--backends)" if x is None else x.reason or "no forward timing")
           for name, x in zip(ORT_PAIR, runs) if x is None or x.status != "ok" or x.network_forward is None]
    return Reading(None, detail="not measured: " + "; ".join(why))


COMPARISONS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge}


@dataclass(frozen=True)
class TargetSpec:
    """One performance target: a metric of the run and the threshold it must meet."""

    name: str
    metric: Callable[[Results], Reading]
    threshold: float
    comparison: str  # a key of COMPARISONS
    unit: str = "{:g}"  # how the goal prints the threshold

    @property
    def goal(self) -> str:
        return f"{self.comparison} {self.unit.format(self.threshold)}"

    def evaluate(self, results: Results) -> Target:
        reading = self.metric(results)
        status = NA if reading.value is None else (
            PASS if COMPARISONS[self.comparison](reading.value, self.threshold) else FAIL)
        return Target(self.name, self.goal, reading.measured, status, reading.value, reading.detail)


TARGETS: tuple[TargetSpec, ...] = (
    TargetSpec("non-network share of end-to-end latency (default model, torch)", non_network_share,
               NON_NETWORK_SHARE_MAX, "<=", "{:.0%}"),
    TargetSpec(f"PointCloud2 at {POINTCLOUD2_TARGET_COUNT // 1000}k occupied voxels", pointcloud2_ms,
               POINTCLOUD2_MAX_MS, "<=", "{:g} ms"),
    *(TargetSpec(f"fused lift vs naive ({preset} shapes)", lift_speedup(preset), LIFT_SPEEDUP_MIN, ">=", "{:g}x")
      for preset in LIFT_TARGET_PRESETS),
    TargetSpec("ONNX Runtime vs eager torch, network time (default model)", ort_speedup, ORT_SPEEDUP_MIN, ">=",
               "{:g}x"),
    TargetSpec("temporal map: one frame fused (default model's grid)", fusion_ms, FUSION_MAX_MS, "<=", "{:g} ms"),
)


def evaluate_targets(pipelines: list[PipelineResult], lifts: list[LiftResult],
                     messages: list[MessageResult], paired: PairedResult | None = None,
                     fusion: FusionResult | None = None) -> list[Target]:
    """Every target of ``TARGETS`` judged on one run's results."""
    results = Results(pipelines, lifts, messages, paired, fusion)
    return [spec.evaluate(results) for spec in TARGETS]


# -- markdown ------------------------------------------------------------------------------------
def _ms(v: float) -> str:
    return "-" if v is None or not math.isfinite(v) else (f"{v:.2f}" if v < 100 else f"{v:.0f}")


def _mb(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def pipeline_table(run: PipelineResult) -> str:
    head = f"### Pipeline: {run.preset} / {run.backend}"
    if run.status != "ok":
        return f"{head}\n\n{run.status}: {run.reason}\n"
    lines = [head, "", f"{run.describe}; occupied voxels in the frame: {run.occupied_voxels}; "
             f"staged vs end-to-end check: {run.check}", "",
             "| stage | kind | p50 ms | p99 ms | n | Python peak MiB | RSS peak MiB | note |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for s in run.stages:
        lines.append(f"| {s.name} | {s.kind} | {_ms(s.p50)} | {_ms(s.p99)} | {len(s.samples_ms)} | "
                     f"{_mb(s.py_peak_mb)} | {_mb(s.rss_peak_mb)} | {s.note} |")
    share = run.non_network_share
    lines.append(f"| **total** | | **{_ms(run.total_p50)}** | | | | | network {_ms(run.network_p50)} ms, "
                 f"non-network {'-' if share is None else f'{share:.1%}'} |")
    if run.network_forward is not None:
        f = run.network_forward
        lines.append(f"| backend forward (alone) | {NETWORK} | {_ms(f.p50)} | {_ms(f.p99)} | {len(f.samples_ms)} | "
                     f"{_mb(f.py_peak_mb)} | {_mb(f.rss_peak_mb)} | not part of the total |")
    return "\n".join(lines) + "\n"


def lift_table(lifts: list[LiftResult]) -> str:
    lines = ["### Lift: fused native vs naive torch reference", "",
             "| preset | V x S x C | grid (N) | seen | naive p50 / p99 ms | fused p50 / p99 ms | ratio | max abs diff | threads |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in lifts:
        s = r.shapes
        lines.append(f"| {r.preset} | {s['V']} x {s['S']} x {s['C']} | {'x'.join(map(str, s['grid']))} ({s['N']}) | "
                     f"{s['seen_fraction']:.0%} | {_ms(r.reference.p50)} / {_ms(r.reference.p99)} | "
                     f"{_ms(r.fused.p50)} / {_ms(r.fused.p99)} | **{r.ratio:.1f}x** | {r.max_abs_diff:.1e} | {r.threads} |")
    return "\n".join(lines) + "\n"


def message_table(messages: list[MessageResult]) -> str:
    if not messages:
        return "### Message building\n\nnot measured\n"
    grid = messages[0].grid
    lines = [f"### Message building ({grid} output grid), from the label grid", "",
             "| occupied voxels | " + " | ".join(f"{k} p50 / p99 ms" for k in MESSAGE_KINDS) + " |",
             "|---:|" + "---:|" * len(MESSAGE_KINDS)]
    notes = sorted({m.stat.note for m in messages if m.stat.note})
    for count in sorted({m.occupied for m in messages}):
        cells = []
        for kind in MESSAGE_KINDS:
            m = next((m for m in messages if m.occupied == count and m.kind == kind), None)
            cells.append("-" if m is None else f"{_ms(m.stat.p50)} / {_ms(m.stat.p99)}")
        lines.append(f"| {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + [f"MarkerArray: {n}." for n in notes]) + "\n"


def paired_table(paired: PairedResult) -> str:
    first, second = paired.backends
    head = f"### {first} vs {second}, alternating ({paired.preset} model)"
    if paired.status != "ok":
        return f"{head}\n\n{paired.status}: {paired.reason}\n"
    ratios = paired.round_ratios
    lines = [head, "", f"Rounds alternate the order ({first} first, then {second} first); each call follows an idle "
             "pause, so neither backend's spinning worker threads take a core from the other.", "",
             "| backend | p50 ms | p99 ms | n |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {_ms(s.p50)} | {_ms(s.p99)} | {len(s.samples_ms)} |" for name, s in paired.stats.items()]
    lines += ["", f"{first} / {second}, per round: median **{paired.ratio:.2f}x**, range {min(ratios):.2f}x to "
              f"{max(ratios):.2f}x."]
    return "\n".join(lines) + "\n"


def targets_table(targets: list[Target]) -> str:
    lines = ["### Targets", "", "| target | goal | measured | status | detail |", "|---|---|---|---|---|"]
    for t in targets:
        lines.append(f"| {t.name} | {t.goal} | {t.measured or '-'} | **{t.status}** | {t.detail} |")
    return "\n".join(lines) + "\n"


def fusion_table(f: FusionResult | None) -> str:
    if f is None:
        return "### Temporal map\n\nnot measured\n"
    lines = [f"### Temporal map ({f.preset} output grid {'x'.join(map(str, f.grid))}, {f.classes} classes, "
             f"{f.seen_fraction:.0%} of the voxels in view; map {f.memory_mb:.0f} MiB)", "",
             "| call | p50 ms | p99 ms | n |", "|---|---:|---:|---:|"]
    for stat in (f.integrate, f.render, f.occupied):
        lines.append(f"| {stat.name} | {_ms(stat.p50)} | {_ms(stat.p99)} | {len(stat.samples_ms)} |")
    return "\n".join(lines) + "\n"


def markdown(meta: dict[str, Any], pipelines: list[PipelineResult], lifts: list[LiftResult],
             messages: list[MessageResult], targets: list[Target], paired: PairedResult | None = None,
             fusion: FusionResult | None = None) -> str:
    parts = [f"## occdepth-bench ({meta['mode']})", "",
             f"{meta['machine']}; torch {meta['torch']} with {meta['threads']} threads; "
             f"load average at start {meta['loadavg'][0]:.2f}.", ""]
    if meta.get("warning"):
        parts += [f"**{meta['warning']}**", ""]
    parts += [pipeline_table(r) for r in pipelines]
    if paired is not None:
        parts.append(paired_table(paired))
    if lifts:
        parts.append(lift_table(lifts))
    parts.append(message_table(messages))
    parts.append(fusion_table(fusion))
    parts.append(targets_table(targets))
    parts.append("Memory: Python peak = tracemalloc (Python and NumPy allocations, not torch's); "
                 "RSS peak = rise of the process's resident set during the stage (VmHWM after a reset).\n")
    return "\n".join(parts)


def write_json(path: Path, meta: dict[str, Any], pipelines: list[PipelineResult], lifts: list[LiftResult],
               messages: list[MessageResult], targets: list[Target], paired: PairedResult | None = None,
               fusion: FusionResult | None = None) -> dict[str, Any]:
    data = {"meta": meta, "pipeline": [r.to_dict() for r in pipelines], "lift": [r.to_dict() for r in lifts],
            "messages": [m.to_dict() for m in messages], "targets": [asdict(t) for t in targets],
            "paired": None if paired is None else paired.to_dict(),
            "fusion": None if fusion is None else fusion.to_dict()}
    path.write_text(json.dumps(data, indent=2, allow_nan=False))
    return data


# -- PNG (Pillow only) ---------------------------------------------------------------------------
NETWORK_COLOR = (52, 101, 164)
HOST_COLOR = (245, 121, 0)
NAIVE_COLOR = (136, 138, 133)
FUSED_COLOR = (78, 154, 6)
MESSAGE_COLORS = {"PointCloud2": (52, 101, 164), "MarkerArray": (204, 0, 0), "OccupancyGrid": (117, 80, 123)}
WIDTH, LABEL_W, ROW_H, TITLE_H, MARGIN = 960, 300, 18, 26, 10
BACKGROUND, TEXT = (255, 255, 255), (0, 0, 0)


@dataclass
class Bar:
    label: str
    value: float
    color: tuple[int, int, int]


def _panel(title: str, bars: list[Bar], unit: str = "ms") -> Image.Image:
    font = ImageFont.load_default()
    img = Image.new("RGB", (WIDTH, TITLE_H + ROW_H * max(1, len(bars)) + MARGIN), BACKGROUND)
    draw = ImageDraw.Draw(img)
    draw.text((MARGIN, 6), title, fill=TEXT, font=font)
    finite = [b.value for b in bars if b.value is not None and math.isfinite(b.value)]
    top = max(finite) if finite else 1.0
    span = WIDTH - LABEL_W - 90
    for i, b in enumerate(bars):
        y = TITLE_H + i * ROW_H
        draw.text((MARGIN, y + 3), b.label, fill=TEXT, font=font)
        if b.value is None or not math.isfinite(b.value):
            draw.text((LABEL_W, y + 3), "n/a", fill=TEXT, font=font)
            continue
        length = max(1, int(span * b.value / top)) if top > 0 else 1
        draw.rectangle([LABEL_W, y + 2, LABEL_W + length, y + ROW_H - 3], fill=b.color)
        draw.text((LABEL_W + length + 6, y + 3), f"{_ms(b.value)} {unit}", fill=TEXT, font=font)
    return img


def write_png(path: Path, pipelines: list[PipelineResult], lifts: list[LiftResult],
              messages: list[MessageResult]) -> None:
    panels = []
    for r in pipelines:
        if r.status == "ok":
            bars = [Bar(s.name, s.p50, NETWORK_COLOR if s.kind == NETWORK else HOST_COLOR) for s in r.timed()]
            panels.append(_panel(f"{r.preset} / {r.backend}: per-stage p50 latency (blue network, orange host), "
                                 f"total {_ms(r.total_p50)} ms", bars))
    if lifts:
        bars = []
        for r in lifts:
            bars += [Bar(f"{r.preset} naive (torch reference)", r.reference.p50, NAIVE_COLOR),
                     Bar(f"{r.preset} fused (native), {r.ratio:.1f}x", r.fused.p50, FUSED_COLOR)]
        panels.append(_panel("lift p50", bars))
    if messages:
        bars = [Bar(f"{m.kind} {m.occupied // 1000}k voxels", m.stat.p50, MESSAGE_COLORS[m.kind]) for m in messages]
        panels.append(_panel(f"message building p50 ({messages[0].grid} grid)", bars))
    if not panels:
        panels.append(_panel("nothing measured", []))
    canvas = Image.new("RGB", (WIDTH, sum(p.height for p in panels)), BACKGROUND)
    y = 0
    for p in panels:
        canvas.paste(p, (0, y))
        y += p.height
    canvas.save(path)
