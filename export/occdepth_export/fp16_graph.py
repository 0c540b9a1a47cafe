"""The FP16 variant of an exported graph, for strongly typed TensorRT networks.

TensorRT 11 and TensorRT for RTX have no FP16 builder flag: a network computes in the
types its tensors carry. This module writes those types: every float32 tensor becomes
float16, except what the lift's contract (docs/stereo_voxel_sample.md) keeps in float32:

- ``depth_prob``: the softmax over the depth bins, computed in float32 from the (float16)
  depth logits, and every shape-only node between it and the lift;
- ``depth_coords``: a graph input, passed to the lift as float32;
- the lift's own sums (SFA dots and norms, the trilinear sample and the mean over views):
  the plugin accumulates in float32 whatever its feature type, and the model-local
  function gets its feature inputs cast to float32 and its result cast back.

The graph's inputs and output keep their float32 types (Casts at the edges), so an FP16
engine binds the same buffers as an FP32 one. Only ever built in memory: the file on disk
stays as exported.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .spec import OP_DOMAIN, OP_NAME

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
FP16_MAX = float(np.finfo(np.float16).max)
# Nodes that only move or reshape data; the float32 path from the lift's depth_prob input
# back to its softmax may pass through them.
SHAPE_ONLY = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Slice",
                        "Expand"})
# Inputs whose type ONNX fixes to float32 whatever the data type: (op_type, input index).
FIXED_FLOAT_INPUTS = frozenset({("Resize", 2)})  # scales is tensor(float)
_SUFFIX = {FLOAT: "fp32", HALF: "fp16"}


class Fp16GraphError(ValueError):
    """The graph cannot be turned into the FP16 variant (no lift node, a weight beyond
    float16's range, a depth_prob that is not float32)."""


def lift_node(graph: onnx.GraphProto) -> onnx.NodeProto:
    nodes = [n for n in graph.node if n.domain == OP_DOMAIN and n.op_type == OP_NAME]
    if len(nodes) != 1:
        raise Fp16GraphError(f"expected one {OP_DOMAIN}::{OP_NAME} node, the graph has {len(nodes)}")
    return nodes[0]


def lift_num_scales(node: onnx.NodeProto) -> int:
    for attr in node.attribute:
        if attr.name == "num_scales":
            return int(helper.get_attribute_value(attr))
    raise Fp16GraphError(f"{OP_NAME} node '{node.name}' has no num_scales attribute")


def depth_prob_path(graph: onnx.GraphProto) -> tuple[set[str], set[str]]:
    """(values, node names) that carry the lift's depth_prob in float32: its input, the
    shape-only nodes before it and the Softmax that computes it. Empty without the gate."""
    lift = lift_node(graph)
    scales = lift_num_scales(lift)
    if len(lift.input) <= scales + 1:
        return set(), set()
    producer = {out: n for n in graph.node for out in n.output}
    values, nodes = set(), set()
    name = lift.input[scales + 1]
    while name:
        values.add(name)
        node = producer.get(name)
        if node is None:  # a graph input: float32 already
            break
        nodes.add(node.name)
        if node.op_type not in SHAPE_ONLY:
            break
        name = node.input[0]
    return values, nodes


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.input, *g.value_info, *g.output]}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def half_feature_function(function: onnx.FunctionProto, num_scales: int) -> onnx.FunctionProto:
    """The lift's function for float16 features: they are cast to float32 on entry and the
    volume back to float16 on exit, so every sum in the body stays float32."""
    fn = onnx.FunctionProto()
    fn.CopyFrom(function)
    entry = []
    renamed = {}
    for s in range(num_scales):
        name = fn.input[s]
        renamed[name] = f"{name}_float32"
        entry.append(helper.make_node("Cast", [name], [renamed[name]], to=FLOAT))
    for node in fn.node:
        node.input[:] = [renamed.get(i, i) for i in node.input]
    (volume,) = fn.output
    for node in fn.node:
        node.output[:] = [f"{volume}_float32" if o == volume else o for o in node.output]
    exit_cast = helper.make_node("Cast", [f"{volume}_float32"], [volume], to=HALF)
    nodes = entry + list(fn.node) + [exit_cast]
    del fn.node[:]
    fn.node.extend(nodes)
    return fn


def _half_tensor(t: onnx.TensorProto, where: str) -> onnx.TensorProto:
    arr = numpy_helper.to_array(t)
    if arr.size and np.abs(arr[np.isfinite(arr)]).max(initial=0.0) > FP16_MAX:
        raise Fp16GraphError(f"{where} '{t.name}' holds values beyond float16's range ({FP16_MAX:g})")
    return numpy_helper.from_array(arr.astype(np.float16), t.name)


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` that computes in float16 except where the lift's contract
    keeps float32 (module docstring). Raises Fp16GraphError with the reason."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    types = _value_types(out)
    lift = lift_node(g)
    scales = lift_num_scales(lift)
    if len(lift.input) > scales + 1 and types.get(lift.input[scales + 1]) != FLOAT:
        raise Fp16GraphError("the lift's depth_prob must be float32 (docs/stereo_voxel_sample.md)")
    keep_values = depth_prob_path(g)[0]

    def is_lift(node: onnx.NodeProto) -> bool:
        return node.domain == OP_DOMAIN and node.op_type == OP_NAME

    def precision(node: onnx.NodeProto) -> int:
        """float32 for the nodes that compute the depth_prob path."""
        return FLOAT if any(o in keep_values for o in node.output) else HALF

    def wanted(node: onnx.NodeProto, index: int) -> int:
        if is_lift(node):
            return HALF if index < scales else FLOAT
        if (node.op_type, index) in FIXED_FLOAT_INPUTS:
            return FLOAT
        return precision(node)

    # Weights: float16 where every consumer computes in float16, else left float32.
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in g.node:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, i))
    new_type = {vi.name: vi.type.tensor_type.elem_type for vi in g.input}
    for k, t in enumerate(g.initializer):
        new_type[t.name] = t.data_type
        if t.data_type == FLOAT and all(wanted(n, i) == HALF for n, i in consumers.get(t.name, [])):
            g.initializer[k].CopyFrom(_half_tensor(t, "weight"))
            new_type[t.name] = HALF

    casts: dict[tuple[str, int], str] = {}
    nodes: list[onnx.NodeProto] = []
    for node in g.node:
        for i, name in enumerate(node.input):
            if not name or types.get(name) != FLOAT or new_type.get(name) == wanted(node, i):
                continue
            key = (name, wanted(node, i))
            if key not in casts:
                casts[key] = f"{name}_{_SUFFIX[key[1]]}"
                nodes.append(helper.make_node("Cast", [name], [casts[key]], to=key[1], name=f"cast_{casts[key]}"))
                new_type[casts[key]] = key[1]
            node.input[i] = casts[key]
        dtype = HALF if is_lift(node) else precision(node)
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == FLOAT:
                attr.i = dtype
            elif node.op_type in ("Constant", "ConstantOfShape") and attr.t.data_type == FLOAT and dtype == HALF:
                attr.t.CopyFrom(_half_tensor(attr.t, f"{node.op_type} {node.name}"))
        for name in node.output:
            if types.get(name) == FLOAT:
                new_type[name] = dtype
        nodes.append(node)
    # Outputs keep float32: the producer writes a float16 value, a Cast the output.
    for output in g.output:
        if types.get(output.name) == FLOAT and new_type.get(output.name) == HALF:
            inner = f"{output.name}_fp16"
            for node in nodes:
                node.output[:] = [inner if o == output.name else o for o in node.output]
                node.input[:] = [inner if i == output.name else i for i in node.input]
            nodes.append(helper.make_node("Cast", [inner], [output.name], to=FLOAT, name=f"cast_{output.name}"))
            new_type[inner] = HALF
    del g.node[:]
    g.node.extend(nodes)
    for vi in g.value_info:
        if vi.name in new_type and vi.type.tensor_type.elem_type in (FLOAT, HALF):
            vi.type.tensor_type.elem_type = new_type[vi.name]
    for k, fn in enumerate(out.functions):
        if fn.domain == OP_DOMAIN and fn.name == OP_NAME:
            out.functions[k].CopyFrom(half_feature_function(fn, scales))
    if any(new_type.get(v) != FLOAT for v in keep_values):
        raise Fp16GraphError(f"the depth_prob path {sorted(keep_values)} did not stay float32")
    onnx.checker.check_model(out, full_check=True)
    return out
