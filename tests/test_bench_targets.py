"""occdepth-bench's targets, now a data table (bench/report.TARGETS): on result sets built
by hand, each verdict, value and text is the one worked out here from the numbers (the
same the former one-function evaluation gave on these sets), thresholds included."""

from __future__ import annotations

import pytest

from occdepth_ros.bench.fusion import FusionResult
from occdepth_ros.bench.measure import Stat
from occdepth_ros.bench.micro import LiftResult, MessageResult
from occdepth_ros.bench.paired import PairedResult
from occdepth_ros.bench.pipeline import HOST, NETWORK, PERIODIC, PipelineResult
from occdepth_ros.bench.report import (FAIL, NA, PASS, POINTCLOUD2_TARGET_COUNT, TARGETS, Reading, TargetSpec,
                                      evaluate_targets)

NAMES = ["non-network share of end-to-end latency (default model, torch)",
         f"PointCloud2 at {POINTCLOUD2_TARGET_COUNT // 1000}k occupied voxels",
         "fused lift vs naive (compact shapes)", "fused lift vs naive (kitti_b3_f32 shapes)",
         "ONNX Runtime vs eager torch, network time (default model)",
         "temporal map: one frame fused (default model's grid)"]


def pipeline(backend: str, network_ms: float, host_ms: float, forward_ms: float | None = None,
             markers_ms: float = 0.0, preset: str = "default") -> PipelineResult:
    stages = [Stat("network", [network_ms], kind=NETWORK), Stat("decode", [host_ms], kind=HOST),
              Stat("markers", [markers_ms] if markers_ms else [], kind=PERIODIC)]
    forward = None if forward_ms is None else Stat("forward", [forward_ms], kind=NETWORK)
    return PipelineResult(preset, backend, stages=stages, network_forward=forward)


def lift(preset: str, reference_ms: float, fused_ms: float) -> LiftResult:
    return LiftResult(preset, {}, Stat("reference", [reference_ms]), Stat("fused", [fused_ms]), 0.0, 2)


def cloud(ms: float, occupied: int = POINTCLOUD2_TARGET_COUNT) -> MessageResult:
    return MessageResult("PointCloud2", occupied, "256x256x32", Stat("PointCloud2", [ms]))


def paired(torch_ms: float, ort_ms: float, ratios: list[float]) -> PairedResult:
    return PairedResult("default", ("torch", "onnxruntime"),
                        stats={"torch": Stat("torch", [torch_ms]), "onnxruntime": Stat("onnxruntime", [ort_ms])},
                        round_ratios=ratios)


def verdicts(targets) -> list[tuple[str, float | None]]:
    return [(t.status, None if t.value is None else round(t.value, 6)) for t in targets]


def test_the_table_names_every_target_with_its_goal() -> None:
    assert [s.name for s in TARGETS] == NAMES
    assert [s.goal for s in TARGETS] == ["<= 10%", "<= 10 ms", ">= 3x", ">= 3x", ">= 1.3x", "<= 20 ms"]


def test_a_run_that_meets_most_targets() -> None:
    targets = evaluate_targets(
        [pipeline("torch", 300.0, 20.0, forward_ms=290.0, markers_ms=8.0),
         pipeline("onnxruntime", 200.0, 20.0, forward_ms=190.0)],
        [lift("compact", 40.0, 10.0), lift("kitti_b3_f32", 100.0, 50.0)],
        [cloud(5.0), cloud(50.0, occupied=100_000)],
        paired(300.0, 200.0, [1.4, 1.5, 1.6]))
    assert [t.name for t in targets] == NAMES
    # 20 of 320 ms; 5 ms; 40/10; 100/50; the median round ratio
    assert verdicts(targets) == [(PASS, 0.0625), (PASS, 5.0), (PASS, 4.0), (FAIL, 2.0), (PASS, 1.5), (NA, None)]
    share, cloud_t, _, _, ort, fusion_t = targets
    assert fusion_t.detail == "not measured (--no-fusion)"
    assert share.measured == "6.2% (20.0 of 320.0 ms p50)"  # (20 + 8) / 328 with markers
    assert share.detail.endswith("+8.0 ms (8.5% non-network); other backends: onnxruntime 9.1%")
    assert cloud_t.measured == "5.00 ms p50 (5.00 p99), 256x256x32 grid"
    assert ort.measured == "1.50x (median of 3 alternating rounds; 300 -> 200 ms p50)"
    assert ort.detail == ("timed one after the other: 1.53x (290 -> 190 ms p50, backend forward, one backend "
                          "after the other)")


def test_failures_and_the_sequential_fallback() -> None:
    targets = evaluate_targets([pipeline("torch", 160.0, 40.0, forward_ms=300.0),
                                pipeline("onnxruntime", 100.0, 40.0, forward_ms=250.0)],
                               [], [cloud(12.0)],
                               PairedResult("default", ("torch", "onnxruntime"), status="n/a", reason="no ORT"))
    assert verdicts(targets) == [(FAIL, 0.2), (FAIL, 12.0), (NA, None), (NA, None), (FAIL, 1.2), (NA, None)]
    assert targets[2].detail == "not measured (not in --lift-presets)"
    assert targets[4].detail == "not timed in alternation (no ORT)"


def test_thresholds_are_inclusive() -> None:
    targets = evaluate_targets([pipeline("torch", 90.0, 10.0, forward_ms=130.0),
                                pipeline("onnxruntime", 90.0, 10.0, forward_ms=100.0)],
                               [lift("compact", 30.0, 10.0)], [cloud(10.0)])
    assert verdicts(targets) == [(PASS, 0.1), (PASS, 10.0), (PASS, 3.0), (NA, None), (PASS, 1.3), (NA, None)]


def test_nothing_measured_is_not_applicable_with_the_reason() -> None:
    targets = evaluate_targets([PipelineResult("default", "torch", status="n/a", reason="torch failed")], [],
                               [cloud(0.0, occupied=10_000)])
    assert verdicts(targets) == [(NA, None)] * 6
    assert targets[0].detail == "not measured: torch failed"
    assert targets[1].detail == "not measured"
    assert targets[4].detail == "not measured: torch: torch failed; onnxruntime: not run (--backends)"


def fusion(integrate_ms: list[float]) -> FusionResult:
    return FusionResult("compact", [128, 128, 16], 20, 0.68, Stat("integrate", integrate_ms), Stat("render", [4.0]),
                        Stat("occupied", [0.5]), 23.0)


def test_the_temporal_map_target_reads_the_integrate_median() -> None:
    for samples, verdict in (([12.0, 14.0, 30.0], PASS), ([20.0], PASS), ([21.0, 22.0, 23.0], FAIL)):
        (t,) = [t for t in evaluate_targets([], [], [], None, fusion(samples)) if t.name == NAMES[5]]
        assert (t.status, t.value) == (verdict, sorted(samples)[len(samples) // 2])
    (t,) = [t for t in evaluate_targets([], [], [], None, fusion([12.0, 14.0, 30.0])) if t.name == NAMES[5]]
    assert t.measured.startswith("14.0 ms p50") and "128x128x16 grid, 20 classes" in t.measured
    assert "render 4.0 ms" in t.detail
    (t,) = [t for t in evaluate_targets([], [], [], None, fusion([])) if t.name == NAMES[5]]
    assert (t.status, t.detail) == (NA, "not measured")


@pytest.mark.parametrize("spec", TARGETS, ids=lambda s: s.name)
def test_each_comparison_judges_its_threshold(spec) -> None:
    above, below = spec.threshold * 1.01, spec.threshold * 0.99
    passes = {"<=": below, ">=": above}[spec.comparison]
    fails = {"<=": above, ">=": below}[spec.comparison]
    for value, want in ((passes, PASS), (fails, FAIL), (None, NA)):
        probe = TargetSpec(spec.name, lambda _r, v=value: Reading(v), spec.threshold, spec.comparison, spec.unit)
        assert probe.evaluate(None).status == want
