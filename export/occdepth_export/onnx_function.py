"""StereoVoxelSample as an ONNX model-local function in standard ops.

ONNX Runtime inlines it, so the exported file runs there unchanged; TensorRT >= 10.7
prefers the registered plugin and inlines the function only when the plugin is absent.
The body follows docs/stereo_voxel_sample.md step by step, using row gathers
(GatherND, batch_dims=1) and a hand-written trilinear sample (8 GatherElements), not a
5D GridSample, which TensorRT does not support.

The number of views and scales and whether the OAD gate is present are fixed per
function (a FunctionProto has a fixed input list), so the exporter builds one for the
model at hand; B, C and all spatial sizes stay symbolic.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from occdepth_ros.ops.stereo_voxel_sample import COS_EPS

from .spec import ONNX_OPSET, OP_DOMAIN, OP_NAME

# Spec: depth coordinates lie in [-2, size + 1]; clipping there changes no in-contract
# result and keeps floor() finite (NaN -> -2 via Max/Min order below).
COORD_LOW = -2.0


class _Body:
    """Collects nodes with unique value names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self._count = itertools.count()

    def op(self, op_type: str, *inputs: str, n_out: int = 1, **attrs) -> str | list[str]:
        outs = [f"{op_type.lower()}_{next(self._count)}" for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, value, dtype=np.float32) -> str:
        arr = np.asarray(value, dtype=dtype)
        return self.op("Constant", value=numpy_helper.from_array(arr))

    def const_from_attr(self, attr_name: str, attr_type: int, value_field: str) -> str:
        out = f"attr_{attr_name}_{next(self._count)}"
        node = helper.make_node("Constant", [], [out])
        ref = AttributeProto()
        ref.name, ref.ref_attr_name, ref.type = value_field, attr_name, attr_type
        node.attribute.append(ref)
        self.nodes.append(node)
        return out

    def dim(self, tensor: str, axis: int) -> str:
        """(1,) int64 size of one axis."""
        return self.op("Shape", tensor, start=axis, end=axis + 1)


def _gather_scale(b: _Body, feat: str, index_s: str, n_views: int) -> tuple[list[str], list[str]]:
    """Per-view samples (B, N, C), zero where unseen, and seen masks (B, N) float."""
    bv_hw_c = b.op("Concat", b.const([-1], np.int64), b.op("Mul", b.dim(feat, 3), b.dim(feat, 4)),
                   b.dim(feat, 2), axis=0)
    rows = b.op("Reshape", b.op("Transpose", feat, perm=[0, 1, 3, 4, 2]), bv_hw_c)  # (B*V, h*w, C)
    seen = b.op("Cast", b.op("GreaterOrEqual", index_s, b.const(0, np.int32)), to=TensorProto.FLOAT)
    safe = b.op("Cast", b.op("Max", index_s, b.const(0, np.int32)), to=TensorProto.INT64)  # (B, V, N)
    safe = b.op("Reshape", safe, b.op("Concat", b.const([-1], np.int64), b.dim(index_s, 2),
                                      b.const([1], np.int64), axis=0))  # (B*V, N, 1)
    sampled = b.op("GatherND", rows, safe, batch_dims=1)  # (B*V, N, C)
    b_v_n_c = b.op("Concat", b.op("Shape", index_s), b.dim(feat, 2), axis=0)
    sampled = b.op("Mul", b.op("Reshape", sampled, b_v_n_c), b.op("Unsqueeze", seen, b.const([-1], np.int64)))
    views, masks = [], []
    for v in range(n_views):
        vi = b.const(v, np.int64)
        views.append(b.op("Gather", sampled, vi, axis=1))
        masks.append(b.op("Gather", seen, vi, axis=1))
    return views, masks


def _sfa(b: _Body, views: list[str], masks: list[str]) -> str:
    n_views = len(views)
    if n_views == 1:
        return views[0]
    one, eps, last = b.const(1.0), b.const(COS_EPS), b.const([-1], np.int64)
    norms = [b.op("Max", b.op("Sqrt", b.op("ReduceSum", b.op("Mul", f, f), last, keepdims=0)), eps) for f in views]
    fused = None
    for i, j in itertools.combinations(range(n_views), 2):
        dot = b.op("ReduceSum", b.op("Mul", views[i], views[j]), last, keepdims=0)
        both = b.op("Mul", masks[i], masks[j])
        cos = b.op("Mul", b.op("Div", dot, b.op("Mul", norms[i], norms[j])), both)
        w_i = b.op("Add", cos, b.op("Mul", masks[i], b.op("Sub", one, masks[j])))
        w_j = b.op("Add", cos, b.op("Mul", masks[j], b.op("Sub", one, masks[i])))
        term = b.op("Add", b.op("Mul", b.op("Unsqueeze", w_i, last), views[i]),
                    b.op("Mul", b.op("Unsqueeze", w_j, last), views[j]))
        fused = term if fused is None else b.op("Add", fused, term)
    return b.op("Div", fused, b.const(float(n_views * (n_views - 1))))


def _occupancy(b: _Body, depth_prob: str, depth_coords: str, n_views: int) -> str:
    """OAD prior (B, N): trilinear samples averaged over views by covered weight."""
    one = b.const(1.0)
    d, h, w = (b.dim(depth_prob, a) for a in (2, 3, 4))
    sizes = [w, h, d]  # coordinate order x=w, y=h, z=bin
    flat = b.op("Reshape", depth_prob, b.const([0, 0, -1], np.int64))  # (B, V, D*h*w)
    flat = b.op("Reshape", flat, b.op("Concat", b.const([-1], np.int64), b.dim(flat, 2), axis=0))  # (B*V, DHW)
    axes = []
    for k in range(3):
        c = b.op("Gather", depth_coords, b.const(k, np.int64), axis=3)  # (B, V, N)
        size_f = b.op("Cast", sizes[k], to=TensorProto.FLOAT)
        c = b.op("Min", b.op("Max", c, b.const(COORD_LOW)), b.op("Add", size_f, one))
        c0 = b.op("Floor", c)
        frac = b.op("Sub", c, c0)
        i0 = b.op("Cast", c0, to=TensorProto.INT64)
        i1 = b.op("Add", i0, b.const(1, np.int64))
        corners = []
        for idx, weight in ((i0, b.op("Sub", one, frac)), (i1, frac)):
            inside = b.op("And", b.op("GreaterOrEqual", idx, b.const(0, np.int64)), b.op("Less", idx, sizes[k]))
            corners.append((idx, b.op("Mul", weight, b.op("Cast", inside, to=TensorProto.FLOAT)), inside))
        axes.append(corners)
    hw = b.op("Mul", h, w)
    prob = cover = None
    for (ix, wx, okx), (iy, wy, oky), (iz, wz, okz) in itertools.product(*axes):
        weight = b.op("Mul", b.op("Mul", wx, wy), wz)
        linear = b.op("Add", b.op("Add", b.op("Mul", iz, hw), b.op("Mul", iy, w)), ix)
        ok = b.op("And", b.op("And", okx, oky), okz)
        linear = b.op("Where", ok, linear, b.const(0, np.int64))
        linear = b.op("Reshape", linear, b.op("Concat", b.const([-1], np.int64), b.dim(linear, 2), axis=0))
        value = b.op("Reshape", b.op("GatherElements", flat, linear, axis=1), b.op("Shape", weight))
        contrib = b.op("Mul", value, weight)
        prob = contrib if prob is None else b.op("Add", prob, contrib)
        cover = weight if cover is None else b.op("Add", cover, weight)
    # prob, cover: (B, V, N)
    if n_views == 1:
        return b.op("Gather", prob, b.const(0, np.int64), axis=1)
    views_axis = b.const([1], np.int64)
    total = b.op("ReduceSum", prob, views_axis, keepdims=0)
    cover = b.op("ReduceSum", cover, views_axis, keepdims=0)
    covered = b.op("Greater", cover, b.const(0.0))
    return b.op("Where", covered, b.op("Div", total, b.op("Where", covered, cover, one)), b.const(0.0))


def build_function(n_views: int, n_scales: int, gated: bool, opset: int = ONNX_OPSET) -> onnx.FunctionProto:
    """The model-local function for ``n_views`` views, ``n_scales`` scales, with or
    without the OAD gate. Inputs: feature_0.., pixel_index[, depth_prob, depth_coords]."""
    b = _Body()
    feats = [f"feature_{s}" for s in range(n_scales)]
    inputs = feats + ["pixel_index"] + (["depth_prob", "depth_coords"] if gated else [])
    volume = None  # (B, N, C)
    for s, feat in enumerate(feats):
        index_s = b.op("Gather", "pixel_index", b.const(s, np.int64), axis=2)  # (B, V, N)
        fused = _sfa(b, *_gather_scale(b, feat, index_s, n_views))
        volume = fused if volume is None else b.op("Add", volume, fused)
    if gated:
        occ = _occupancy(b, "depth_prob", "depth_coords", n_views)
        gate_scale = b.const_from_attr("gate_scale", AttributeProto.FLOAT, "value_float")
        volume = b.op("Mul", volume, b.op("Unsqueeze", b.op("Mul", occ, gate_scale), b.const([-1], np.int64)))
    grid = b.const_from_attr("grid", AttributeProto.INTS, "value_ints")
    out_shape = b.op("Concat", b.dim(feats[0], 0), b.dim(feats[0], 2), grid, axis=0)
    b.nodes.append(helper.make_node("Reshape", [b.op("Transpose", volume, perm=[0, 2, 1]), out_shape], ["volume"]))
    return helper.make_function(
        OP_DOMAIN, OP_NAME, inputs, ["volume"], b.nodes,
        opset_imports=[helper.make_opsetid("", opset)],
        attributes=[],
        attribute_protos=[
            helper.make_attribute("grid", [1, 1, 1]),
            helper.make_attribute("gate_scale", 100.0),
            helper.make_attribute("num_scales", n_scales),  # for the plugin; the body knows S
        ],
    )
