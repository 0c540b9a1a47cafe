"""What an exported ONNX file looks like from the outside: graph inputs and outputs and the
metadata keys. The exporter writes files to this contract and the runtimes read them by
it; it lives here, below the exporter, so the runtime never imports the exporter."""

# Graph inputs and outputs of an exported model, in order.
INPUT_IMAGES = "images"  # (1, V, 3, H, W) float32, normalised
INPUT_PIXEL_INDEX = "pixel_index"  # (1, V, S, N) int32
INPUT_DEPTH_COORDS = "depth_coords"  # (1, V, N, 3) float32
INPUT_PIXEL_SIZE = "pixel_size"  # (1, V, 1) float32
OUTPUT_SSC_LOGIT = "ssc_logit"  # (1, classes, X, Y, Z) float32

# metadata_props keys
META_FORMAT = "occdepth_ros.format"
META_FORMAT_VALUE = "occdepth_ros-onnx/1"
META_CONFIG = "occdepth_ros.config"  # the model config YAML
META_SOURCE = "occdepth_ros.source"  # checkpoint path or preset it was exported from
META_WEIGHTS_SHA256 = "occdepth_ros.weights_sha256"
INPUT_NAMES = (INPUT_IMAGES, INPUT_PIXEL_INDEX, INPUT_DEPTH_COORDS, INPUT_PIXEL_SIZE)
# What the graph computes in: absent or "fp32" for the exported graph, "int8" for the
# quantised (QDQ) variant that occdepth_export.quantize writes.
META_PRECISION = "occdepth_ros.precision"
PRECISION_FP32 = "fp32"
PRECISION_INT8 = "int8"
