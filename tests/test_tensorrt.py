"""TensorRT end to end: engines from the exported shipped model, with the plugin (when
built) and without it (ONNX function inlined), against ONNX Runtime. Runs only where
the tensorrt package imports and a CUDA GPU is present; this project's CI and dev
machines have neither (TensorRT cannot be installed there), so it skips there."""

from __future__ import annotations

import numpy as np
import pytest

trt = pytest.importorskip("tensorrt", reason="TensorRT (tensorrt Python package) is not installed on this machine")
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("TensorRT needs a CUDA GPU; torch sees none here", allow_module_level=True)

from occdepth_export.build_engine import ensure_engine  # noqa: E402
from occdepth_export.onnx_export import export_onnx  # noqa: E402
from occdepth_ros.checkpoint.io import load_model  # noqa: E402
from occdepth_export.cli import random_images  # noqa: E402
from occdepth_ros.geometry.calib import shipped_kitti_calibration  # noqa: E402
from occdepth_ros.inference import StereoInference  # noqa: E402
from occdepth_ros.resources import default_model_path  # noqa: E402
from occdepth_ros.runtime.ort_backend import OrtBackend  # noqa: E402
from occdepth_ros.runtime.trt_backend import TrtBackend  # noqa: E402
from occdepth_ros.runtime.trt_env import find_plugin_library  # noqa: E402


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("trt") / "default.onnx"
    export_onnx(load_model(default_model_path()), path)
    return path


@pytest.mark.parametrize("plugin,precision,min_agree", [("none", "fp32", 0.9999), ("auto", "fp32", 0.9999),
                                                        ("auto", "fp16", 0.99)])
def test_engine_matches_onnxruntime(onnx_path, tmp_path, plugin, precision, min_agree) -> None:
    if plugin == "auto" and find_plugin_library() is None:
        pytest.skip("plugin library not built (cmake -DOCCDEPTH_SVS_TENSORRT=ON; see export/plugin/README.md)")
    cached = ensure_engine(onnx_path, precision, None if plugin == "auto" else plugin, tmp_path)
    again = ensure_engine(onnx_path, precision, None if plugin == "auto" else plugin, tmp_path)
    assert again.path == cached.path  # cache hit
    calib = shipped_kitti_calibration()
    images = random_images(np.random.default_rng(0), 2)
    out = []
    for backend in (OrtBackend(onnx_path), TrtBackend.from_engine(cached.path)):
        engine = StereoInference(backend)
        engine.set_calibration(calib)
        out.append(engine.logits(images))
    agree = float((out[0].argmax(1) == out[1].argmax(1)).double().mean())
    assert agree >= min_agree
