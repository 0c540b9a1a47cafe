#!/usr/bin/env bash
# For a machine with an NVIDIA GPU and TensorRT >= 10 (Jetson Orin with JetPack 6, or a
# desktop): build the plugin, export the shipped model, build fp32 and fp16 engines with
# the plugin and fp32 without it (ONNX function inlined), and compare each with ONNX
# Runtime (labels, logits, median latency). Fails when an engine that should run the
# lift in the plugin does not hold a PLUGIN_V3 layer (--require-plugin). On TensorRT
# 10.0-10.6 the builder parses the graph without its ONNX function so the plugin binds;
# on TensorRT 11 fp16 comes from the strongly typed FP16 graph. Nothing here can run in
# this project's CI.
#   TENSORRT_ROOT=/opt/TensorRT-10.x export/trt_check.sh        # optional TENSORRT_ROOT
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/.venv/bin}
OUT=${OUT:-$ROOT/out/trt}
FRAMES=${FRAMES:-20}
mkdir -p "$OUT"

"$BIN/python" -c "import tensorrt, torch; assert torch.cuda.is_available(), 'torch has no CUDA'; \
print('TensorRT', tensorrt.__version__, 'on', torch.cuda.get_device_name())"

cmake -S "$ROOT/export/plugin" -B "$ROOT/build/svs" -DOCCDEPTH_SVS_TENSORRT=ON ${TENSORRT_ROOT:+-DTENSORRT_ROOT=$TENSORRT_ROOT}
cmake --build "$ROOT/build/svs" -j
PLUGIN="$ROOT/build/svs/liboccdepth_svs_trt.so"

"$BIN/occdepth-export-onnx" --out "$OUT/default.onnx"
for precision in fp32 fp16; do
  echo "== plugin, $precision"
  "$BIN/occdepth-build-engine" --onnx "$OUT/default.onnx" --plugin "$PLUGIN" --precision "$precision" \
      --require-plugin --cache-dir "$OUT/engines" --compare "$FRAMES"
done
echo "== no plugin (the ONNX function inlined), fp32"
"$BIN/occdepth-build-engine" --onnx "$OUT/default.onnx" --plugin none --precision fp32 \
    --cache-dir "$OUT/engines-function" --compare "$FRAMES"
echo "== cache hit (no rebuild expected; the manifest must still say lift: plugin)"
"$BIN/occdepth-build-engine" --onnx "$OUT/default.onnx" --plugin "$PLUGIN" --precision fp32 \
    --require-plugin --cache-dir "$OUT/engines" --build-only
