"""The TensorRT plugin's serialised fields, driven through the calls a builder and a
runtime make (tests/native/svs_trt_plugin_harness.cpp), against each real header set in
../shared/tensorrt. No libnvinfer or GPU: the harness replaces the CUDA kernel with a
recorder (a test double, named as such in its source).

What must hold: the engine records whether the depth gate is on, and a plugin created
from the serialised fields alone enqueues with the right inputs; onShapeChange is never
called first, since TensorRT does not promise it before every enqueue.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADERS = ROOT.parent / "shared" / "tensorrt"
HARNESS = ROOT / "tests" / "native" / "svs_trt_plugin_harness.cpp"
PLUGIN = ROOT / "export" / "plugin"
CUDA_ROOTS = (Path("/usr/local/cuda"),)
TENSORRT_TAGS = ("10.3.0", "10.16", "11.1")
FLOAT32, INT32 = 1, 5  # nvinfer1::PluginFieldType values (stable across 10.x and 11.x)


def _cuda_root() -> Path | None:
    return next((r for r in CUDA_ROOTS if (r / "include" / "cuda_runtime_api.h").is_file()
                 and (r / "lib64" / "libcudart_static.a").is_file()), None)


@pytest.fixture(scope="module", params=TENSORRT_TAGS)
def harness_output(request, tmp_path_factory) -> list[dict]:
    include = HEADERS / request.param / "include"
    if not include.is_dir():
        pytest.skip(f"{include} is absent (the real TensorRT headers live in ../shared/tensorrt)")
    cxx = shutil.which("g++") or shutil.which("c++")
    cuda = _cuda_root()
    if cxx is None or cuda is None:
        pytest.skip("needs a C++ compiler and the CUDA toolkit's headers and static runtime (/usr/local/cuda)")
    exe = tmp_path_factory.mktemp("harness") / "svs_trt_plugin_harness"
    cmd = [cxx, "-std=c++17", "-O0", "-Wall", "-Wextra", "-Werror", f"-I{PLUGIN / 'include'}",
           "-isystem", str(include), "-isystem", str(cuda / "include"),
           str(HARNESS), str(PLUGIN / "src" / "svs_trt_plugin.cpp"),
           f"-L{cuda / 'lib64'}", "-lcudart_static", "-ldl", "-lpthread", "-lrt", "-o", str(exe)]
    built = subprocess.run(cmd, capture_output=True, text=True)
    assert built.returncode == 0, f"{' '.join(cmd)}\n{built.stderr}"
    ran = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    return [json.loads(line) for line in ran.stdout.splitlines()]


def _scenario(output: list[dict], gated: bool, drop: bool = False) -> dict:
    return next(s for s in output if s["gated"] is gated and s["drop_gated_field"] is drop)


@pytest.mark.parametrize("gated", [True, False])
def test_serialised_fields_record_the_gate(harness_output, gated) -> None:
    s = _scenario(harness_output, gated)
    assert s["configure"] == 0
    fields = {f["name"]: (f["type"], f["values"]) for f in s["fields"]}
    assert fields == {"grid": (INT32, [4, 3, 2]), "gate_scale": (FLOAT32, [100]), "num_scales": (INT32, [2]),
                      "gated": (INT32, [int(gated)])}


@pytest.mark.parametrize("gated", [True, False])
def test_deserialised_plugin_enqueues_without_on_shape_change(harness_output, gated) -> None:
    s = _scenario(harness_output, gated)
    assert s["runtime_plugin"] and s["enqueue"] == 0 and s["kernel_calls"] == 1
    assert s["depth_prob_is_input"] is gated and s["depth_bins"] == (4 if gated else 0)
    assert s["gate_scale"] == 100


def test_engine_without_the_gate_field_is_refused(harness_output) -> None:
    """An engine serialised before the field existed cannot be run blind: createPlugin refuses it."""
    assert _scenario(harness_output, True, drop=True)["runtime_plugin"] is False
