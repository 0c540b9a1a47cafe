"""Which ONNX Runtime execution provider runs the graph, and with which options.

On a CPU the OpenVINO provider (the ``onnxruntime-openvino`` wheel, x86-64) is preferred
over ORT's own CPU provider: it runs the 3D convolutions with oneDNN's direct blocked
kernels, where ORT's CPU provider expands them to im2col + GEMM, and on the default model
it takes ~200 ms per frame against ~280 ms (2 cores; docs/BENCHMARKS.md). Plain Python
(no onnxruntime import), so the node's parameters can be checked without ORT.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import BackendError

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"
CPU = "CPUExecutionProvider"
# Best first, for a GPU device and for the CPU.
GPU_PREFERENCE = (TENSORRT, CUDA, OPENVINO, CPU)
CPU_PREFERENCE = (OPENVINO, CPU)
# What users name (node parameter ort_provider, occdepth-bench --ort-provider); "" = the
# best one installed for the device.
SHORT_NAMES = {"tensorrt": TENSORRT, "cuda": CUDA, "openvino": OPENVINO, "cpu": CPU}
ORT_PROVIDER_CHOICES = ("", *SHORT_NAMES)
# Float32 asked for explicitly: OpenVINO's CPU plugin may otherwise pick bfloat16 on CPUs
# with bf16 units (AMX), and the network is validated in float32.
OPENVINO_CPU_OPTIONS = {"device_type": "CPU", "precision": "FP32"}


def by_preference(available: Sequence[str], preference: Sequence[str] = GPU_PREFERENCE) -> list[str]:
    """The installed providers among ``preference``, in its order (best first)."""
    return [p for p in preference if p in available]


def choose_providers(requested: str, device: str, available: Sequence[str]) -> list[str]:
    """The providers for a session, best first, CPU last as the fallback for any node
    the first cannot run. ``requested``: a short name or "" (best installed for
    ``device``: "cpu" never gets a GPU provider)."""
    if requested not in ORT_PROVIDER_CHOICES:
        raise BackendError(f"unknown ONNX Runtime provider {requested!r}; choose one of {list(SHORT_NAMES)} "
                           "or '' for the best one installed")
    if requested:
        name = SHORT_NAMES[requested]
        if name not in available:
            raise BackendError(f"ONNX Runtime provider {name} is not installed here; available: {list(available)}"
                               + (" (pip install onnxruntime-openvino, in place of onnxruntime)" if name == OPENVINO else ""))
        best = name
    else:
        preference = CPU_PREFERENCE if device == "cpu" else GPU_PREFERENCE
        best = next(iter(by_preference(available, preference)), CPU)
    return [best] if best == CPU else [best, CPU]


def provider_options(name: str, threads: int | None) -> dict[str, str]:
    """Options for one provider; ``threads`` also goes to the session (ORT's CPU pool)."""
    if name == OPENVINO:
        return {**OPENVINO_CPU_OPTIONS, **({"num_of_threads": str(threads)} if threads else {})}
    return {}
