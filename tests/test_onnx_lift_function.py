"""The lift's ONNX model-local function, run by ONNX Runtime, against the torch reference
op on random inputs and every edge case of the contract (docs/stereo_voxel_sample.md)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from occdepth_export.onnx_function import build_function
from occdepth_export.spec import ONNX_IR_VERSION, ONNX_OPSET, OP_DOMAIN, OP_NAME, OP_VERSION
from lift_cases import CASES, GATE_SCALE, make_case, run_reference

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in requirements.txt; missing means setup is broken")


def single_op_model(n_views: int, n_scales: int, gated: bool, grid, gate_scale: float) -> onnx.ModelProto:
    """A graph of one StereoVoxelSample node whose only definition is the local function."""
    names = [f"f{s}" for s in range(n_scales)] + ["index"] + (["prob", "coords"] if gated else [])
    def symbolic(name: str, rank: int) -> list[str]:
        return [f"{name}_{i}" for i in range(rank)]

    inputs = [helper.make_tensor_value_info(f"f{s}", TensorProto.FLOAT, symbolic(f"f{s}", 5)) for s in range(n_scales)]
    inputs.append(helper.make_tensor_value_info("index", TensorProto.INT32, symbolic("index", 4)))
    if gated:
        inputs += [helper.make_tensor_value_info("prob", TensorProto.FLOAT, symbolic("prob", 5)),
                   helper.make_tensor_value_info("coords", TensorProto.FLOAT, symbolic("coords", 4))]
    node = helper.make_node(OP_NAME, names, ["volume"], domain=OP_DOMAIN, grid=list(grid), gate_scale=gate_scale,
                            num_scales=n_scales, plugin_namespace=OP_DOMAIN, plugin_version=str(OP_VERSION))
    graph = helper.make_graph([node], "svs", inputs, [helper.make_tensor_value_info("volume", TensorProto.FLOAT, symbolic("volume", 5))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET),
                                                    helper.make_opsetid(OP_DOMAIN, OP_VERSION)],
                              functions=[build_function(n_views, n_scales, gated)], ir_version=ONNX_IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("B,V,S,C,with_depth,zero_view0", CASES)
def test_function_matches_reference_op(B, V, S, C, with_depth, zero_view0) -> None:
    rng = np.random.default_rng(100 * B + 10 * V + S + C)
    features, index, depth_prob, coords, grid = make_case(rng, B, V, S, C, zero_view0)
    model = single_op_model(V, S, with_depth, grid, GATE_SCALE)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {f"f{s}": f for s, f in enumerate(features)} | {"index": index}
    if with_depth:
        feeds |= {"prob": depth_prob, "coords": coords}
    (got,) = session.run(None, feeds)
    ref = run_reference(features, index, grid, depth_prob if with_depth else None, coords if with_depth else None)
    assert got.shape == (B, C, *grid)
    np.testing.assert_allclose(got.reshape(ref.shape), ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


def test_gate_scale_attribute_reaches_the_body() -> None:
    """The function reads gate_scale from the calling node, not a baked-in constant."""
    rng = np.random.default_rng(5)
    features, index, depth_prob, coords, grid = make_case(rng, 1, 2, 2, 4)
    outs = []
    for scale in (1.0, 3.0):
        session = ort.InferenceSession(single_op_model(2, 2, True, grid, scale).SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        outs.append(session.run(None, {"f0": features[0], "f1": features[1], "index": index, "prob": depth_prob,
                                       "coords": coords})[0])
    np.testing.assert_allclose(outs[1], 3.0 * outs[0], rtol=1e-5, atol=1e-7)
