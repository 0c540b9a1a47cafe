"""An exact graph rewrite for ONNX Runtime's OpenVINO provider: logits come out class-last.

OpenVINO's CPU plugin runs the cascade head's last convolution in a channels-last
(blocked) layout; a graph output in (1, classes, X, Y, Z) order then costs a reorder of
the whole 21 MB tensor (~12 ms of ~230 ms in an OpenVINO profile, 2 cores). Ending the
graph with Transpose(0, 2, 3, 4, 1) lets the plugin write its own layout; the backend
views the array back in class-first order (a permute, no copy), and postprocess reads
either layout. Applied in memory: the file stays as exported for every other runtime.
"""

from __future__ import annotations

import onnx
from onnx import helper

CHANNEL_AXIS = 1


def output_class_axis_last(model: onnx.ModelProto, name: str) -> tuple[int, ...]:
    """Make graph output ``name`` channels-last; returns the perm that views it back
    (``array.transpose(perm)`` is the original output)."""
    graph = model.graph
    output = next((out for out in graph.output if out.name == name), None)
    if output is None:
        raise ValueError(f"graph has no output {name!r}")
    shape = output.type.tensor_type.shape
    rank = len(shape.dim)
    if rank < 3:
        raise ValueError(f"output {name!r} has rank {rank}; a channel axis and at least one more are needed")
    producer = next((node for node in graph.node if name in node.output), None)
    if producer is None:
        raise ValueError(f"output {name!r} is not made by a node")
    to_last = [0, *range(CHANNEL_AXIS + 1, rank), CHANNEL_AXIS]
    class_first = f"{name}__class_first"
    producer.output[list(producer.output).index(name)] = class_first
    graph.node.append(helper.make_node("Transpose", [class_first], [name], perm=to_last, name=f"{name}__class_last"))
    dims = [onnx.TensorShapeProto.Dimension() for _ in range(rank)]
    for new_axis, old_axis in enumerate(to_last):
        dims[new_axis].CopyFrom(shape.dim[old_axis])
    del shape.dim[:]
    shape.dim.extend(dims)
    return tuple(to_last.index(axis) for axis in range(rank))
