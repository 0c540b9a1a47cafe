"""ort_providers: which ONNX Runtime provider a session gets and with which options, and
ort_openvino_graph's class-last output rewrite (against the untouched graph in ORT's
CPU provider, and a NumPy transpose)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from occdepth_export.backends import create_backend
from occdepth_ros.runtime import BackendError
from occdepth_ros.runtime.ort_openvino_graph import output_class_axis_last
from occdepth_ros.runtime.ort_providers import CPU, CUDA, OPENVINO, TENSORRT, choose_providers, provider_options
from helpers.onnx_graphs import make_model, run

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


def _conv_model() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A 3D convolution then a ReLU: (1, 2, 3, 4, 5) -> (1, 3, 3, 4, 5), the logits' rank."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((3, 2, 1, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 1, 1, 0, 1, 1]),
             helper.make_node("Relu", ["y"], ["logits"])]
    model = make_model(nodes, {"x": (1, 2, 3, 4, 5)}, ["logits"], {"w": weight})
    # the rewrite reads the output's declared rank
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 3, 4, 5]))
    return model, {"x": rng.standard_normal((1, 2, 3, 4, 5)).astype(np.float32)}


def test_output_class_axis_last_is_exact_and_views_back():
    model, feeds = _conv_model()
    ref = run(model, feeds)[0]
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    perm = output_class_axis_last(rewritten, "logits")
    onnx.checker.check_model(rewritten, full_check=True)  # the declared output shape agrees
    got = run(rewritten, feeds)[0]
    assert perm == (0, 4, 1, 2, 3)
    assert got.shape == (1, 3, 4, 5, 3)
    np.testing.assert_array_equal(got, np.ascontiguousarray(ref.transpose(0, 2, 3, 4, 1)))
    np.testing.assert_array_equal(got.transpose(perm), ref)
    assert [d.dim_value for d in rewritten.graph.output[0].type.tensor_type.shape.dim] == [1, 3, 4, 5, 3]


def test_output_class_axis_last_errors():
    model, _ = _conv_model()
    with pytest.raises(ValueError, match="no output 'ssc'"):
        output_class_axis_last(model, "ssc")
