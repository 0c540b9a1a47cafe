"""One-node ONNX graphs of the lift (a StereoVoxelSample node whose definition is the
model-local function), for the function's ONNX Runtime tests and the TensorRT builds."""

from __future__ import annotations

from typing import Sequence

import onnx
from onnx import TensorProto, helper

from occdepth_export.onnx_function import build_function
from occdepth_export.spec import ONNX_IR_VERSION, ONNX_OPSET, OP_DOMAIN, OP_NAME, OP_VERSION


def single_op_model(n_views: int, n_scales: int, gated: bool, grid: Sequence[int], gate_scale: float,
                    shapes: dict[str, Sequence[int]] | None = None, prob_dtype: int = TensorProto.FLOAT,
                    with_function: bool = True) -> onnx.ModelProto:
    """Inputs f0.., index[, prob, coords], output volume; float32 features. ``shapes``
    fixes input dims by name (symbolic otherwise); ``prob_dtype`` is depth_prob's type
    (float32 is the contract)."""
    shapes = shapes or {}
    names = [f"f{s}" for s in range(n_scales)] + ["index"] + (["prob", "coords"] if gated else [])
    ranks = {"index": 4, "prob": 5, "coords": 4}
    types = {"index": TensorProto.INT32, "prob": prob_dtype}

    def dims(name: str, rank: int) -> list:
        return list(shapes.get(name, [f"{name}_{i}" for i in range(rank)]))

    inputs = [helper.make_tensor_value_info(n, types.get(n, TensorProto.FLOAT), dims(n, ranks.get(n, 5)))
              for n in names]
    node = helper.make_node(OP_NAME, names, ["volume"], domain=OP_DOMAIN, grid=list(grid), gate_scale=gate_scale,
                            num_scales=n_scales, plugin_namespace=OP_DOMAIN, plugin_version=str(OP_VERSION))
    out_dims = dims("volume", 5)
    if "f0" in shapes:
        out_dims = [shapes["f0"][0], shapes["f0"][2], *grid]
    graph = helper.make_graph([node], "svs", inputs, [helper.make_tensor_value_info("volume", TensorProto.FLOAT,
                                                                                    out_dims)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET),
                                                    helper.make_opsetid(OP_DOMAIN, OP_VERSION)],
                              functions=[build_function(n_views, n_scales, gated)] if with_function else [],
                              ir_version=ONNX_IR_VERSION)
    if with_function and prob_dtype == TensorProto.FLOAT:
        onnx.checker.check_model(model, full_check=True)
    return model
