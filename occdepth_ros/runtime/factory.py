"""Backend by name, from a model that is ready to run: a loaded network (torch), an
exported ``.onnx`` (onnxruntime) or a built ``.engine`` (tensorrt).

Turning a checkpoint into those files (export, engine build, their caches) is the export
stage's job (``occdepth_export.backends.create_backend``), so the runtime never imports
the exporter.
"""

from __future__ import annotations

from pathlib import Path

from ..model.occdepth import OccDepth
from .auto_backend import AUTO, ONNX_SUFFIX
from .base import Backend, BackendError
from .engine_cache import ENGINE_SUFFIX
from .ort_providers import choose_providers
from .torch_backend import TorchBackend

BACKENDS = ("torch", "onnxruntime", "tensorrt")
BACKEND_CHOICES = (AUTO, *BACKENDS)  # what users may name; auto_backend picks for "auto"
# What the network computes in. fp16: TensorRT engines; int8: ONNX Runtime on the
# quantised graph (docs/INT8.md); auto: int8 where OpenVINO's provider runs the graph and
# the INT8 graph can be had, else fp32 (resolve_precision).
AUTO_PRECISION = "auto"
PRECISIONS = (AUTO_PRECISION, "fp32", "fp16", "int8")
DEFAULT_PRECISION = AUTO_PRECISION


def check_backend_name(name: str) -> None:
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {BACKEND_CHOICES}")


def check_model_file(name: str, path: Path | None) -> None:
    """A model file's kind fits the backend (raised before any export or build)."""
    if path is None:
        return
    if path.suffix in (ONNX_SUFFIX, ENGINE_SUFFIX) and name == "torch":
        raise BackendError(f"backend 'torch' needs a checkpoint, not {path.suffix} file {path}")
    if path.suffix == ENGINE_SUFFIX and name != "tensorrt":
        raise BackendError(f"{path} is a TensorRT engine; use backend 'tensorrt'")


def resolve_precision(precision: str, backend: str, providers: list[str] | None, int8_available: bool) -> str:
    """The precision ``backend`` runs in for what the user asked: a plain function of
    the backend, ONNX Runtime's providers (best first) and whether the INT8 graph is
    cached or can be made (nncf installed). Raises BackendError for a combination that
    cannot run."""
    from .ort_providers import OPENVINO

    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision == AUTO_PRECISION:
        if backend == "onnxruntime" and providers and providers[0] == OPENVINO and int8_available:
            return "int8"
        return "fp32"
    if precision == "fp16" and backend != "tensorrt":
        raise BackendError(f"precision 'fp16' is for backend 'tensorrt', not {backend!r}")
    if precision == "int8":
        if backend != "onnxruntime":
            raise BackendError(f"precision 'int8' runs on backend 'onnxruntime' (the quantised ONNX graph), not {backend!r}")
        if not int8_available:
            raise BackendError("precision 'int8' needs the quantised graph: pip install nncf (requirements.txt) "
                               "or make int8-model")
    return precision


def onnxruntime_providers(ort_provider: str, device: str) -> list[str]:
    """ONNX Runtime's providers for ``device`` (checked before any export: a bad choice fails at once)."""
    from .ort_backend import available_providers

    return choose_providers(ort_provider, device, available_providers())


def torch_backend(model: OccDepth, device: str = "cpu") -> Backend:
    return TorchBackend(model, device)


def file_backend(name: str, path: Path, device: str = "cpu", threads: int | None = None,
                 providers: list[str] | None = None) -> Backend:
    """onnxruntime on an ``.onnx`` file or tensorrt on an ``.engine`` file."""
    check_backend_name(name)
    check_model_file(name, path)
    if name == "onnxruntime":
        from .ort_backend import OrtBackend

        return OrtBackend(path, providers=providers or onnxruntime_providers("", device), threads=threads)
    if name == "tensorrt" and path.suffix == ENGINE_SUFFIX:
        from .trt_backend import TrtBackend

        return TrtBackend.from_engine(path, device=device)
    raise BackendError(f"backend {name!r} cannot run {path} as it is; a checkpoint or ONNX file is built "
                       "into an engine by occdepth-build-engine")
