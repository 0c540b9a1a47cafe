"""Backend by name, from what a user names: a checkpoint (or nothing: the shipped
model), a preset, or an exported ``.onnx`` / built ``.engine`` file.

onnxruntime and tensorrt need an ONNX file; given a checkpoint, it is exported once and
cached (keyed by the weights, the config and the exporter format), as Isaac ROS caches
engines, so `backend:=onnxruntime` works with no extra step.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from ..checkpoint.io import choose_weights, load_model
from ..model.occdepth import OccDepth
from ..resources import cache_dir
from .auto_backend import AUTO, ONNX_SUFFIX, choose_backend, probe
from .base import Backend, BackendError
from .engine_cache import ENGINE_SUFFIX
from .ort_providers import choose_providers
from .torch_backend import TorchBackend

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "tensorrt")
BACKEND_CHOICES = (AUTO, *BACKENDS)  # what users may name; auto_backend picks for "auto"
PRECISIONS = ("fp32", "fp16")  # TensorRT engine precision


def cached_onnx(model: OccDepth, source: str, cache: Path | None = None) -> Path:
    """The model exported to ONNX, from the cache when the same weights and config were
    exported before by the same exporter format."""
    from occdepth_export import spec
    from occdepth_export.onnx_export import export_onnx, weights_sha256

    weights_hash = weights_sha256(model)
    key = hashlib.sha256("\n".join([spec.META_FORMAT_VALUE, model.cfg.to_yaml(), weights_hash]).encode()).hexdigest()[:16]
    path = (cache or cache_dir("onnx")) / f"{model.cfg.name}-{key}{ONNX_SUFFIX}"
    if not path.is_file():
        log.warning("exporting %s to %s (once per model; tens of seconds)", source, path)
        export_onnx(model, path, source=source, weights_hash=weights_hash)
    return path


def create_backend(
    name: str,
    checkpoint: str | Path | None = None,
    preset: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
    precision: str = "fp32",
    cache: Path | None = None,
    ort_provider: str = "",
) -> Backend:
    """``checkpoint`` may be a weights file, an ``.onnx`` (onnxruntime, tensorrt) or an
    ``.engine`` (tensorrt); None with no preset means the shipped default model.
    ``ort_provider``: onnxruntime's execution provider by short name (ort_providers), ""
    for the best one installed for ``device``. ``auto``: the fastest backend present
    (auto_backend); the backend's ``selection`` then says what was chosen and why."""
    if name == AUTO:
        suffix = Path(checkpoint).suffix if checkpoint else ""
        choice = choose_backend(device, probe(), suffix if suffix in (ONNX_SUFFIX, ENGINE_SUFFIX) else "",
                                ort_provider)
        log.info(choice.summary())
        backend = create_backend(choice.backend, checkpoint, preset, choice.device, threads, precision, cache,
                                 ort_provider if choice.backend == "onnxruntime" else "")
        backend.selection = choice.summary()
        return backend
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {BACKEND_CHOICES}")
    path = Path(checkpoint) if checkpoint else None
    if path is not None and path.suffix in (ONNX_SUFFIX, ENGINE_SUFFIX) and name == "torch":
        raise BackendError(f"backend 'torch' needs a checkpoint, not {path.suffix} file {path}")
    if name == "torch":
        ckpt, preset_name, _ = choose_weights(checkpoint, preset)
        return TorchBackend(load_model(ckpt, preset=preset_name), device)
    if path is not None and path.suffix == ENGINE_SUFFIX:
        if name != "tensorrt":
            raise BackendError(f"{path} is a TensorRT engine; use backend 'tensorrt'")
        from .trt_backend import TrtBackend

        return TrtBackend.from_engine(path, device=device)
    providers: list[str] = []
    if name == "onnxruntime":  # before any export: a bad choice fails at once
        from .ort_backend import available_providers

        providers = choose_providers(ort_provider, device, available_providers())
    if path is not None and path.suffix == ONNX_SUFFIX:
        onnx_path = path
    else:
        ckpt, preset_name, _ = choose_weights(checkpoint, preset)
        model = load_model(ckpt, preset=preset_name)
        onnx_path = cached_onnx(model, str(ckpt or f"preset {preset_name}"), cache)
    if name == "onnxruntime":
        from .ort_backend import OrtBackend

        return OrtBackend(onnx_path, providers=providers, threads=threads)
    from .trt_backend import TrtBackend

    return TrtBackend.from_onnx(onnx_path, precision=precision, cache=cache, device=device)
