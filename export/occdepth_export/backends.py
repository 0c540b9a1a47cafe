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
from occdepth_ros.runtime.base import Backend, BackendError
from occdepth_ros.runtime.engine_cache import ENGINE_SUFFIX
from occdepth_ros.runtime.factory import (
    AUTO_PRECISION,
    DEFAULT_PRECISION,
    check_backend_name,
    check_model_file,
    file_backend,
    onnxruntime_providers,
    resolve_precision,
    torch_backend,
)
from occdepth_ros.runtime.onnx_contract import META_FORMAT_VALUE

from .quantize import QuantizeError

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
    precision: str = DEFAULT_PRECISION,
    cache: Path | None = None,
    ort_provider: str = "",
) -> Backend:
    """``checkpoint`` may be a weights file, an ``.onnx`` (onnxruntime, tensorrt) or an
    ``.engine`` (tensorrt); None with no preset means the shipped default model.
    ``ort_provider``: onnxruntime's execution provider by short name (ort_providers), ""
    for the best one installed for ``device``. ``auto``: the fastest backend present
    (auto_backend); the backend's ``selection`` then says what was chosen and why.
    ``precision``: factory.PRECISIONS; ``int8`` runs the graph quantised by
    occdepth_export.quantize (made once and cached), ``auto`` picks it where OpenVINO's
    provider runs the graph (resolve_precision)."""
    if name == AUTO:
        suffix = Path(checkpoint).suffix if checkpoint else ""
        choice = choose_backend(device, probe(), suffix if suffix in (ONNX_SUFFIX, ENGINE_SUFFIX) else "",
                                ort_provider)
        log.info(choice.summary())
        backend = create_backend(choice.backend, checkpoint, preset, choice.device, threads, precision, cache,
                                 ort_provider if choice.backend == "onnxruntime" else "")
        backend.selection = "; ".join(filter(None, (choice.summary(), getattr(backend, "selection", ""))))
        return backend
    check_backend_name(name)
    path = Path(checkpoint) if checkpoint else None
    check_model_file(name, path)
    providers = onnxruntime_providers(ort_provider, device) if name == "onnxruntime" else None
    chosen = resolve_precision(precision, name, providers, int8_available=True)  # checks the combination early
    if name == "torch":
        ckpt, preset_name, _ = choose_weights(checkpoint, preset)
        return torch_backend(load_model(ckpt, preset=preset_name), device)
    if path is not None and path.suffix == ENGINE_SUFFIX:
        return file_backend(name, path, device=device)
    if path is not None and path.suffix == ONNX_SUFFIX:
        onnx_path = path
    else:
        ckpt, preset_name, _ = choose_weights(checkpoint, preset)
        onnx_path = cached_onnx(load_model(ckpt, preset=preset_name), str(ckpt or f"preset {preset_name}"), cache)
    if name == "onnxruntime":
        chosen = resolve_precision(precision, name, providers, int8_available(onnx_path, cache))
        if chosen == "int8":
            try:
                onnx_path = int8_graph(onnx_path, cache)
            except QuantizeError as exc:
                if precision != AUTO_PRECISION:
                    raise BackendError(str(exc)) from exc
                log.warning("precision auto: no INT8 graph (%s); running float32", exc)
                chosen = "fp32"
        backend = file_backend(name, onnx_path, device=device, threads=threads, providers=providers)
        if precision == AUTO_PRECISION:
            note = f"precision auto chose {chosen}"
            backend.selection = f"{backend.selection}; {note}" if getattr(backend, "selection", "") else note
        return backend
    from .build_engine import ensure_engine

    cached = ensure_engine(onnx_path, chosen, None, cache, device)
    return file_backend(name, cached.path, device=device)


def int8_available(onnx_path: Path, cache: Path | None = None) -> bool:
    """The INT8 graph of ``onnx_path`` can be had: cached, or nncf installed to make it."""
    from .quantize import int8_cache_path, nncf_installed

    return nncf_installed() or int8_cache_path(onnx_path, cache or cache_dir("int8")).is_file()


def int8_graph(onnx_path: Path, cache: Path | None = None) -> Path:
    """The quantised variant of ``onnx_path`` (itself when it is already INT8)."""
    import onnx

    from .quantize import cached_int8, graph_precision

    if graph_precision(onnx.load(str(onnx_path), load_external_data=False)) == "int8":
        return onnx_path
    return cached_int8(onnx_path, cache or cache_dir("int8"))
