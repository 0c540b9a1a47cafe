"""Two backends' forward passes timed in alternation: the speed-up target's measurement.

Timed one after the other, the backends see different minutes of a shared machine, and
on these 2-core hosts the speed moves by 10-30% from one minute to the next: the ratio
of two sequential medians swung from 0.8x to 1.46x over nine runs (docs/BENCHMARKS.md).
Here the rounds alternate (A B, B A, A B, ...), so drift falls on both alike, and the
figure is the median of the per-round ratios. Before each timed call the process idles
for ``settle_s``: ONNX Runtime's pool and torch's OpenMP threads spin for a while after
a run, and would otherwise take a core from the other backend's call.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from ..inference import StereoInference
from .frames import StereoFrame
from .measure import Stat, time_ms

SETTLE_S = 0.2  # far longer than the spin-wait of ORT's pool and of torch's GNU OpenMP (milliseconds)


@dataclass
class PairedResult:
    preset: str
    backends: tuple[str, str]  # the ratio is the first's time over the second's
    status: str = "ok"
    reason: str = ""
    stats: dict[str, Stat] = field(default_factory=dict)
    round_ratios: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return statistics.median(self.round_ratios) if self.round_ratios else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "backends": list(self.backends), "status": self.status, "reason": self.reason,
                "ratio_median": None if not self.round_ratios else round(self.ratio, 4),
                "round_ratios": [round(r, 4) for r in self.round_ratios],
                "stats": {name: s.to_dict() for name, s in self.stats.items()}}


def round_orders(first: str, second: str, rounds: int) -> list[tuple[str, str]]:
    """A B, B A, A B, ...: each backend goes first in half the rounds."""
    return [(first, second) if r % 2 == 0 else (second, first) for r in range(rounds)]


def bench_paired(names: tuple[str, str], preset: str, frame: StereoFrame, warmup: int, iters: int,
                 budget_s: float | None, threads: int | None, progress: bool, settle_s: float = SETTLE_S,
                 ort_provider: str = "") -> PairedResult:
    """Both backends on the same prepared input, alternating; ``budget_s`` caps the
    timed rounds (at least two)."""
    from occdepth_export.backends import create_backend

    result = PairedResult(preset=preset, backends=names)
    try:
        backends = {name: create_backend(name, preset=None if preset == "default" else preset, threads=threads,
                                         precision="fp32", ort_provider=ort_provider)
                    for name in names}
    except Exception as exc:  # noqa: BLE001 - BackendError, a missing package, a failed export
        result.status, result.reason = "n/a", f"{type(exc).__name__}: {exc}"
        return result
    engine = StereoInference(backends[names[0]])
    engine.set_calibration(frame.calibration)
    lift = engine.rig_lookup.to_torch()
    images = engine.prepare([frame.left, frame.right])
    result.stats = {name: Stat(name, kind="network") for name in names}
    for _ in range(warmup):
        for backend in backends.values():
            backend.forward(images, lift)
    start = time.perf_counter()
    with tqdm(total=iters, desc=f"{preset} {names[0]} vs {names[1]}, alternating", unit="round",
              disable=not progress, leave=False) as bar:
        for done, order in enumerate(round_orders(*names, iters), start=1):
            round_ms: dict[str, float] = {}
            for name in order:
                time.sleep(settle_s)
                round_ms[name], _ = time_ms(lambda: backends[name].forward(images, lift))
                result.stats[name].samples_ms.append(round_ms[name])
            result.round_ratios.append(round_ms[names[0]] / round_ms[names[1]])
            bar.update()
            if budget_s is not None and done >= 2 and time.perf_counter() - start > budget_s:
                break
    return result
