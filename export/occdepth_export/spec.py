"""Identity of the StereoVoxelSample node, shared by the exporter, the ONNX function,
the engine builder and the TensorRT plugin (which hard-codes the same strings in C++:
``export/plugin/src/svs_trt_plugin.cpp``)."""

OP_DOMAIN = "occdepth"
OP_NAME = "StereoVoxelSample"
OP_VERSION = 1  # the ONNX opset version of OP_DOMAIN and the plugin version ("1")
PLUGIN_NAMESPACE = OP_DOMAIN

ONNX_OPSET = 20  # default opset of torch 2.13's dynamo exporter
ONNX_IR_VERSION = 10  # ONNX Runtime 1.31 accepts IR <= 13; torch writes 10

