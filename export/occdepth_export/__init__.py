"""occdepth_export: the trained network to ONNX (the lift as one StereoVoxelSample node
carrying a model-local function) and to TensorRT engines (engine builder and cache).

Where each backend's implementation of the lift lives:

| backend | implementation |
|---|---|
| eager torch, tracing | the op ``torch.ops.occdepth.stereo_voxel_sample`` (``occdepth_ros/ops/torch_op.py``): the native CPU kernel on the CPU, the reference elsewhere |
| ONNX Runtime, TensorRT without plugin | ``onnx_function.py`` (model-local function) |
| TensorRT | ``../plugin/`` (C++/CUDA IPluginV3) |
"""

from .spec import OP_DOMAIN, OP_NAME, OP_VERSION

__all__ = ["OP_DOMAIN", "OP_NAME", "OP_VERSION"]
