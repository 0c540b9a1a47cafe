"""Exact graph rewrites that make ONNX Runtime's CPU provider faster on OccDepth.

Applied in memory by ``OrtBackend`` when it runs on the CPU provider; the exported file
stays as it is, since TensorRT and the GPU providers want the plain graph.

- **3D convolutions with the shortest grid axis outermost.** ORT's CPU convolution is
  im2col + GEMM, and its im2col is slow when the innermost axis is short: a 3x3x3,
  8-channel convolution on the (128, 128, 16) grid takes ~17 ms, the same on the
  (16, 128, 128) layout ~11 ms (2 cores). Each 3D Conv/ConvTranspose is wrapped in
  Transposes and given permuted weights and attributes; ORT's transpose optimizer then
  cancels the back-to-back pairs, so the head runs in the permuted layout throughout.
- **Softmax over two classes as a sigmoid of the difference.** softmax([a, b]) =
  [sigmoid(a - b), sigmoid(b - a)]; ORT's Softmax over axis 1 of a 5D tensor transposes
  internally (~8 ms on the cascade head's occupancy logits, ~0.3 ms as a sigmoid).

- **A convolution of a channel concatenation taken apart** where its parts suit ORT's
  kernels better (``ort_cpu_concat``): the 2D decoder's last block, and the cascade
  head's classifier, whose share on the trunk features joins the occupancy convolution.
- **Graph outputs left in the layout they are computed in.** A Transpose that only feeds
  a graph output (the head's last convolution back to (X, Y, Z) order, 21 MB per
  frame) is dropped; the backend applies the permutation as a view
  (``RewriteReport.output_perms``).

All are exact in real arithmetic; in float32 they change logits by a few ulps.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .onnx_graph_index import DEFAULT_DOMAINS, GraphIndex, transpose_perm
from .ort_cpu_concat import split_concat_convs

CONV_OPS = ("Conv", "ConvTranspose")
SPATIAL_RANK = 3
# Per-axis attribute lists (one value per spatial axis); "pads" holds begins then ends.
PER_AXIS_ATTRS = ("kernel_shape", "strides", "dilations", "output_padding", "output_shape")


@dataclass(frozen=True)
class RewriteReport:
    convs_permuted: int
    softmax2_replaced: int
    spatial_order: tuple[int, ...]
    concat_convs_split: int = 0
    # graph output name -> the Transpose perm the caller applies (output = array.transpose(perm))
    output_perms: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def describe(self) -> str:
        return (f"CPU graph rewrites: {self.convs_permuted} 3D convs on spatial order {self.spatial_order}, "
                f"{self.concat_convs_split} convs of a concat taken apart, "
                f"{self.softmax2_replaced} two-class softmax as sigmoid, {len(self.output_perms)} output(s) left permuted")


def spatial_order(grid_dims: tuple[int, int, int]) -> tuple[int, int, int]:
    """Spatial axes ordered shortest first (stable), so the long axes are innermost."""
    return tuple(sorted(range(SPATIAL_RANK), key=lambda axis: grid_dims[axis]))  # type: ignore[return-value]


def optimize_for_cpu(model: onnx.ModelProto, grid_dims: tuple[int, int, int]) -> RewriteReport:
    """Every rewrite, in place on ``model``'s main graph. The caller must apply
    ``output_perms`` to the session's outputs."""
    order = spatial_order(grid_dims)
    convs = permute_conv3d_layout(model, order)
    concat_convs = split_concat_convs(model)  # on the permuted layout: it reads through the Transposes
    softmaxes = softmax2_as_sigmoid(model)
    output_perms = outputs_left_permuted(model)  # last: it renames tensors
    return RewriteReport(convs, softmaxes, order, concat_convs, output_perms)


def _permute_axes(values: list[int], order: tuple[int, ...]) -> list[int]:
    return [values[axis] for axis in order]


def _permuted_attributes(node: onnx.NodeProto, order: tuple[int, ...]) -> dict[str, object]:
    attrs: dict[str, object] = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if attr.name in PER_AXIS_ATTRS:
            value = _permute_axes(list(value), order)
        elif attr.name == "pads":
            value = _permute_axes(list(value[:SPATIAL_RANK]), order) + _permute_axes(list(value[SPATIAL_RANK:]), order)
        attrs[attr.name] = value
    return attrs


def permute_conv3d_layout(model: onnx.ModelProto, order: tuple[int, int, int]) -> int:
    """Run every 3D Conv/ConvTranspose whose weight is an initializer on data whose
    spatial axes are permuted by ``order``; returns how many were rewritten."""
    if tuple(order) == tuple(range(SPATIAL_RANK)):
        return 0
    graph = model.graph
    tensors = GraphIndex(graph)
    initializers = tensors.initializers
    to_order = [0, 1] + [2 + axis for axis in order]
    back = [int(i) for i in np.argsort(to_order)]

    def is_target(node: onnx.NodeProto) -> bool:
        if node.op_type not in CONV_OPS or node.domain not in DEFAULT_DOMAINS or len(node.input) < 2:
            return False
        weight = initializers.get(node.input[1])
        return weight is not None and len(weight.dims) == 2 + SPATIAL_RANK

    targets = [node for node in graph.node if is_target(node)]
    if not targets:
        return 0
    weight_uses: dict[str, int] = defaultdict(int)
    for node in targets:
        weight_uses[node.input[1]] += 1

    permuted_weights: dict[str, str] = {}
    for name in weight_uses:
        init = initializers[name]
        array = np.ascontiguousarray(numpy_helper.to_array(init).transpose(to_order))
        if len(tensors.readers[name]) == weight_uses[name]:  # read by rewritten convs only: permute in place
            init.CopyFrom(numpy_helper.from_array(array, name))
            permuted_weights[name] = name
        else:
            new_name = f"{name}__spatial_order"
            graph.initializer.append(numpy_helper.from_array(array, new_name))
            permuted_weights[name] = new_name

    rewritten: list[onnx.NodeProto] = []
    target_ids = {id(node) for node in targets}
    for index, node in enumerate(graph.node):
        if id(node) not in target_ids:
            rewritten.append(node)
            continue
        tag = node.name or f"{node.op_type}_{index}"
        x_permuted = f"{node.input[0]}__to_order_{index}"
        y_permuted = f"{node.output[0]}__in_order_{index}"
        rewritten.append(helper.make_node("Transpose", [node.input[0]], [x_permuted], perm=to_order, name=f"{tag}__to_order"))
        inputs = [x_permuted, permuted_weights[node.input[1]], *node.input[2:]]
        rewritten.append(helper.make_node(node.op_type, inputs, [y_permuted], name=tag,
                                          **_permuted_attributes(node, order)))
        rewritten.append(helper.make_node("Transpose", [y_permuted], [node.output[0]], perm=back, name=f"{tag}__back"))
    del graph.node[:]
    graph.node.extend(rewritten)
    return len(targets)


def softmax2_as_sigmoid(model: onnx.ModelProto) -> int:
    """Softmax(axis=1) over two channels (a count known statically) -> Sigmoid(x - reversed(x))."""
    graph = model.graph
    tensors = GraphIndex(graph)
    constants_added = False
    rewritten: list[onnx.NodeProto] = []
    count = 0
    for index, node in enumerate(graph.node):
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), -1)
        if node.op_type != "Softmax" or node.domain not in DEFAULT_DOMAINS or axis != 1 \
                or tensors.channels(node.input[0]) != 2:
            rewritten.append(node)
            continue
        if not constants_added:  # Slice(x, start=-1, end=-3, axis=1, step=-1): channels swapped
            for name, value in (("start", -1), ("end", -3), ("axis", 1), ("step", -1)):
                graph.initializer.append(numpy_helper.from_array(np.array([value], np.int64), f"softmax2__{name}"))
            constants_added = True
        tag = node.name or f"Softmax_{index}"
        x = node.input[0]
        swapped, diff = f"{x}__swapped_{index}", f"{x}__diff_{index}"
        rewritten += [
            helper.make_node("Slice", [x, "softmax2__start", "softmax2__end", "softmax2__axis", "softmax2__step"],
                             [swapped], name=f"{tag}__swap"),
            helper.make_node("Sub", [x, swapped], [diff], name=f"{tag}__diff"),
            helper.make_node("Sigmoid", [diff], [node.output[0]], name=tag),
        ]
        count += 1
    del graph.node[:]
    graph.node.extend(rewritten)
    return count


def outputs_left_permuted(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Drop each Transpose whose output is a graph output used by no node and whose
    input is made by a node for it alone; that node then writes the graph output in
    its own layout. Returns {output name: perm}: the real output is
    ``array.transpose(perm)``."""
    graph = model.graph
    tensors = GraphIndex(graph)
    producers = tensors.producers
    output_names = [out.name for out in graph.output]
    perms: dict[str, tuple[int, ...]] = {}
    for out in graph.output:
        transpose = producers.get(out.name)
        if transpose is None or transpose.op_type != "Transpose" or tensors.readers[out.name] \
                or transpose.domain not in DEFAULT_DOMAINS:
            continue
        source = transpose.input[0]
        maker = producers.get(source)
        if maker is None or len(tensors.readers[source]) != 1 or source in output_names:
            continue
        perm = transpose_perm(transpose)
        if not perm:  # the default perm (all axes reversed) is not handled
            continue
        maker.output[list(maker.output).index(source)] = out.name
        graph.node.remove(transpose)
        shape = out.type.tensor_type.shape
        if len(shape.dim) == len(perm):  # the output now has the source's shape
            source_dims = [onnx.TensorShapeProto.Dimension() for _ in perm]
            for dim, axis in zip(shape.dim, perm):
                source_dims[axis].CopyFrom(dim)
            del shape.dim[:]
            shape.dim.extend(source_dims)
        kept = [info for info in graph.value_info if info.name != source]
        del graph.value_info[:]
        graph.value_info.extend(kept)
        perms[out.name] = tuple(int(a) for a in perm)
    return perms
