"""Runtime backends: one interface (images + lift lookups -> semantic logits) that the
inference pipeline calls, implemented by eager PyTorch, ONNX Runtime and TensorRT."""

from .base import Backend, BackendError
from .factory import BACKEND_CHOICES, BACKENDS
from .torch_backend import TorchBackend

__all__ = ["BACKEND_CHOICES", "BACKENDS", "Backend", "BackendError", "TorchBackend"]
