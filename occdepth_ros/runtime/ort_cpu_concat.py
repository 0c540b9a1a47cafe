"""Convolutions of a channel concatenation, taken apart for ONNX Runtime's CPU kernels.

conv(concat([a, b]), W) + bias = conv(a, W[:, :Ca]) + bias + conv(b, W[:, Ca:]). Taken
apart where that lets ORT run faster kernels (one rewrite of ``ort_cpu_graph``):

- **2D, blocked layout.** ORT's fast (NCHWc) 2D convolution needs input channels that
  are a multiple of its block (8 or 16) or fewer than 8. The 2D decoder's last block
  concatenates 16 feature channels with the 3 image channels: 19 is neither, its
  parts are (~5 ms at 184x608 on 2 cores).
- **A part another convolution also reads.** The cascade head's classifier reads
  [trunk features, softmax(occupancy logits)], and the occupancy convolution reads the
  same trunk features. The classifier's share on the features joins the occupancy
  convolution as extra output channels (then a Split). ORT's 3D convolution is im2col +
  GEMM, and the im2col (27 taps x 8 channels per voxel) is paid per convolution whatever
  its output count: in a profile the 2-output occupancy convolution ran at ~18 GFLOP/s,
  the 20-output classifier at ~98. One im2col now replaces two.

Works on either layout ``permute_conv3d_layout`` leaves (a convolution's input may come
through one Transpose). Exact in real arithmetic; float32 sums change by a few ulps.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .onnx_graph_index import CHANNEL_AXIS, DEFAULT_DOMAINS, GraphIndex, int_attr

# MLAS's blocked-layout block is 8 channels (AVX2) or 16 (AVX-512); inputs with fewer
# channels than a block are read as they are.
NCHWC_BLOCK_MAX, NCHWC_BLOCK_MIN = 16, 8
# Conv attributes two convolutions must share, with ONNX's defaults (per spatial axis; pads: begins and ends)
CONV_DEFAULTS = {"strides": 1, "dilations": 1, "pads": 0}


def nchwc_ready(channels: int) -> bool:
    """Whether ORT's blocked 2D convolution takes an input with this many channels
    on either block size."""
    return channels % NCHWC_BLOCK_MAX == 0 or channels < NCHWC_BLOCK_MIN


def _conv_signature(index: GraphIndex, node: onnx.NodeProto) -> tuple | None:
    """The attributes two convolutions must share to be joined; None for a Conv this
    rewrite does not handle (grouped, auto_pad, weights not constant)."""
    if node.op_type != "Conv" or node.domain not in DEFAULT_DOMAINS or len(node.input) < 2:
        return None
    if any(name not in index.initializers for name in node.input[1:] if name):
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if int(attrs.get("group", 1)) != 1 or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") \
            or set(attrs) - set(CONV_DEFAULTS) - {"group", "auto_pad", "kernel_shape"}:
        return None
    kernel = tuple(index.initializers[node.input[1]].dims[2:])
    spatial = len(kernel)
    return (kernel, *(tuple(attrs.get(name, [value] * spatial * (2 if name == "pads" else 1)))
                      for name, value in CONV_DEFAULTS.items()))


class _Builder:
    """New nodes and initializers, named after the node they replace."""

    def __init__(self, graph: onnx.GraphProto, tag: str) -> None:
        self.graph, self.tag, self.count = graph, tag, 0

    def name(self, what: str) -> str:
        self.count += 1
        return f"{self.tag}__{what}_{self.count}"

    def constant(self, what: str, array: np.ndarray) -> str:
        name = self.name(what)
        self.graph.initializer.append(numpy_helper.from_array(array, name))
        return name

    def conv(self, like: onnx.NodeProto, x: str, weight: np.ndarray, bias: np.ndarray | None, out: str) -> onnx.NodeProto:
        inputs = [x, self.constant("weight", np.ascontiguousarray(weight))]
        if bias is not None:
            inputs.append(self.constant("bias", bias))
        return helper.make_node("Conv", inputs, [out], name=self.name("conv"),
                                **{a.name: helper.get_attribute_value(a) for a in like.attribute})


def split_concat_convs(model: onnx.ModelProto) -> int:
    """Every Conv on an axis-1 Concat where a case above applies, as a sum of
    convolutions of the parts; returns how many were taken apart."""
    graph = model.graph
    index = GraphIndex(graph)
    position = {id(node): i for i, node in enumerate(graph.node)}
    replaced: dict[int, list[onnx.NodeProto]] = {}  # id(node) -> the nodes in its place
    partnered: set[int] = set()
    no_longer_read: set[str] = set()  # what the replaced nodes read: dropped below if nothing else does
    count = 0
    for conv in list(graph.node):
        signature = _conv_signature(index, conv)
        if signature is None or id(conv) in replaced or id(conv) in partnered:
            continue
        source, perm = index.unwrap(conv.input[0])
        concat = index.producers.get(source)
        if concat is None or concat.op_type != "Concat" or concat.domain not in DEFAULT_DOMAINS \
                or int_attr(concat, "axis", 0) != CHANNEL_AXIS:
            continue
        parts = list(concat.input)
        widths = [index.channels(p) for p in parts]
        weight = index.weight(conv, 1)
        if len(parts) < 2 or None in widths or len(set(parts)) != len(parts) or sum(widths) != weight.shape[1]:
            continue
        partners = _partners(index, conv, signature, parts, widths, perm, position, partnered | set(replaced))
        blocked_2d = len(signature[0]) == 2 and all(map(nchwc_ready, widths)) and not nchwc_ready(sum(widths))
        if not partners and not blocked_2d:
            continue
        _take_apart(index, conv, parts, widths, perm, partners, replaced)
        partnered.update(id(p) for p in partners.values())
        no_longer_read.update([*conv.input, *(name for p in partners.values() for name in p.input[1:])])
        count += 1
    if not count:
        return 0
    rewritten: list[onnx.NodeProto] = []
    for node in graph.node:
        rewritten.extend(replaced.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(rewritten)
    _drop_unread(graph, no_longer_read)
    return count


def _partners(index: GraphIndex, conv: onnx.NodeProto, signature: tuple, parts: list[str], widths: list[int],
              perm: tuple[int, ...] | None, position: dict[int, int], taken: set[int]) -> dict[int, onnx.NodeProto]:
    """part number -> an earlier Conv with the same attributes that reads that part
    (through the same Transpose perm): the two can share one im2col."""
    found: dict[int, onnx.NodeProto] = {}
    for i, part in enumerate(parts):
        direct = index.readers[part]
        through_transpose = [r for t in direct if t.op_type == "Transpose" for r in index.readers[t.output[0]]]
        for other in direct + through_transpose:
            if other is conv or id(other) in taken or other in found.values() \
                    or position[id(other)] > position[id(conv)] \
                    or _conv_signature(index, other) != signature or index.unwrap(other.input[0]) != (part, perm) \
                    or index.weight(other, 1).shape[1] != widths[i]:
                continue
            found[i] = other
            break
    return found


def _take_apart(index: GraphIndex, conv: onnx.NodeProto, parts: list[str], widths: list[int],
                perm: tuple[int, ...] | None, partners: dict[int, onnx.NodeProto],
                replaced: dict[int, list[onnx.NodeProto]]) -> None:
    build = _Builder(index.graph, conv.name or conv.output[0])
    weight, bias = index.weight(conv, 1), index.weight(conv, 2)
    starts = np.cumsum([0, *widths])
    sums: list[str] = []
    in_place: list[onnx.NodeProto] = []
    for i, part in enumerate(parts):
        part_weight = weight[:, starts[i]:starts[i + 1]]
        part_bias = bias if i == 0 else None
        out = build.name("part")
        partner = partners.get(i)
        if partner is not None:  # one conv, both output sets, then a Split
            p_weight, p_bias = index.weight(partner, 1), index.weight(partner, 2)
            n_conv, n_partner = weight.shape[0], p_weight.shape[0]
            joined_bias = np.concatenate([part_bias if part_bias is not None else np.zeros(n_conv, weight.dtype),
                                          p_bias if p_bias is not None else np.zeros(n_partner, weight.dtype)])
            joined = build.name("joined")
            sizes = build.constant("sizes", np.array([n_conv, n_partner], np.int64))
            replaced[id(partner)] = [
                build.conv(partner, partner.input[0], np.concatenate([part_weight, p_weight]), joined_bias, joined),
                helper.make_node("Split", [joined, sizes], [out, partner.output[0]], axis=CHANNEL_AXIS,
                                 name=build.name("split")),
            ]
        else:
            x = part
            if perm is not None:
                x = build.name("to_layout")
                in_place.append(helper.make_node("Transpose", [part], [x], perm=list(perm), name=build.name("transpose")))
            in_place.append(build.conv(conv, x, part_weight, part_bias, out))
        sums.append(out)
    total = sums[0]
    for k, term in enumerate(sums[1:], start=1):
        total_out = conv.output[0] if k == len(sums) - 1 else build.name("sum")
        in_place.append(helper.make_node("Add", [total, term], [total_out], name=build.name("add")))
        total = total_out
    replaced[id(conv)] = in_place


def _names_read(graph: onnx.GraphProto) -> set[str]:
    """Every tensor a node reads, subgraphs (If/Loop bodies) included, and the outputs."""
    read = {out.name for out in graph.output}
    for node in graph.node:
        read.update(node.input)
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                read |= _names_read(sub)
    return read


def _drop_unread(graph: onnx.GraphProto, candidates: set[str]) -> None:
    """Remove what the rewrite left unread: among ``candidates``, the nodes making them
    (the Concat, its Transpose; then what only those read), and initializers."""
    candidates = set(candidates)
    while True:
        read = _names_read(graph)
        dead = [node for node in graph.node
                if any(out in candidates for out in node.output) and not any(out in read for out in node.output)]
        if not dead:
            break
        for node in dead:
            candidates.update(node.input)
            graph.node.remove(node)
    read = _names_read(graph) | {inp.name for inp in graph.input}
    kept = [init for init in graph.initializer if init.name in read or init.name not in candidates]
    del graph.initializer[:]
    graph.initializer.extend(kept)
