"""ort_cpu_graph: the CPU rewrites keep every output, node by node. References: torch's
conv3d / conv_transpose3d in float64 (independent of ONNX Runtime) and a float64 NumPy
softmax; plus the untouched graph in ONNX Runtime for cases torch cannot express."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from occdepth_ros.runtime.ort_cpu_graph import (optimize_for_cpu, outputs_left_permuted, permute_conv3d_layout,
                                                softmax2_as_sigmoid, spatial_order)

OPSET = 20
IR_VERSION = 10  # what this ONNX Runtime reads


def make_model(nodes, inputs: dict[str, tuple[int, ...]], outputs: list[str], initializers: dict[str, np.ndarray]):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(a, n) for n, a in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def rewritten(model: onnx.ModelProto, order=(2, 0, 1)) -> tuple[onnx.ModelProto, int]:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy, permute_conv3d_layout(copy, order)


def test_spatial_order_puts_the_shortest_axis_first():
    assert spatial_order((128, 128, 16)) == (2, 0, 1)
    assert spatial_order((256, 256, 32)) == (2, 0, 1)
    assert spatial_order((60, 36, 60)) == (1, 0, 2)
    assert spatial_order((8, 16, 32)) == (0, 1, 2)


CONV_CASES = [
    # kernel, strides, dilations, pads (begins, ends), group, bias
    ((3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1, 1, 1, 1), 1, True),
    ((3, 1, 2), (1, 2, 1), (2, 1, 1), (2, 0, 1, 2, 0, 0), 1, False),
    ((1, 3, 3), (2, 1, 2), (1, 3, 1), (0, 3, 1, 0, 3, 1), 2, True),
]


@pytest.mark.parametrize("kernel,strides,dilations,pads,group,bias", CONV_CASES)
@pytest.mark.parametrize("order", [(2, 0, 1), (1, 2, 0), (0, 2, 1)])
def test_conv3d_permuted_matches_torch(kernel, strides, dilations, pads, group, bias, order):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 9, 7, 6)).astype(np.float32)
    w = rng.standard_normal((6, 4 // group, *kernel)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    inputs = ["x", "w"] + (["b"] if bias else [])
    node = helper.make_node("Conv", inputs, ["y"], kernel_shape=list(kernel), strides=list(strides),
                            dilations=list(dilations), pads=list(pads), group=group, name="conv")
    model = make_model([node], {"x": x.shape}, ["y"], {"w": w, **({"b": b} if bias else {})})
    permuted, count = rewritten(model, order)
    assert count == 1
    (got,) = run(permuted, {"x": x})

    # Reference: explicit (possibly asymmetric) zero padding, then an unpadded conv, float64.
    torch_pad = [p for axis in reversed(range(3)) for p in (pads[axis], pads[axis + 3])]
    xt = torch.nn.functional.pad(torch.from_numpy(x).double(), torch_pad)
    want = torch.nn.functional.conv3d(xt, torch.from_numpy(w).double(), torch.from_numpy(b).double() if bias else None,
                                      stride=strides, dilation=dilations, groups=group).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("order", [(2, 0, 1), (1, 0, 2)])
def test_conv_transpose3d_permuted_matches_torch(order):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 6, 5, 4, 3)).astype(np.float32)
    w = rng.standard_normal((6, 3, 3, 3, 2)).astype(np.float32)  # (in, out, kx, ky, kz)
    b = rng.standard_normal(3).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], kernel_shape=[3, 3, 2], strides=[2, 2, 1],
                            pads=[1, 1, 0, 1, 1, 0], output_padding=[1, 0, 0], name="deconv")
    model = make_model([node], {"x": x.shape}, ["y"], {"w": w, "b": b})
    permuted, count = rewritten(model, order)
    assert count == 1
    (got,) = run(permuted, {"x": x})
    want = torch.nn.functional.conv_transpose3d(
        torch.from_numpy(x).double(), torch.from_numpy(w).double(), torch.from_numpy(b).double(),
        stride=(2, 2, 1), padding=(1, 1, 0), output_padding=(1, 0, 0)).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_conv_transpose3d_asymmetric_pads_and_output_shape_match_the_plain_graph():
    """Attributes torch has no form for: the untouched graph in ONNX Runtime is the reference."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 4, 4, 5, 3)).astype(np.float32)
    w = rng.standard_normal((4, 2, 2, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w"], ["y1"], strides=[2, 1, 2], pads=[0, 1, 1, 1, 0, 0],
                         dilations=[1, 2, 1], name="a"),
        helper.make_node("ConvTranspose", ["x", "w"], ["y2"], strides=[2, 2, 2], output_shape=[8, 10, 7], name="b"),
    ]
    model = make_model(nodes, {"x": x.shape}, ["y1", "y2"], {"w": w})
    permuted, count = rewritten(model)
    assert count == 2
    for got, want in zip(run(permuted, {"x": x}), run(model, {"x": x})):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_shared_weight_with_another_consumer_is_copied_not_moved():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 4, 4, 2)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1] * 6, name="conv"),
             helper.make_node("ReduceSum", ["w"], ["w_sum"], keepdims=0, name="uses_w")]
    model = make_model(nodes, {"x": x.shape}, ["y", "w_sum"], {"w": w})
    permuted, _ = rewritten(model)
    got_y, got_sum = run(permuted, {"x": x})
    want_y, want_sum = run(model, {"x": x})
    np.testing.assert_allclose(got_y, want_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_sum, want_sum, rtol=1e-6)
    names = [i.name for i in permuted.graph.initializer]
    assert "w" in names and len(names) == 2


def test_identity_order_and_2d_convs_are_left_alone():
    w2 = np.ones((2, 2, 3, 3), np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1] * 4)], {"x": (1, 2, 5, 5)}, ["y"], {"w": w2})
    assert rewritten(model)[1] == 0
    w3 = np.ones((2, 2, 3, 3, 3), np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1] * 6)], {"x": (1, 2, 5, 5, 5)}, ["y"], {"w": w3})
    assert rewritten(model, (0, 1, 2))[1] == 0


def _softmax_model(channels: int, axis: int) -> tuple[onnx.ModelProto, np.ndarray]:
    rng = np.random.default_rng(4)
    w = (rng.standard_normal((channels, 3, 3, 3, 3)) * 3).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["logit"], pads=[1] * 6, name="occ"),
             helper.make_node("Softmax", ["logit"], ["p"], axis=axis, name="softmax")]
    return make_model(nodes, {"x": (1, 3, 6, 5, 4)}, ["p", "logit"], {"w": w}), \
        rng.standard_normal((1, 3, 6, 5, 4)).astype(np.float32)


@pytest.mark.parametrize("with_layout", [False, True])
def test_two_class_softmax_becomes_a_sigmoid_with_the_same_output(with_layout):
    model, x = _softmax_model(channels=2, axis=1)
    if with_layout:  # the producer is then the layout rewrite's back-Transpose
        assert permute_conv3d_layout(model, (2, 0, 1)) == 1
    assert softmax2_as_sigmoid(model) == 1
    assert "Softmax" not in [n.op_type for n in model.graph.node]
    p, logit = run(model, {"x": x})
    z = logit.astype(np.float64)
    want = np.exp(z - z.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("channels,axis", [(3, 1), (2, 2), (2, -1)])
def test_other_softmaxes_are_left_alone(channels, axis):
    model, _ = _softmax_model(channels, axis)
    assert softmax2_as_sigmoid(model) == 0
    assert "Softmax" in [n.op_type for n in model.graph.node]


def test_optimize_for_cpu_reports_what_it_did():
    model, x = _softmax_model(channels=2, axis=1)
    want = run(model, {"x": x})
    report = optimize_for_cpu(model, (128, 128, 16))
    assert (report.convs_permuted, report.softmax2_replaced, report.spatial_order) == (1, 1, (2, 0, 1))
    assert report.output_perms == {}  # "logit" also feeds the sigmoid
    assert "1 3D convs" in report.describe()
    for got, ref in zip(run(model, {"x": x}), want):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_a_failing_rewrite_falls_back_to_the_graph_as_exported(tmp_path, monkeypatch, caplog):
    """An optimisation bug must not stop the backend: it warns and runs the plain file."""
    from occdepth_ros.model.config import load_preset
    from occdepth_ros.runtime import ort_backend

    path = tmp_path / "m.onnx"
    onnx.save(_softmax_model(2, 1)[0], str(path))
    monkeypatch.setattr(ort_backend, "config_from_text", lambda *_: load_preset("compact"))

    def broken(*_):
        raise RuntimeError("boom")

    monkeypatch.setattr(ort_backend, "optimize_for_cpu", broken)
    with caplog.at_level("WARNING"):
        source, report = ort_backend._rewritten_for_cpu(path)
    assert (source, report) == (str(path), None)
    assert "boom" in caplog.text and "as exported" in caplog.text


def _transposed_output_model(extra_use_of: str | None) -> tuple[onnx.ModelProto, np.ndarray]:
    """Conv -> Transpose(perm) -> graph output "y"; optionally another node reads the
    Transpose's input or output as well."""
    rng = np.random.default_rng(6)
    w = rng.standard_normal((4, 3, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 6),
             helper.make_node("Transpose", ["c"], ["y"], perm=[0, 1, 3, 4, 2])]
    outputs = ["y"]
    if extra_use_of:
        nodes.append(helper.make_node("Relu", [extra_use_of], ["other"]))
        outputs.append("other")
    model = make_model(nodes, {"x": (1, 3, 6, 5, 4)}, outputs, {"w": w})
    del model.graph.output[0].type.tensor_type.shape.dim[:]
    for d in (1, 4, 5, 4, 6):  # y's declared shape
        model.graph.output[0].type.tensor_type.shape.dim.add().dim_value = d
    return model, rng.standard_normal((1, 3, 6, 5, 4)).astype(np.float32)


def test_a_transposed_output_is_left_in_its_layout_and_the_perm_reported():
    model, x = _transposed_output_model(None)
    (want,) = run(model, {"x": x})
    perms = outputs_left_permuted(model)
    assert perms == {"y": (0, 1, 3, 4, 2)}
    assert "Transpose" not in [n.op_type for n in model.graph.node]
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [1, 4, 6, 5, 4]
    (got,) = run(model, {"x": x})
    assert got.shape == (1, 4, 6, 5, 4)
    np.testing.assert_array_equal(got.transpose(perms["y"]), want)


@pytest.mark.parametrize("extra_use_of", ["c", "y"])
def test_a_transpose_whose_tensors_are_also_used_elsewhere_is_kept(extra_use_of):
    model, _ = _transposed_output_model(extra_use_of)
    assert outputs_left_permuted(model) == {}
    assert "Transpose" in [n.op_type for n in model.graph.node]

