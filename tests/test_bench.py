"""occdepth-bench's quick mode, in process: every stage, section and target is reported
(timings are not checked: the bench measures, the tests only check it runs)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from PIL import Image

from occdepth_ros.bench.cli import JSON_NAME, MARKDOWN_NAME, PNG_NAME, main
from occdepth_ros.bench.micro import MESSAGE_COUNTS, MESSAGE_KINDS
from occdepth_ros.bench.pipeline import STAGES
from occdepth_ros.bench.report import FAIL, LIFT_TARGET_PRESETS, NA, PASS
from helpers.dds import domain_id

pytestmark = pytest.mark.filterwarnings("ignore:module 'sre_:DeprecationWarning")  # lark, via rosidl

DOMAIN_ID = domain_id("bench")
TARGET_COUNT = 4 + len(LIFT_TARGET_PRESETS)  # non-network share, PointCloud2, ORT, temporal map, one per lift preset


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    assert main(["--quick", "--warmup", "0", "--iters", "1", "--out", str(out), "--no-progress",
                 "--domain-id", str(DOMAIN_ID)]) == 0
    return json.loads((out / JSON_NAME).read_text()), out


def test_pipeline_reports_every_stage(report) -> None:
    data, _ = report
    (run,) = [r for r in data["pipeline"] if r["preset"] == "default" and r["backend"] == "torch"]
    assert run["status"] == "ok", run["reason"]
    assert [s["name"] for s in run["stages"]] == list(STAGES)
    for s in run["stages"]:
        timed = s["n"] > 0
        assert timed or s["note"].startswith("skipped"), s
        if timed:
            assert s["p50_ms"] >= 0 and s["p99_ms"] >= s["p50_ms"] and s["kind"] in ("network", "host", "periodic")
    assert run["network_forward"]["n"] >= 1
    assert run["check"].startswith("ok"), run["check"]  # the staged network is the model's forward
    assert 0 <= run["non_network_share"] <= 1


def test_lift_and_messages_sections(report) -> None:
    data, _ = report
    (lift,) = data["lift"]
    assert lift["preset"] == "compact" and lift["ratio"] > 0
    assert lift["shapes"]["N"] == 64 * 64 * 8
    assert lift["max_abs_diff"] < 1e-3  # fused and naive computed the same volume
    got = {(m["kind"], m["occupied"]) for m in data["messages"]}
    assert got == {(k, n) for k in MESSAGE_KINDS for n in MESSAGE_COUNTS}


def test_temporal_map_section(report) -> None:
    data, out = report
    f = data["fusion"]
    assert f["preset"] == "compact" and f["grid"] == [128, 128, 16] and f["classes"] == 20
    assert 0 < f["seen_fraction"] < 1 and f["memory_mb"] > 0
    for call in ("integrate", "render", "occupied"):
        assert f[call]["n"] >= 1 and f[call]["p50_ms"] > 0
    assert "### Temporal map" in (out / "bench.md").read_text()


def test_every_target_has_a_verdict(report) -> None:
    data, _ = report
    targets = data["targets"]
    assert len(targets) == TARGET_COUNT
    for t in targets:
        assert t["status"] in (PASS, FAIL, NA)
        if t["status"] == NA:
            assert t["detail"], t  # says why
        else:
            assert t["measured"] and math.isfinite(t["value"])
    lift_targets = [t for t in targets if t["name"].startswith("fused lift")]
    assert [t["status"] != NA for t in lift_targets] == [p == "compact" for p in LIFT_TARGET_PRESETS]


def test_markdown_and_png_are_written(report) -> None:
    data, out = report
    text = (out / MARKDOWN_NAME).read_text()
    for heading in ("### Pipeline: default / torch", "### Lift", "### Message building", "### Targets"):
        assert heading in text
    with Image.open(out / PNG_NAME) as img:
        assert img.size[0] > 0 and img.size[1] > 100
    assert data["meta"]["mode"] == "quick" and data["meta"]["cores"] >= 1
