"""Who makes and who reads each tensor of an ONNX graph, for the CPU rewrites."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper

CHANNEL_AXIS = 1
DEFAULT_DOMAINS = ("", "ai.onnx")


def transpose_perm(node: onnx.NodeProto) -> list[int]:
    """A Transpose's perm attribute; [] when absent (the default reverses the axes)."""
    return next((list(helper.get_attribute_value(a)) for a in node.attribute if a.name == "perm"), [])


class GraphIndex:
    """Who makes and who reads each tensor, and what static channel counts are known."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.initializers = {init.name: init for init in graph.initializer}
        self.producers = {out: node for node in graph.node for out in node.output}
        self.readers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.readers[name].append(node)
        self.outputs = {out.name for out in graph.output}
        self._shapes = {info.name: info.type.tensor_type.shape
                        for info in [*graph.value_info, *graph.input, *graph.output]}

    def channels(self, name: str) -> int | None:
        """Axis-1 size of a tensor: from its declared shape, or from the node that makes
        it (a Conv's weight, a Split's sizes), through axis-1-keeping Transposes."""
        shape = self._shapes.get(name)
        if shape is not None and len(shape.dim) > CHANNEL_AXIS and shape.dim[CHANNEL_AXIS].HasField("dim_value"):
            return int(shape.dim[CHANNEL_AXIS].dim_value)
        node = self.producers.get(name)
        if node is None or node.domain not in DEFAULT_DOMAINS:
            return None
        if node.op_type == "Transpose" and transpose_perm(node)[:2] == [0, 1]:
            return self.channels(node.input[0])
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in self.initializers:
            return int(self.initializers[node.input[1]].dims[0])
        if node.op_type == "Split" and int_attr(node, "axis", 0) == CHANNEL_AXIS and len(node.input) > 1 \
                and node.input[1] in self.initializers:
            sizes = numpy_helper.to_array(self.initializers[node.input[1]])
            return int(sizes[list(node.output).index(name)])
        return None

    def unwrap(self, name: str) -> tuple[str, tuple[int, ...] | None]:
        """(the tensor before one Transpose, its perm), or (name, None) without one."""
        node = self.producers.get(name)
        if node is not None and node.op_type == "Transpose" and node.domain in DEFAULT_DOMAINS and transpose_perm(node):
            return node.input[0], tuple(transpose_perm(node))
        return name, None

    def weight(self, conv: onnx.NodeProto, index: int) -> np.ndarray | None:
        if len(conv.input) <= index or not conv.input[index]:
            return None
        return numpy_helper.to_array(self.initializers[conv.input[index]])


def int_attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((int(helper.get_attribute_value(a)) for a in node.attribute if a.name == name), default)
