"""Run in a child process by tests/test_trt_build.py: build an engine with TensorRT
for RTX (the real ONNX parser and builder; no GPU needed) and print what the network
held as JSON on the last line of stdout.

A child process because LD_LIBRARY_PATH must hold the unversioned libtensorrt_rtx.so
when the process starts: RTX's parser dlopen()s that name when it adds a plugin layer,
and the wheel ships only libtensorrt_rtx.so.1.

  python tests/helpers/rtx_build.py MODE ONNX [--plugin LIB] [--precision fp16] [--engine OUT]

MODE "builder": occdepth_export.build_engine.build_serialized, as occdepth-build-engine
runs it. MODE "as-typed": the file as it is, into a strongly typed network (for graphs
whose types are the point, e.g. a float16 depth_prob the plugin must refuse).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TARGET = "SM86"  # TensorRT for RTX builds for a named GPU generation; it has no SM87/SM90


def as_typed(trt, onnx_path: Path, plugin: Path | None) -> dict:
    logger = trt.Logger(trt.Logger.WARNING)
    if plugin is not None:
        trt.get_plugin_registry().load_library(str(plugin))
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    parsed = parser.parse_from_file(str(onnx_path))
    report = {"parsed": bool(parsed), "errors": [str(parser.get_error(i)) for i in range(parser.num_errors)]}
    if not parsed:
        return report
    report["plugin_layers"] = [network.get_layer(i).name for i in range(network.num_layers)
                               if network.get_layer(i).type == trt.LayerType.PLUGIN_V3]
    config = builder.create_builder_config()
    config.num_compute_capabilities = 1
    config.set_compute_capability(getattr(trt.ComputeCapability, TARGET), 0)
    engine = builder.build_serialized_network(network, config)
    report["engine_bytes"] = 0 if engine is None else engine.nbytes
    return report


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("builder", "as-typed"))
    ap.add_argument("onnx", type=Path)
    ap.add_argument("--plugin", type=Path)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--engine", type=Path)
    ap.add_argument("--require-plugin", action="store_true")
    args = ap.parse_args()
    import tensorrt_rtx_bindings as trt

    if args.mode == "as-typed":
        print(json.dumps(as_typed(trt, args.onnx, args.plugin)))
        return 0
    from occdepth_export.build_engine import build_serialized
    from occdepth_ros.runtime.base import BackendError

    try:
        built = build_serialized(args.onnx, args.precision, args.plugin, trt=trt, compute_capabilities=(TARGET,),
                                 require_plugin=args.require_plugin, log=lambda line: print(line, flush=True))
    except BackendError as exc:
        print(json.dumps({"error": str(exc)}))
        return 2
    if args.engine:
        args.engine.write_bytes(built.engine)
    print(json.dumps({"toolkit": built.toolkit, "layers": built.layers, "plugin_layers": list(built.plugin_layers),
                      "lift": built.lift, "precision_mode": built.precision_mode,
                      "functions_stripped": built.functions_stripped, "engine_bytes": len(built.engine),
                      "plugin_io": [list(t) for t in built.plugin_io],
                      "engine_head": built.engine[:16].hex()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
