"""What a TensorRT build or run needs from the machine, with errors that say what is
missing: the tensorrt Python package, a CUDA GPU, and our plugin library."""

from __future__ import annotations

import os
from pathlib import Path

from ..resources import share_dir
from .base import BackendError

PLUGIN_ENV = "OCCDEPTH_TRT_PLUGIN"
PLUGIN_FILE = "liboccdepth_svs_trt.so"
NO_PLUGIN = "none"
MIN_TENSORRT_MAJOR = 10  # IPluginV3 and plugin-over-local-function preference (>= 10.7)


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendError(
            f"TensorRT is not importable ({exc}). Install TensorRT >= {MIN_TENSORRT_MAJOR} with its Python "
            "bindings (JetPack 6 ships it; desktop: NVIDIA's tensorrt wheels), or use backend 'onnxruntime'"
        ) from exc
    major = int(trt.__version__.split(".")[0])
    if major < MIN_TENSORRT_MAJOR:
        raise BackendError(f"TensorRT {trt.__version__} is too old; the IPluginV3 plugin needs >= {MIN_TENSORRT_MAJOR}")
    return trt


def compute_capability(device: str = "cuda:0") -> str:
    import torch

    if not torch.cuda.is_available():
        raise BackendError("TensorRT needs a CUDA GPU and a CUDA build of torch; none is available here")
    major, minor = torch.cuda.get_device_capability(torch.device(device))
    return f"{major}.{minor}"


def find_plugin_library(explicit: str | Path | None = None) -> Path | None:
    """The plugin .so: ``explicit``, else $OCCDEPTH_TRT_PLUGIN, else the usual CMake build
    folders. None when not found or ``explicit`` is "none" (the engine then inlines the
    ONNX function)."""
    if str(explicit) == NO_PLUGIN:
        return None
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise BackendError(f"TensorRT plugin library not found: {path} (build it: see export/plugin/README.md)")
        return path
    if os.environ.get(PLUGIN_ENV):
        return find_plugin_library(os.environ[PLUGIN_ENV])
    for folder in (share_dir() / "build" / "svs", Path.cwd() / "build" / "svs"):
        if (folder / PLUGIN_FILE).is_file():
            return folder / PLUGIN_FILE
    return None


def load_plugin(trt, path: Path | None) -> None:
    """Register the plugin's creators with TensorRT (before parsing or deserialising)."""
    if path is None:
        return
    try:
        trt.get_plugin_registry().load_library(str(path))
    except Exception as exc:  # TensorRT raises its own error types
        raise BackendError(f"TensorRT cannot load plugin library {path}: {exc}") from exc
