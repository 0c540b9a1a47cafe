"""ort_providers: which ONNX Runtime provider a session gets and with which options."""

from __future__ import annotations

import pytest

from occdepth_export.backends import create_backend
from occdepth_ros.runtime import BackendError
from occdepth_ros.runtime.ort_providers import CPU, CUDA, OPENVINO, TENSORRT, choose_providers, provider_options

EVERYTHING = [TENSORRT, CUDA, OPENVINO, CPU]


@pytest.mark.parametrize("requested,device,available,want", [
    ("", "cpu", EVERYTHING, [OPENVINO, CPU]),  # a CPU device never gets a GPU provider
    ("", "cpu", [CPU], [CPU]),
    ("", "cuda:0", EVERYTHING, [TENSORRT, CPU]),
    ("", "cuda", [CUDA, CPU], [CUDA, CPU]),
    ("", "cuda", [OPENVINO, CPU], [OPENVINO, CPU]),
    ("cpu", "cpu", EVERYTHING, [CPU]),
    ("openvino", "cuda", EVERYTHING, [OPENVINO, CPU]),
    ("cuda", "cpu", EVERYTHING, [CUDA, CPU]),  # named explicitly: the user's choice
])
def test_choose_providers(requested, device, available, want):
    assert choose_providers(requested, device, available) == want


def test_choose_providers_errors_name_the_problem():
    with pytest.raises(BackendError, match="unknown ONNX Runtime provider 'openvno'"):
        choose_providers("openvno", "cpu", EVERYTHING)
    with pytest.raises(BackendError, match="OpenVINOExecutionProvider is not installed.*onnxruntime-openvino"):
        choose_providers("openvino", "cpu", [CPU])


def test_provider_options():
    assert provider_options(OPENVINO, None) == {"device_type": "CPU", "precision": "FP32"}
    assert provider_options(OPENVINO, 2)["num_of_threads"] == "2"
    assert provider_options(CPU, 2) == {}


def test_create_backend_rejects_an_unknown_provider():
    with pytest.raises(BackendError, match="unknown ONNX Runtime provider"):
        create_backend("onnxruntime", preset="compact", ort_provider="gpu")
