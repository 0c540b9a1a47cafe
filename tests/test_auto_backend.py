"""Backend ``auto``: the choice as a plain function of what is installed (injected), and
``create_backend("auto")`` end to end with the probe injected."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from occdepth_ros.node.params import NodeParams
from occdepth_export import backends
from occdepth_export.backends import create_backend
from occdepth_ros.runtime import BACKEND_CHOICES, BackendError
from occdepth_ros.runtime.auto_backend import Availability, choose_backend

OPENVINO, CPU, CUDA = "OpenVINOExecutionProvider", "CPUExecutionProvider", "CUDAExecutionProvider"
NO_TRT = "TensorRT is not importable (No module named 'tensorrt')"

JETSON = Availability("", "10.3.0", ("Orin",), "", (CPU,), "aarch64")
DESKTOP_TWO_GPUS = Availability("", "10.16.0", ("NVIDIA RTX A4000", "NVIDIA RTX A2000"), "", (CUDA, CPU), "x86_64")
X86_CPU = Availability(NO_TRT, "", (), "", (OPENVINO, CPU), "x86_64")
ARM_CPU = Availability(NO_TRT, "", (), "", (CPU,), "aarch64")
GPU_WITHOUT_TRT = Availability(NO_TRT, "", ("NVIDIA RTX A4000",), "", (CUDA, CPU), "x86_64")
BARE = Availability(NO_TRT, "", (), "not importable: No module named 'onnxruntime'", (), "x86_64")


@pytest.mark.parametrize("device, have, backend, chosen_device, why", [
    ("cpu", JETSON, "tensorrt", "cuda:0", "TensorRT 10.3.0 imports and CUDA device 'Orin' is present"),
    ("cuda", JETSON, "tensorrt", "cuda:0", "'Orin'"),
    ("cuda:1", DESKTOP_TWO_GPUS, "tensorrt", "cuda:1", "'NVIDIA RTX A2000'"),
    ("cuda:2", DESKTOP_TWO_GPUS, "onnxruntime", "cpu", "cuda:2 does not exist (2 CUDA device(s))"),
    ("cpu", X86_CPU, "onnxruntime", "cpu", f"ONNX Runtime with {OPENVINO} on x86_64"),
    ("cpu", ARM_CPU, "onnxruntime", "cpu", f"ONNX Runtime with {CPU} on aarch64"),
    ("cuda", GPU_WITHOUT_TRT, "onnxruntime", "cuda:0", f"{NO_TRT}); ONNX Runtime with {CUDA}"),
    ("cpu", GPU_WITHOUT_TRT, "onnxruntime", "cpu", f"ONNX Runtime with {CPU}"),
    ("cpu", BARE, "torch", "cpu", "no ONNX Runtime (not importable: No module named 'onnxruntime'); eager torch"),
    ("cuda", dataclasses.replace(BARE, cuda_devices=("GPU",)), "torch", "cuda:0", "eager torch"),
])
def test_choice(device, have, backend, chosen_device, why) -> None:
    choice = choose_backend(device, have)
    assert (choice.backend, choice.device) == (backend, chosen_device)
    assert why in choice.reason
    line = choice.summary()
    assert "\n" not in line and line.startswith(f"backend auto chose {backend} on {chosen_device}: ")


def test_model_files_limit_the_choice() -> None:
    assert choose_backend("cpu", JETSON, ".engine").backend == "tensorrt"
    with pytest.raises(BackendError, match="TensorRT engine, but TensorRT cannot run here: TensorRT is not import"):
        choose_backend("cpu", X86_CPU, ".engine")
    assert choose_backend("cpu", X86_CPU, ".onnx").backend == "onnxruntime"
    with pytest.raises(BackendError, match="ONNX file, but neither TensorRT"):
        choose_backend("cpu", BARE, ".onnx")


def test_named_provider_is_reported_and_checked() -> None:
    assert f"with {CPU}" in choose_backend("cpu", X86_CPU, ort_provider="cpu").reason
    with pytest.raises(BackendError, match="not installed"):
        choose_backend("cpu", ARM_CPU, ort_provider="openvino")


def test_create_backend_auto_runs_the_choice(monkeypatch) -> None:
    monkeypatch.setattr(backends, "probe", lambda: BARE)
    backend = create_backend("auto", preset="compact")
    assert backend.name == "torch" and backend.device == torch.device("cpu")
    assert backend.describe().endswith("; " + choose_backend("cpu", BARE).summary())


def test_node_defaults_to_auto() -> None:
    assert "auto" in BACKEND_CHOICES
    params = NodeParams()
    assert params.backend == "auto"
    params.validate()
    with pytest.raises(ValueError, match="backend"):
        NodeParams.from_dict({"backend": "fastest"}).validate()
