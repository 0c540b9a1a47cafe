"""A runnable backend from what a user names: a checkpoint (or nothing: the shipped model),
a preset, or an exported ``.onnx`` / built ``.engine`` file; or ``auto`` for the fastest
backend present.

onnxruntime and tensorrt run files: given a checkpoint, the model is exported once and
cached (keyed by the weights, the config and the exporter format), and for tensorrt the
engine is built once and cached, as Isaac ROS caches engines, so ``backend:=onnxruntime``
or ``tensorrt`` works with no extra step. This is the one place that turns a checkpoint
into those files at start-up; the runtime below only runs them.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from occdepth_ros.checkpoint.io import choose_weights, load_model
from occdepth_ros.model.occdepth import OccDepth
from occdepth_ros.resources import cache_dir
from occdepth_ros.runtime.auto_backend import AUTO, ONNX_SUFFIX, choose_backend, probe
from occdepth_ros.runtime.base import Backend
from occdepth_ros.runtime.engine_cache import ENGINE_SUFFIX
from occdepth_ros.runtime.factory import (
    check_backend_name,
    check_model_file,
    file_backend,
    onnxruntime_providers,
    torch_backend,
)
from occdepth_ros.runtime.onnx_contract import META_FORMAT_VALUE

log = logging.getLogger(__name__)


def cached_onnx(model: OccDepth, source: str, cache: Path | None = None) -> Path:
    """The model exported to ONNX, from the cache when the same weights and config were
    exported before by the same exporter format."""
    from .onnx_export import export_onnx, weights_sha256

    weights_hash = weights_sha256(model)
    key = hashlib.sha256("\n".join([META_FORMAT_VALUE, model.cfg.to_yaml(), weights_hash]).encode()).hexdigest()[:16]
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
    check_backend_name(name)
    path = Path(checkpoint) if checkpoint else None
    check_model_file(name, path)
    if name == "torch":
        ckpt, preset_name, _ = choose_weights(checkpoint, preset)
        return torch_backend(load_model(ckpt, preset=preset_name), device)
    if path is not None and path.suffix == ENGINE_SUFFIX:
        return file_backend(name, path, device=device)
    providers = onnxruntime_providers(ort_provider, device) if name == "onnxruntime" else None
    if path is not None and path.suffix == ONNX_SUFFIX:
        onnx_path = path
    else:
        ckpt, preset_name, _ = choose_weights(checkpoint, preset)
        onnx_path = cached_onnx(load_model(ckpt, preset=preset_name), str(ckpt or f"preset {preset_name}"), cache)
    if name == "onnxruntime":
        return file_backend(name, onnx_path, device=device, threads=threads, providers=providers)
    from .build_engine import ensure_engine

    cached = ensure_engine(onnx_path, precision, None, cache, device)
    return file_backend(name, cached.path, device=device)
