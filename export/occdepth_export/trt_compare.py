"""TensorRT engine vs ONNX Runtime on the same frames: labels, logits and latency.
For a user with TensorRT (``occdepth-build-engine --compare N``)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def compare_engine_with_ort(engine_path: Path, onnx_path: Path, frames: int = 5, device: str = "cuda:0") -> str:
    from occdepth_ros.geometry.calib import shipped_kitti_calibration
    from occdepth_ros.inference import StereoInference
    from occdepth_ros.runtime.ort_backend import OrtBackend
    from occdepth_ros.runtime.trt_backend import TrtBackend

    from .cli import random_images

    calib = shipped_kitti_calibration()
    engines = {"onnxruntime": StereoInference(OrtBackend(onnx_path)),
               "tensorrt": StereoInference(TrtBackend.from_engine(engine_path, device=device))}
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {k: [] for k in engines}
    agree, rel = [], []
    for e in engines.values():
        e.set_calibration(calib)
        e.warm_up()
    for _ in range(frames):
        images = random_images(rng, engines["onnxruntime"].cfg.n_views)
        out = {}
        for name, e in engines.items():
            start = time.perf_counter()
            out[name] = e.logits(images)
            times[name].append(time.perf_counter() - start)
        ref, got = out["onnxruntime"], out["tensorrt"]
        agree.append(float((ref.argmax(1) == got.argmax(1)).double().mean()))
        rel.append(float((ref - got).abs().max() / ref.abs().max()))
    lines = ["| backend | median ms |", "|---|---:|"]
    lines += [f"| {k} | {1e3 * np.median(v):.1f} |" for k, v in times.items()]
    lines.append(f"labels equal: min {100 * min(agree):.4f}% over {frames} frames; max rel logit error {max(rel):.2e}")
    return "\n".join(lines)
