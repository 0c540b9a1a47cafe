"""occdepth-build-engine: ONNX (+ our plugin) -> TensorRT engine, through the engine cache.

Written against the TensorRT 10 and 11 Python APIs. Full TensorRT cannot be installed in
this project's CI, so ``build_serialized`` runs there on TensorRT for RTX, the real
parser and builder of the same API (tests/test_trt_build.py); docs/EXPORT.md says
what that does and does not cover.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import onnx

from occdepth_ros.resources import cache_dir
from occdepth_ros.runtime.base import BackendError
from occdepth_ros.runtime.engine_cache import CachedEngine, EngineCache, EngineKey
from occdepth_ros.runtime.trt_env import compute_capability, find_plugin_library, gpu_model, import_tensorrt, load_plugin

from .fp16_graph import Fp16GraphError, depth_prob_path, to_fp16
from .spec import OP_NAME
from .trt_network import (FP16_FLAG, FP16_TYPED, Toolkit, graph_for_parser, pin_float32, plugin_layer_names,
                          plugin_layer_types)

PRECISIONS = ("fp32", "fp16")
WORKSPACE_GIB = 2
LIFT_PLUGIN, LIFT_FUNCTION = "plugin", "function"


@dataclass(frozen=True)
class BuiltEngine:
    """A serialised engine and what the network it came from held."""

    engine: bytes
    toolkit: str  # "TensorRT 10.3.0"
    layers: int
    plugin_layers: tuple[str, ...]  # PLUGIN_V3 layers: ours, when the lift bound to the plugin
    functions_stripped: bool  # the parser got the graph without its model-local functions
    precision_mode: str  # trt_network.FP32, FP16_FLAG or FP16_TYPED
    pinned_float32: int = 0  # layers kept float32 under the FP16 flag
    plugin_io: tuple[tuple[str, ...], ...] = ()  # per plugin layer: its inputs' then output's types, as declared

    @property
    def lift(self) -> str:
        return LIFT_PLUGIN if self.plugin_layers else LIFT_FUNCTION

    def describe(self) -> str:
        lift = (f"plugin {OP_NAME} ({len(self.plugin_layers)} PLUGIN_V3 layer)" if self.plugin_layers
                else "the ONNX function, inlined")
        notes = [self.precision_mode]
        if self.functions_stripped:
            notes.append("parsed without the model-local function")
        if self.pinned_float32:
            notes.append(f"{self.pinned_float32} depth-probability layers pinned to float32")
        return f"{self.toolkit}: {self.layers} layers; lift: {lift}; {'; '.join(notes)}"


def _parse(trt, network, logger, proto: onnx.ModelProto, onnx_path: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(proto.SerializeToString(), str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path}: {errors}")


def build_serialized(onnx_path: Path, precision: str, plugin: Path | None, workspace_gib: float = WORKSPACE_GIB,
                     log=print, trt=None, compute_capabilities: Sequence[str] = (),
                     require_plugin: bool = False) -> BuiltEngine:
    """Parse and build; the result says what the network held. ``trt``: the TensorRT
    module (default: ``tensorrt``); ``compute_capabilities``: targets by name ("SM86"),
    for TensorRT for RTX, which builds without a GPU. ``require_plugin``: raise unless a
    plugin library is loaded and the lift bound to it."""
    if require_plugin and plugin is None:
        raise BackendError("the plugin was required but no plugin library was given or found "
                           "(build it: export/plugin/README.md)")
    trt = trt or import_tensorrt()
    toolkit = Toolkit.of(trt)
    mode = toolkit.precision_mode(precision)
    logger = trt.Logger(trt.Logger.WARNING)
    load_plugin(trt, plugin)
    proto = onnx.load(str(onnx_path))
    proto, stripped = graph_for_parser(proto, toolkit, plugin is not None)
    if mode == FP16_TYPED:
        try:
            proto = to_fp16(proto)
        except Fp16GraphError as exc:
            raise BackendError(f"no FP16 variant of {onnx_path}: {exc}") from exc
    flags = 0
    if mode == FP16_TYPED and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    builder = trt.Builder(logger)
    network = builder.create_network(flags)  # explicit batch is the only mode since TensorRT 10
    _parse(trt, network, logger, proto, Path(onnx_path))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if compute_capabilities:
        config.num_compute_capabilities = len(compute_capabilities)
        for k, name in enumerate(compute_capabilities):
            config.set_compute_capability(getattr(trt.ComputeCapability, name), k)
    pinned = 0
    if mode == FP16_FLAG:
        config.set_flag(trt.BuilderFlag.FP16)
        pinned = pin_float32(trt, network, config, depth_prob_path(proto.graph)[0])
    plugin_layers = plugin_layer_names(trt, network)
    plugin_io = tuple(plugin_layer_types(network, name) for name in plugin_layers)
    if plugin is not None and not plugin_layers:
        why = (f"{plugin} is loaded but TensorRT's parser did not use it (no PLUGIN_V3 layer): "
               "the lift runs as the inlined ONNX function")
        if require_plugin:
            raise BackendError(why)
        log(f"warning: {why}")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    built = BuiltEngine(bytes(serialized), toolkit.describe(), network.num_layers, tuple(plugin_layers), stripped,
                        mode, pinned, plugin_io)
    log(built.describe())
    return built


def ensure_engine(onnx_path: str | Path, precision: str = "fp32", plugin: str | Path | None = None,
                  cache: str | Path | None = None, device: str = "cuda:0", log=print,
                  require_plugin: bool = False) -> CachedEngine:
    """A valid cached engine for this ONNX file, building (and caching) it when the
    cache has none, a stale one or a corrupt one. Its manifest records what the network
    held (``lift``: "plugin" or "function"); ``require_plugin`` refuses an engine whose
    lift is not the plugin, cached or new."""
    if precision not in PRECISIONS:
        raise BackendError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise BackendError(f"ONNX file not found: {onnx_path}")
    plugin_path = find_plugin_library(plugin)
    if require_plugin and plugin_path is None:
        raise BackendError(f"the plugin was required but {'--plugin none was given' if plugin else 'none was found'} "
                           "(build it: export/plugin/README.md)")
    trt = import_tensorrt()
    key = EngineKey.for_build(onnx_path, precision, trt.__version__, compute_capability(device), plugin_path,
                              gpu_model(device))
    store = EngineCache(cache or cache_dir("engines"))
    cached, why = store.lookup(key, onnx_path.stem)
    if cached is not None:
        lift = cached.manifest.get("lift", "not recorded")
        log(f"engine cache hit: {cached.path} (lift: {lift})")
        if require_plugin and lift != LIFT_PLUGIN:
            raise BackendError(f"the cached engine {cached.path} does not run the lift in the plugin (lift: {lift}); "
                               "delete it to rebuild")
        return cached
    log(f"building engine ({why}); minutes on a Jetson")
    start = time.perf_counter()
    built = build_serialized(onnx_path, precision, plugin_path, log=log, trt=trt, require_plugin=require_plugin)
    from occdepth_ros.runtime.ort_backend import read_onnx_metadata

    extra = {"onnx": str(onnx_path), "plugin": str(plugin_path or ""), "build_s": time.perf_counter() - start,
             "config": read_onnx_metadata(onnx_path), "lift": built.lift, "precision_mode": built.precision_mode,
             "functions_stripped": built.functions_stripped, "built_with": built.toolkit}
    return store.store(key, onnx_path.stem, built.engine, extra)


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
    ap.add_argument("--require-plugin", action="store_true",
                    help="fail (exit 2) unless the engine runs the lift in the plugin (a PLUGIN_V3 layer)")
    ap.add_argument("--build-only", action="store_true", help="build and cache, do not run")
    ap.add_argument("--compare", type=int, default=0, metavar="N",
                    help="run N frames on TensorRT and ONNX Runtime: label agreement, logit error, latency")
    args = ap.parse_args(argv)
    try:
        onnx_path = args.onnx
        if onnx_path is None:
            from occdepth_ros.checkpoint.io import choose_weights, load_model

            from .backends import cached_onnx

            ckpt, preset, _ = choose_weights(args.checkpoint, args.preset)
            onnx_path = cached_onnx(load_model(ckpt, preset=preset), str(ckpt or f"preset {preset}"))
        cached = ensure_engine(onnx_path, args.precision, args.plugin, args.cache_dir, args.device,
                               require_plugin=args.require_plugin)
        print(f"engine: {cached.path} ({cached.manifest['engine_bytes'] / 1e6:.1f} MB, "
              f"lift: {cached.manifest.get('lift', 'not recorded')})")
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
