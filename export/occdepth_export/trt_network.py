"""What the engine builder hands TensorRT's ONNX parser, and what it reads back.

- Which graph the parser gets: TensorRT 10.0-10.6's parser imports a node through its
  model-local function before it looks for a plugin (10.7 reversed the order: "Parser
  Changes: Now prioritizes using plugins over local functions", TensorRT CHANGELOG
  10.7.0). With our plugin loaded there, the parser gets an in-memory copy without the
  functions; the file on disk keeps them (ONNX Runtime and plugin-less engines need them).
- How FP16 is asked for: the weakly typed FP16 builder flag where TensorRT has one
  (TensorRT 10), with the depth-probability layers pinned to float32; otherwise (TensorRT
  11, TensorRT for RTX) the strongly typed FP16 variant of the graph (``fp16_graph``).
- What was built: read from the network's layers (a PLUGIN_V3 layer or not).

Works on any module with TensorRT's Python API (``tensorrt``, ``tensorrt_rtx_bindings``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import onnx

PLUGIN_OVER_FUNCTION = (10, 7)  # first TensorRT whose parser prefers a registered plugin
TENSORRT, TENSORRT_RTX = "TensorRT", "TensorRT-RTX"
FP32, FP16_FLAG, FP16_TYPED = "fp32", "fp16 (builder flag, weakly typed)", "fp16 (strongly typed graph)"


@dataclass(frozen=True)
class Toolkit:
    """The TensorRT flavour at hand, as far as the builder's choices depend on it."""

    name: str
    version: tuple[int, ...]
    fp16_flag: bool  # BuilderFlag.FP16 exists (TensorRT 10)

    @classmethod
    def of(cls, trt) -> "Toolkit":
        name = TENSORRT_RTX if trt.__name__.startswith("tensorrt_rtx") else TENSORRT
        return cls(name, parse_version(trt.__version__), hasattr(trt.BuilderFlag, "FP16"))

    def describe(self) -> str:
        return f"{self.name} {'.'.join(map(str, self.version))}"

    @property
    def parser_prefers_function(self) -> bool:
        """True where the ONNX parser inlines a node's local function even when a plugin
        for it is registered. TensorRT for RTX's parser prefers the plugin (it is built
        from TensorRT >= 10.7's parser; tests/test_trt_build.py checks it)."""
        return self.name == TENSORRT and self.version[:2] < PLUGIN_OVER_FUNCTION

    def precision_mode(self, precision: str) -> str:
        if precision == "fp32":
            return FP32
        return FP16_FLAG if self.fp16_flag else FP16_TYPED


def parse_version(text: str) -> tuple[int, ...]:
    """'10.3.0.30' -> (10, 3, 0, 30); a suffix such as '11.1.0rc1' is ignored."""
    parts = []
    for piece in text.split("."):
        match = re.match(r"\d+", piece)
        if match is None:
            break
        parts.append(int(match.group()))
    if not parts:
        raise ValueError(f"not a version: {text!r}")
    return tuple(parts)


def graph_for_parser(model: onnx.ModelProto, toolkit: Toolkit, plugin_loaded: bool) -> tuple[onnx.ModelProto, bool]:
    """(the graph to parse, whether its model-local functions were dropped). ``model`` is
    not changed."""
    if not (plugin_loaded and toolkit.parser_prefers_function and len(model.functions)):
        return model, False
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    del stripped.functions[:]
    return stripped, True


def network_layers(network) -> list:
    return [network.get_layer(i) for i in range(network.num_layers)]


def plugin_layer_names(trt, network) -> list[str]:
    """Names of the network's PLUGIN_V3 layers (ours is the only plugin we export)."""
    return [layer.name for layer in network_layers(network) if layer.type == trt.LayerType.PLUGIN_V3]


def plugin_layer_types(network, name: str) -> tuple[str, ...]:
    """The declared types of a layer's inputs, then outputs ("HALF", "FLOAT", "INT32")."""
    (layer,) = [layer for layer in network_layers(network) if layer.name == name]
    tensors = [layer.get_input(k) for k in range(layer.num_inputs)]
    tensors += [layer.get_output(k) for k in range(layer.num_outputs)]
    return tuple(t.dtype.name for t in tensors)


def depth_prob_layers(trt, network, value_names: set[str]) -> list:
    """The layers that compute these ONNX values (the lift's depth_prob path), walking
    back through the parser's shuffles to the layer that does the work: the parser names
    a node's final output tensor after its ONNX value, but may add a shuffle after the
    layer of the node itself (a softmax over axis 2 becomes SOFTMAX + SHUFFLE)."""
    producer = {}
    for layer in network_layers(network):
        for k in range(layer.num_outputs):
            producer[layer.get_output(k).name] = layer
    found: dict[str, object] = {}
    for name in sorted(value_names):
        layer = producer.get(name)
        while layer is not None and layer.name not in found:
            found[layer.name] = layer
            if layer.type != trt.LayerType.SHUFFLE or layer.num_inputs == 0 or layer.get_input(0) is None:
                break
            layer = producer.get(layer.get_input(0).name)
    return list(found.values())


def pin_float32(trt, network, config, value_names: set[str]) -> int:
    """Weakly typed FP16: keep the layers that compute these values in float32 (the
    builder prefers the constraint; TensorRT 10's flags). Returns how many were pinned."""
    layers = depth_prob_layers(trt, network, value_names)
    for layer in layers:
        layer.precision = trt.float32
        for k in range(layer.num_outputs):
            layer.set_output_type(k, trt.float32)
    if layers:
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    return len(layers)
