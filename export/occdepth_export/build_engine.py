"""occdepth-build-engine: ONNX (+ our plugin) -> TensorRT engine, through the engine cache.

Written against the TensorRT 10 Python API; TensorRT cannot be installed in the
project's CI or dev machines, so this module's TensorRT calls have not been run there
(docs/EXPORT.md says exactly what was and was not run). Everything around them (cache
keys, validation, errors when TensorRT or the plugin is missing) is tested.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from occdepth_ros.resources import cache_dir
from occdepth_ros.runtime.base import BackendError
from occdepth_ros.runtime.engine_cache import CachedEngine, EngineCache, EngineKey
from occdepth_ros.runtime.trt_env import compute_capability, find_plugin_library, import_tensorrt, load_plugin

from .spec import OP_NAME

PRECISIONS = ("fp32", "fp16")
WORKSPACE_GIB = 2


def build_serialized(onnx_path: Path, precision: str, plugin: Path | None, workspace_gib: float = WORKSPACE_GIB,
                     log=print) -> bytes:
    """Parse and build. Reports whether the lift bound to the plugin or was inlined."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    load_plugin(trt, plugin)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path}: {errors}")
    plugin_layers = [network.get_layer(i).name for i in range(network.num_layers)
                     if network.get_layer(i).type == trt.LayerType.PLUGIN_V3]
    log(f"{network.num_layers} layers; lift: "
        + (f"plugin {OP_NAME} ({len(plugin_layers)} layer)" if plugin_layers
           else "ONNX function inlined (no plugin registered)"))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp16":
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise BackendError(f"TensorRT {trt.__version__} has no FP16 builder flag (strongly typed only)")
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    return bytes(serialized)


def ensure_engine(onnx_path: str | Path, precision: str = "fp32", plugin: str | Path | None = None,
                  cache: str | Path | None = None, device: str = "cuda:0", log=print) -> CachedEngine:
    """A valid cached engine for this ONNX file, building (and caching) it when the
    cache has none, a stale one or a corrupt one."""
    if precision not in PRECISIONS:
        raise BackendError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise BackendError(f"ONNX file not found: {onnx_path}")
    trt = import_tensorrt()
    plugin_path = find_plugin_library(plugin)
    key = EngineKey.for_build(onnx_path, precision, trt.__version__, compute_capability(device), plugin_path)
    store = EngineCache(cache or cache_dir("engines"))
    cached, why = store.lookup(key, onnx_path.stem)
    if cached is not None:
        log(f"engine cache hit: {cached.path}")
        return cached
    log(f"building engine ({why}); minutes on a Jetson")
    start = time.perf_counter()
    engine = build_serialized(onnx_path, precision, plugin_path, log=log)
    from occdepth_ros.runtime.ort_backend import read_onnx_metadata

    extra = {"onnx": str(onnx_path), "plugin": str(plugin_path or ""), "build_s": time.perf_counter() - start,
             "config": read_onnx_metadata(onnx_path)}
    return store.store(key, onnx_path.stem, engine, extra)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="occdepth-build-engine", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--onnx", type=Path, help="file written by occdepth-export-onnx")
    src.add_argument("--checkpoint", help="weights; exported to ONNX first (cached)")
    src.add_argument("--preset", help="a preset with random weights")
    ap.add_argument("--precision", choices=PRECISIONS, default="fp32")
    ap.add_argument("--plugin", help="plugin library; \"none\" builds without it (default: $OCCDEPTH_TRT_PLUGIN or build/svs/)")
    ap.add_argument("--cache-dir", type=Path, help="engine cache (default: ~/.cache/occdepth_ros/engines)")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--build-only", action="store_true", help="build and cache, do not run")
    ap.add_argument("--compare", type=int, default=0, metavar="N",
                    help="run N frames on TensorRT and ONNX Runtime: label agreement, logit error, latency")
    args = ap.parse_args(argv)
    try:
        onnx_path = args.onnx
        if onnx_path is None:
            from occdepth_ros.checkpoint.io import choose_weights, load_model
            from occdepth_ros.runtime.factory import cached_onnx

            ckpt, preset, _ = choose_weights(args.checkpoint, args.preset)
            onnx_path = cached_onnx(load_model(ckpt, preset=preset), str(ckpt or f"preset {preset}"))
        cached = ensure_engine(onnx_path, args.precision, args.plugin, args.cache_dir, args.device)
        print(f"engine: {cached.path} ({cached.manifest['engine_bytes'] / 1e6:.1f} MB)")
        if args.build_only or not args.compare:
            return 0
        from .trt_compare import compare_engine_with_ort

        print(compare_engine_with_ort(cached.path, onnx_path, frames=args.compare, device=args.device))
    except BackendError as exc:
        print(f"occdepth-build-engine: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
