"""Backend ``auto``: the fastest runtime this machine has, and one line saying why.

TensorRT where it imports and a CUDA device exists (on that device: a GPU named in
``device``, else cuda:0); else ONNX Runtime, whose provider choice (ort_providers)
prefers OpenVINO on x86 CPUs; else eager torch. What is installed is probed once into
an ``Availability``, so the choice itself is a plain function, tested with any
combination injected.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

from .base import BackendError
from .engine_cache import ENGINE_SUFFIX
from .ort_providers import choose_providers

AUTO = "auto"
DEFAULT_GPU = "cuda:0"
ONNX_SUFFIX = ".onnx"


@dataclass(frozen=True)
class Availability:
    """What can run here. Each ``*_missing`` is "" when usable, else why not."""

    tensorrt_missing: str
    tensorrt_version: str
    cuda_devices: tuple[str, ...]  # names, index = CUDA ordinal; () without a CUDA build of torch or a GPU
    onnxruntime_missing: str
    ort_providers: tuple[str, ...]  # installed execution providers, () without onnxruntime
    machine: str  # platform.machine(): x86_64, aarch64


@dataclass(frozen=True)
class BackendChoice:
    backend: str  # torch | onnxruntime | tensorrt
    device: str
    reason: str

    def summary(self) -> str:
        """The start-up log line's text."""
        return f"backend auto chose {self.backend} on {self.device}: {self.reason}"


def probe() -> Availability:
    """Import what the choice depends on (TensorRT, torch's CUDA, onnxruntime)."""
    import torch

    from .trt_env import import_tensorrt

    try:
        trt_missing, trt_version = "", import_tensorrt().__version__
    except BackendError as exc:
        trt_missing, trt_version = str(exc).split(". ")[0], ""
    gpus = tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) \
        if torch.cuda.is_available() else ()
    try:
        import onnx  # noqa: F401 - the exporter writes the ONNX file ONNX Runtime runs

        from .ort_backend import available_providers

        ort_missing, providers = "", tuple(available_providers())
    except (ImportError, BackendError) as exc:
        ort_missing, providers = f"not importable: {exc}", ()
    return Availability(trt_missing, trt_version, gpus, ort_missing, providers, platform.machine())


def _gpu_index(device: str) -> int | None:
    if device == "cuda":
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    return None


def choose_backend(device: str, have: Availability, model_suffix: str = "", ort_provider: str = "",
                   ) -> BackendChoice:
    """``device``: what the user set ("cpu", the node's default, still lets auto run
    TensorRT on cuda:0; "cuda:N" pins that GPU). ``model_suffix``: ".engine" or ".onnx"
    when the model is such a file (an engine runs on TensorRT only; an ONNX file not on
    torch). ``ort_provider``: the user's ONNX Runtime provider ("" = best installed)."""
    index = _gpu_index(device)
    gpu = DEFAULT_GPU if index is None else f"cuda:{index}"
    gpu_index = 0 if index is None else index
    missing = [have.tensorrt_missing] if have.tensorrt_missing else []
    if not have.cuda_devices:
        missing.append("no CUDA device (or a CPU-only torch)")
    elif gpu_index >= len(have.cuda_devices):
        missing.append(f"{gpu} does not exist ({len(have.cuda_devices)} CUDA device(s))")
    no_trt = "; ".join(missing)
    if not missing:
        return BackendChoice("tensorrt", gpu, f"TensorRT {have.tensorrt_version} imports and CUDA device "
                                              f"'{have.cuda_devices[gpu_index]}' is present")
    if model_suffix == ENGINE_SUFFIX:
        raise BackendError(f"the model is a TensorRT engine, but TensorRT cannot run here: {no_trt}")
    on_gpu = index is not None and gpu_index < len(have.cuda_devices)
    if not have.onnxruntime_missing:
        ort_device = gpu if on_gpu else "cpu"
        provider = choose_providers(ort_provider, ort_device, have.ort_providers)[0]  # as create_backend will
        return BackendChoice("onnxruntime", ort_device, f"no TensorRT ({no_trt}); ONNX Runtime with {provider} "
                                                        f"on {have.machine}")
    if model_suffix == ONNX_SUFFIX:
        raise BackendError(f"the model is an ONNX file, but neither TensorRT ({no_trt}) nor ONNX Runtime "
                           f"({have.onnxruntime_missing}) can run it here")
    torch_device = gpu if on_gpu else "cpu"
    return BackendChoice("torch", torch_device, f"no TensorRT ({no_trt}), no ONNX Runtime "
                                                f"({have.onnxruntime_missing}); eager torch")
