"""What a TensorRT build or run needs from the machine, with errors that say what is
missing: the tensorrt Python package, a CUDA GPU, and our plugin library."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ..resources import share_dir
from .base import BackendError

PLUGIN_ENV = "OCCDEPTH_TRT_PLUGIN"
PLUGIN_FILE = "liboccdepth_svs_trt.so"
NO_PLUGIN = "none"
MIN_TENSORRT_MAJOR = 10  # IPluginV3; below 10.7 the builder parses the graph without its ONNX function
JETSON_MODEL_FILE = Path("/proc/device-tree/model")  # "NVIDIA Jetson AGX Orin Developer Kit"

# Plugin libraries registered with TensorRT in this process (real paths). TensorRT keeps a
# library's creators for the life of the process, and a second registration of the same
# creators is an error in its log, so each library is loaded once.
_loaded_plugins: dict[str, str] = {}  # TensorRT module name -> the library's real path
_plugin_lock = threading.Lock()


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


def _require_cuda():
    import torch

    if not torch.cuda.is_available():
        raise BackendError("TensorRT needs a CUDA GPU and a CUDA build of torch; none is available here")
    return torch


def compute_capability(device: str = "cuda:0") -> str:
    torch = _require_cuda()
    major, minor = torch.cuda.get_device_capability(torch.device(device))
    return f"{major}.{minor}"


def describe_gpu(name: str, multiprocessors: int, board: str = "") -> str:
    """The GPU model as the engine cache keys it. Jetson Orin Nano, NX and AGX all report
    compute capability 8.7 and the device name "Orin"; their SM counts and the board
    name (device tree) tell them apart, and an engine tuned for one is not for another."""
    text = f"{name.strip()} ({multiprocessors} SMs)"
    return f"{text} on {board.strip()}" if board.strip() else text


def board_model(path: Path = JETSON_MODEL_FILE) -> str:
    """The device tree's model string (Jetson boards), "" elsewhere."""
    try:
        return path.read_bytes().rstrip(b"\0").decode(errors="replace").strip()
    except OSError:
        return ""


def gpu_model(device: str | None = None) -> str:
    """describe_gpu() for a CUDA device (default: the current one)."""
    torch = _require_cuda()
    props = torch.cuda.get_device_properties(torch.device(device) if device else torch.cuda.current_device())
    return describe_gpu(props.name, props.multi_processor_count, board_model())


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
    """Register the plugin's creators with TensorRT (before parsing or deserialising),
    once per process: building an engine and then running it loads the library once.
    A different library with the same creators cannot replace the first: refused."""
    if path is None:
        return
    real, registry = os.path.realpath(path), getattr(trt, "__name__", "tensorrt")
    with _plugin_lock:
        loaded = _loaded_plugins.get(registry)
        if loaded == real:
            return
        if loaded is not None:
            raise BackendError(f"plugin library {path} cannot be loaded: {loaded} is already registered in this "
                               "process and TensorRT keeps the first library's creators; use one library")
        try:
            trt.get_plugin_registry().load_library(str(path))
        except Exception as exc:  # TensorRT raises its own error types
            raise BackendError(f"TensorRT cannot load plugin library {path}: {exc}") from exc
        _loaded_plugins[registry] = real
