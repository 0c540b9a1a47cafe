"""Network-only forward passes of several (backend, precision) variants in rotating
rounds: eager torch, ONNX Runtime float32 and ONNX Runtime INT8 (docs/INT8.md).

As in bench.paired, the variants take turns (A B C, B C A, C A B, ...) so the drift of a
shared machine falls on all of them alike; each round's times are divided by the first
variant's in that round, and the figure is the median of those ratios. Each variant runs
the same prepared input of the same frame.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..inference import StereoInference
from .frames import StereoFrame
from .measure import Stat, time_ms
from .paired import SETTLE_S

# label -> (backend, precision); the first is the reference of the ratios
NETWORK_VARIANTS: dict[str, tuple[str, str]] = {
    "torch fp32": ("torch", "fp32"),
    "onnxruntime fp32": ("onnxruntime", "fp32"),
    "onnxruntime int8": ("onnxruntime", "int8"),
}


@dataclass
class RoundsResult:
    preset: str
    labels: tuple[str, ...]
    stats: dict[str, Stat] = field(default_factory=dict)
    describe: dict[str, str] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)  # per round: time / the first's time
    unavailable: dict[str, str] = field(default_factory=dict)

    def ratio(self, label: str) -> float:
        r = self.ratios.get(label)
        return statistics.median(r) if r else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "labels": list(self.labels), "describe": self.describe,
                "unavailable": self.unavailable,
                "stats": {k: s.to_dict() for k, s in self.stats.items()},
                "ratio_median": {k: round(self.ratio(k), 4) for k in self.ratios},
                "round_ratios": {k: [round(x, 4) for x in v] for k, v in self.ratios.items()}}

    def markdown(self) -> str:
        ref = self.labels[0]
        lines = [f"| {self.preset}: network only | p50 ms | mean ms | rounds | time / {ref} (median of rounds) |",
                 "|---|---:|---:|---:|---:|"]
        for label in self.labels:
            if label in self.unavailable:
                lines.append(f"| {label} | n/a | | | {self.unavailable[label]} |")
                continue
            s = self.stats[label]
            lines.append(f"| {label} | {s.p50:.1f} | {s.mean:.1f} | {len(s.samples_ms)} | {self.ratio(label):.2f} |")
        lines += ["", *(f"- {k}: {v}" for k, v in self.describe.items())]
        return "\n".join(lines)


def rotations(labels: tuple[str, ...], rounds: int) -> list[tuple[str, ...]]:
    """Round r starts with the (r mod n)-th label: each goes first equally often."""
    n = len(labels)
    return [tuple(labels[(r + i) % n] for i in range(n)) for r in range(rounds)]


def bench_rounds(frame: StereoFrame, rounds: int, warmup: int = 1, preset: str = "default",
                 variants: dict[str, tuple[str, str]] = NETWORK_VARIANTS, threads: int | None = None,
                 ort_provider: str = "", settle_s: float = SETTLE_S, progress: bool = True) -> RoundsResult:
    from occdepth_export.backends import create_backend

    result = RoundsResult(preset, tuple(variants))
    backends = {}
    for label, (name, precision) in variants.items():
        try:
            backends[label] = create_backend(name, preset=None if preset == "default" else preset, threads=threads,
                                             precision=precision, ort_provider=ort_provider if name == "onnxruntime" else "")
            result.describe[label] = backends[label].describe()
        except Exception as exc:  # noqa: BLE001 - a missing package or provider: say so, time the rest
            result.unavailable[label] = f"{type(exc).__name__}: {exc}"
    if not backends:
        return result
    engine = StereoInference(next(iter(backends.values())))
    engine.set_calibration(frame.calibration)
    lift = engine.lift_tensors
    images = engine.prepare([frame.left, frame.right])
    labels = tuple(label for label in variants if label in backends)
    result.stats = {label: Stat(label, kind="network") for label in labels}
    result.ratios = {label: [] for label in labels}
    for _ in range(warmup):
        for backend in backends.values():
            backend.forward(images, lift)
    for order in tqdm(rotations(labels, rounds), desc="network rounds", unit="round", disable=not progress):
        ms: dict[str, float] = {}
        for label in order:
            time.sleep(settle_s)
            ms[label], _ = time_ms(lambda: backends[label].forward(images, lift))
            result.stats[label].samples_ms.append(ms[label])
        for label in labels:
            result.ratios[label].append(ms[label] / ms[labels[0]])
    return result


def write_rounds(out: Path, meta: dict[str, Any], result: RoundsResult) -> str:
    text = "\n".join([f"# occdepth-bench --network-rounds ({meta['started']})", "",
                      f"{meta['machine']}; load average at start {meta['loadavg']}", "", result.markdown(), ""])
    if meta.get("warning"):
        text += f"\n**{meta['warning']}**\n"
    (out / "rounds.md").write_text(text)
    (out / "rounds.json").write_text(json.dumps({"meta": meta, "rounds": result.to_dict()}, indent=1))
    return text
