"""bench.paired: alternating rounds, an idle pause before every call, per-round ratios,
and the ORT target judged on them. Durations are scripted (no timing in tests)."""

from __future__ import annotations

import statistics

import pytest
import torch

from occdepth_export import backends
from occdepth_ros.runtime import BackendError
from occdepth_ros.bench import paired as paired_mod
from occdepth_ros.bench.frames import synthetic_frame
from occdepth_ros.bench.measure import Stat
from occdepth_ros.bench.paired import PairedResult, bench_paired, round_orders
from occdepth_ros.bench.pipeline import PipelineResult
from occdepth_ros.bench.report import FAIL, NA, PASS, evaluate_targets, markdown
from occdepth_ros.model.config import load_preset

# scripted forward times (ms) per backend, round by round
SCRIPT = {"torch": [300.0, 330.0, 280.0, 310.0], "onnxruntime": [200.0, 300.0, 250.0, 200.0]}


def test_rounds_alternate_which_backend_goes_first():
    assert round_orders("a", "b", 5) == [("a", "b"), ("b", "a"), ("a", "b"), ("b", "a"), ("a", "b")]


class _FakeBackend:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.cfg, self.log = name, load_preset("compact"), log

    def forward(self, images: torch.Tensor, lift) -> torch.Tensor:
        self.log.append(self.name)
        return torch.zeros(1)


@pytest.fixture()
def scripted(monkeypatch, tmp_path):
    """Fake backends; time_ms returns the script's next duration for the backend just
    run; sleep is recorded, not slept."""
    calls: list[str] = []
    events: list[str] = []
    monkeypatch.setattr(backends, "create_backend", lambda name, **_: _FakeBackend(name, calls))
    monkeypatch.setattr(paired_mod.time, "sleep", lambda s: events.append(f"sleep {s}"))
    seen = {name: 0 for name in SCRIPT}

    def fake_time_ms(fn):
        out = fn()
        name = calls[-1]
        events.append(name)
        ms = SCRIPT[name][seen[name]]
        seen[name] += 1
        return ms, out

    monkeypatch.setattr(paired_mod, "time_ms", fake_time_ms)
    return synthetic_frame(tmp_path / "frame"), calls, events


def test_bench_paired_alternates_pauses_and_takes_per_round_ratios(scripted):
    frame, calls, events = scripted
    result = bench_paired(("torch", "onnxruntime"), "default", frame, warmup=1, iters=4, budget_s=None,
                          threads=None, progress=False, settle_s=0.25)
    assert result.status == "ok"
    assert calls[:2] == ["torch", "onnxruntime"]  # one warm-up call each, untimed
    timed = [e for e in events if not e.startswith("sleep")]
    assert timed == ["torch", "onnxruntime", "onnxruntime", "torch", "torch", "onnxruntime", "onnxruntime", "torch"]
    assert events[0::2] == ["sleep 0.25"] * 8  # a pause before every timed call
    assert result.stats["torch"].samples_ms == SCRIPT["torch"]
    want = [t / o for t, o in zip(SCRIPT["torch"], SCRIPT["onnxruntime"])]
    assert result.round_ratios == pytest.approx(want)
    assert result.ratio == pytest.approx(statistics.median(want))
    assert result.to_dict()["ratio_median"] == pytest.approx(statistics.median(want), abs=1e-4)


def test_a_backend_that_cannot_start_is_reported(monkeypatch, tmp_path):
    def broken(name, **_):
        raise BackendError("no onnxruntime here")

    monkeypatch.setattr(backends, "create_backend", broken)
    result = bench_paired(("torch", "onnxruntime"), "default", synthetic_frame(tmp_path / "f"), 0, 2, None, None, False)
    assert result.status == "n/a" and "no onnxruntime here" in result.reason


def _pipeline(backend: str, forward_ms: float) -> PipelineResult:
    return PipelineResult(preset="default", backend=backend, network_forward=Stat("forward", [forward_ms]))


def _ort_target(pipelines, paired=None):
    return next(t for t in evaluate_targets(pipelines, [], [], paired) if t.name.startswith("ONNX Runtime"))


def test_the_ort_target_is_judged_on_the_alternating_rounds_when_there_are_some():
    pipelines = [_pipeline("torch", 300.0), _pipeline("onnxruntime", 280.0)]  # sequential: 1.07x
    paired = PairedResult("default", ("torch", "onnxruntime"), round_ratios=[1.2, 1.4, 1.35],
                          stats={"torch": Stat("torch", [300.0]), "onnxruntime": Stat("onnxruntime", [225.0])})
    t = _ort_target(pipelines, paired)
    assert t.value == pytest.approx(1.35) and t.status == PASS
    assert "1.07x" in t.detail and "one after the other" in t.detail
    text = markdown({"mode": "full", "machine": "m", "torch": "t", "threads": 2, "loadavg": [0.1]},
                    pipelines, [], [], [t], paired)
    assert "### torch vs onnxruntime, alternating" in text and "median **1.35x**" in text


def test_without_rounds_the_sequential_ratio_is_used_and_said():
    pipelines = [_pipeline("torch", 300.0), _pipeline("onnxruntime", 250.0)]
    t = _ort_target(pipelines, PairedResult("default", ("torch", "onnxruntime"), status="n/a", reason="boom"))
    assert t.value == pytest.approx(1.2) and t.status == FAIL  # below ORT_SPEEDUP_MIN
    assert "not timed in alternation (boom)" == t.detail
    t = _ort_target([_pipeline("torch", 300.0)])
    assert t.status == NA and t.detail == "not measured: onnxruntime: not run (--backends)"


def test_network_rounds_rotate_so_each_variant_goes_first_equally() -> None:
    from occdepth_ros.bench.rounds import NETWORK_VARIANTS, rotations

    labels = tuple(NETWORK_VARIANTS)
    orders = rotations(labels, 6)
    assert all(sorted(o) == sorted(labels) for o in orders)
    assert [o[0] for o in orders] == [*labels, *labels]
    assert NETWORK_VARIANTS["onnxruntime int8"] == ("onnxruntime", "int8")


def test_network_rounds_time_each_variant_and_take_per_round_ratios(monkeypatch, tmp_path):
    """torch, ORT fp32 and ORT int8 rotate; each round's times over torch's; a variant
    that cannot start is named, the others are timed."""
    from occdepth_ros.bench import rounds as rounds_mod

    script = {"torch fp32": [300.0, 360.0, 240.0], "onnxruntime fp32": [150.0, 180.0, 160.0],
              "onnxruntime int8": [100.0, 90.0, 80.0]}
    calls: list[str] = []

    def create(name, precision="fp32", **_):
        if precision == "fp16":
            raise BackendError("fp16 is for tensorrt")
        return _FakeBackend(f"{name} {precision}", calls)

    monkeypatch.setattr(backends, "create_backend", create)
    monkeypatch.setattr(rounds_mod.time, "sleep", lambda s: None)
    seen = {k: 0 for k in script}

    def fake_time_ms(fn):
        out = fn()
        ms = script[calls[-1]][seen[calls[-1]]]
        seen[calls[-1]] += 1
        return ms, out

    monkeypatch.setattr(rounds_mod, "time_ms", fake_time_ms)
    variants = {**rounds_mod.NETWORK_VARIANTS, "onnxruntime fp16": ("onnxruntime", "fp16")}
    result = rounds_mod.bench_rounds(synthetic_frame(tmp_path / "frame"), 3, warmup=0, variants=variants,
                                     progress=False)
    assert calls == ["torch fp32", "onnxruntime fp32", "onnxruntime int8", "onnxruntime fp32", "onnxruntime int8",
                     "torch fp32", "onnxruntime int8", "torch fp32", "onnxruntime fp32"]
    assert {k: s.samples_ms for k, s in result.stats.items()} == script
    assert result.ratio("onnxruntime int8") == pytest.approx(statistics.median([1 / 3, 0.25, 1 / 3]))
    assert "fp16 is for tensorrt" in result.unavailable["onnxruntime fp16"]
    assert "| onnxruntime fp16 | n/a |" in result.markdown()
