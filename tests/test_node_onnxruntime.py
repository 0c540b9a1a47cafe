"""occdepth_node with backend:=onnxruntime on the shipped model, over real DDS: the node
exports the model to ONNX on first start (cached), runs it in ONNX Runtime and publishes
the same labels as eager torch."""

from __future__ import annotations

import time

import numpy as np
import pytest

from occdepth_ros.checkpoint.io import load_model
from occdepth_ros.data.images import read_rgb
from occdepth_ros.geometry.calib import load_calibration_file
from occdepth_ros.inference import StereoInference
from occdepth_ros.resources import CACHE_ENV, default_model_path
from occdepth_ros.runtime.ort_backend import OrtBackend
from helpers.node_harness import Harness, image_msg, small_sequence
from helpers.dds import domain_id

DOMAIN_ID = domain_id("node_onnxruntime")


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    return small_sequence(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def ort_harness(sequence, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(cache))
        # float32 named: the default precision (auto) would run the INT8 graph (test_int8.py)
        h = Harness({"preset": "", "backend": "onnxruntime", "precision": "fp32",
                     "calib_file": str(sequence.path / "calib.txt")},
                    domain_id=DOMAIN_ID)
    try:
        time.sleep(1.0)
        yield h, cache
    finally:
        h.close()


def test_node_runs_the_exported_default_model_with_torch_labels(ort_harness, sequence) -> None:
    harness, cache = ort_harness
    assert isinstance(harness.node.processor.engine.backend, OrtBackend)
    assert len(list((cache / "onnx").glob("*.onnx"))) == 1  # exported once, into the cache
    left, right = (read_rgb(p) for p in sequence.image_paths(0))
    stamp = 1_700_000_000_000_000_000
    harness.send(image_msg(left, stamp, "cam_left"), image_msg(right, stamp, "cam_right"))
    harness.wait_for("labels", 1)
    cfg = harness.node.processor.engine.cfg
    published = np.frombuffer(bytes(harness.got["labels"][0].data), np.uint8).reshape(cfg.grid.dims)
    torch_engine = StereoInference(load_model(default_model_path()))
    torch_engine.set_calibration(load_calibration_file(str(sequence.path / "calib.txt"), left.shape[:2]))
    expected = torch_engine.predict([left, right]).labels
    assert (published == expected).mean() >= 0.9999
