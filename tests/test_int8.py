"""The INT8 graph (occdepth_export.quantize): the float region (the lift and everything
that depends on it) found on a hand-built graph; on the shipped model, the quantised
graph keeps the lift and the 3D network in float32 with no quantiser on their inputs,
quantises the 2D convolutions, carries the precision key, loads and runs on ONNX
Runtime and agrees with the float32 graph on >= 97 % of the labels of a generated frame
of a world it was not calibrated on; the cache and the precision choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from occdepth_export.backends import cached_onnx, create_backend
from occdepth_export.quantize import (
    Calibration,
    QuantizeError,
    cached_int8,
    float_region,
    graph_precision,
    int8_cache_path,
    quantized_nodes,
)
from occdepth_export.spec import OP_DOMAIN, OP_NAME
from occdepth_ros.checkpoint.io import load_model
from occdepth_ros.data.images import read_rgb
from occdepth_ros.data.kitti_odometry import KittiSequence
from occdepth_ros.geometry.calib import kitti_calibration, read_kitti_calib
from occdepth_ros.inference import StereoInference
from occdepth_ros.resources import default_model_path
from occdepth_ros.runtime import BackendError
from occdepth_ros.runtime.factory import PRECISIONS, resolve_precision
from occdepth_ros.runtime.onnx_contract import META_PRECISION, PRECISION_INT8
from occdepth_ros.runtime.ort_backend import OrtBackend, available_providers
from occdepth_ros.runtime.ort_providers import CPU, OPENVINO

pytest.importorskip("nncf", reason="INT8 quantisation needs nncf (requirements.txt)")

CALIBRATION_FRAMES = 4  # fewer than make int8-model's 16: the checks here hold with 4 already


def _synth(root: Path, sequence: str, frames: int, seed: int) -> Path:
    from occdepth_ros.data.synth.cli import main as synth_main

    assert synth_main(["--out", str(root), "--sequences", sequence, "--frames", str(frames), "--seed", str(seed),
                       "--voxel-every", "0", "--workers", "1"]) == 0
    return root


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> tuple[Path, Path, Calibration]:
    """(float32 graph, INT8 graph, its calibration) of the shipped model, calibrated on
    training world 00."""
    cache = tmp_path_factory.mktemp("int8cache")
    float_path = cached_onnx(load_model(default_model_path()), "shipped", cache)
    calibration = Calibration(_synth(tmp_path_factory.mktemp("calib"), "00", CALIBRATION_FRAMES, 1), "00",
                              CALIBRATION_FRAMES)
    return float_path, cached_int8(float_path, cache, calibration), calibration


@pytest.fixture(scope="module")
def graphs(calibrated) -> tuple[Path, Path]:
    return calibrated[:2]


def _scopes(node: onnx.NodeProto) -> str:
    """The exporter's module path of a node (its metadata)."""
    return {p.key: p.value for p in node.metadata_props}.get("pkg.torch.onnx.name_scopes", "")


def test_float_region_is_the_lift_and_what_depends_on_it() -> None:
    """conv_a -> lift -> conv_c -> out, with conv_b a side branch from the input that
    joins after the lift: the region is {lift, conv_c, add}, in graph order."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], name="conv_a"),
        helper.make_node("Conv", ["x", "w"], ["b"], name="conv_b"),
        helper.make_node(OP_NAME, ["a", "idx"], ["vol"], name="lift", domain=OP_DOMAIN),
        helper.make_node("Conv", ["vol", "w3"], ["c"], name="conv_c"),
        helper.make_node("Relu", ["b"], ["b2"], name="relu_b"),
        helper.make_node("Add", ["c", "b2"], ["out"], name="add"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
    assert float_region(graph) == ["lift", "conv_c", "add"]
    del graph.node[2]
    with pytest.raises(QuantizeError, match="expected one"):
        float_region(graph)


def test_lift_and_3d_network_stay_float32(graphs) -> None:
    float_path, int8_path = graphs
    ref, q = onnx.load(str(float_path)), onnx.load(str(int8_path))
    onnx.checker.check_model(q)
    assert graph_precision(q) == PRECISION_INT8 and graph_precision(ref) == "fp32"
    region = float_region(ref.graph)
    assert len(region) > 50  # the lift, the 3D UNet, CRP, heads
    by_name = {n.name: n for n in q.graph.node}
    ref_by_name = {n.name: n for n in ref.graph.node}
    quantised = quantized_nodes(q.graph)
    for name in region:  # every float-region node is there, unchanged, reading no dequantised tensor
        assert name in by_name, name
        assert by_name[name] == ref_by_name[name], name
        assert name not in quantised, name
    lift = next(n for n in q.graph.node if n.op_type == OP_NAME)
    assert lift.domain == OP_DOMAIN and [f.name for f in q.functions] == [f.name for f in ref.functions]
    # weights of the float region are float32 as exported
    ref_init = {t.name: t for t in ref.graph.initializer}
    q_init = {t.name: t for t in q.graph.initializer}
    for name in region:
        for inp in ref_by_name[name].input:
            if inp in ref_init:
                assert q_init[inp] == ref_init[inp], inp
    # and the 2D part is quantised: every convolution reads dequantised tensors, except the
    # squeeze-excitation 1x1 convolutions on pooled vectors, which NNCF leaves in float
    convs_2d = [n for n in ref.graph.node if n.op_type == "Conv" and n.name not in set(region)]
    in_se = [n.name for n in convs_2d if any(s in _scopes(n) for s in ("conv_reduce", "conv_expand"))]
    assert len(convs_2d) > 100 and len(in_se) < len(convs_2d) / 3
    assert {n.name for n in convs_2d if n.name not in quantised} <= set(in_se)
    assert sum(n.op_type == "QuantizeLinear" for n in q.graph.node) > 50


@pytest.mark.parametrize("providers", [[CPU], pytest.param([OPENVINO, CPU], marks=pytest.mark.skipif(
    OPENVINO not in available_providers(), reason="the OpenVINO provider needs onnxruntime-openvino (x86-64)"))])
def test_int8_agrees_with_float32_on_a_generated_frame(graphs, tmp_path, providers) -> None:
    """A frame of held-out world 08 (not a calibration frame), both graphs on the same
    provider: >= 97 % equal labels; the INT8 logits differ (it is not the float graph)."""
    float_path, int8_path = graphs
    seq = KittiSequence(_synth(tmp_path, "08", 1, 1), "08")
    left, right = (read_rgb(p) for p in seq.image_paths(seq.frame_ids()[0]))
    calib = kitti_calibration(read_kitti_calib(seq.path / "calib.txt"), left.shape[:2])
    logits = {}
    for name, path in (("fp32", float_path), ("int8", int8_path)):
        backend = OrtBackend(path, providers=providers)
        assert backend.precision == name and name in backend.describe()
        engine = StereoInference(backend)
        engine.set_calibration(calib)
        logits[name] = engine.logits([left, right]).contiguous().numpy()
    assert np.isfinite(logits["int8"]).all()
    agree = (logits["fp32"].argmax(1) == logits["int8"].argmax(1)).mean()
    assert agree >= 0.97, agree
    assert not np.allclose(logits["fp32"], logits["int8"], atol=1e-4)


def test_cache_is_reused_and_keyed_by_graph_and_calibration(calibrated, tmp_path) -> None:
    float_path, int8_path, used = calibrated
    stamp = int8_path.stat().st_mtime_ns
    assert cached_int8(float_path, int8_path.parent, used) == int8_path
    assert int8_path.stat().st_mtime_ns == stamp  # not quantised again
    assert int8_cache_path(float_path, int8_path.parent, used) == int8_path
    for other_calibration in (Calibration(tmp_path, "00", 16), Calibration(tmp_path / "x", "00", CALIBRATION_FRAMES),
                              Calibration(tmp_path, "00", CALIBRATION_FRAMES, rendered=True)):
        assert int8_cache_path(float_path, int8_path.parent, other_calibration) != int8_path
    other = tmp_path / "other.onnx"
    other.write_bytes(float_path.read_bytes() + b"\0")
    assert int8_cache_path(other, int8_path.parent, used).name != int8_path.name


def test_create_backend_runs_an_int8_file_as_given(graphs) -> None:
    _, int8_path = graphs
    backend = create_backend("onnxruntime", int8_path, precision="int8")
    assert backend.path == int8_path and backend.precision == "int8"
    with pytest.raises(QuantizeError, match="already quantised"):
        from occdepth_export.quantize import quantize_onnx

        quantize_onnx(int8_path, int8_path.with_name("again.onnx"), [{}])


def test_precision_choice() -> None:
    """auto: int8 only on ONNX Runtime with OpenVINO first and the INT8 graph available."""
    ov, cpu = [OPENVINO, CPU], [CPU]
    assert resolve_precision("auto", "onnxruntime", ov, True) == "int8"
    assert resolve_precision("auto", "onnxruntime", ov, False) == "fp32"
    assert resolve_precision("auto", "onnxruntime", cpu, True) == "fp32"
    assert resolve_precision("auto", "torch", None, True) == "fp32"
    assert resolve_precision("auto", "tensorrt", None, True) == "fp32"
    assert resolve_precision("int8", "onnxruntime", cpu, True) == "int8"
    assert resolve_precision("fp16", "tensorrt", None, False) == "fp16"
    for precision, backend, available, match in (("int8", "torch", True, "onnxruntime"),
                                                 ("int8", "tensorrt", True, "onnxruntime"),
                                                 ("int8", "onnxruntime", False, "nncf"),
                                                 ("fp16", "onnxruntime", True, "tensorrt"),
                                                 ("bf16", "onnxruntime", True, "unknown")):
        with pytest.raises(BackendError, match=match):
            resolve_precision(precision, backend, ov, available)
    assert "auto" in PRECISIONS and "int8" in PRECISIONS


def test_int8_graph_metadata_key_lives_in_the_contract(graphs) -> None:
    _, int8_path = graphs
    meta = {p.key: p.value for p in onnx.load(str(int8_path), load_external_data=False).metadata_props}
    assert meta[META_PRECISION] == PRECISION_INT8


def test_float_3d_nodes_are_the_context_prior_ops_and_the_lift_readers() -> None:
    """In scope 2d+3d: every op of FLOAT_3D_OPS and every node reading the lift's output
    stays float32; the other convolutions and sums are quantised."""
    from occdepth_export.quantize import FLOAT_3D_OPS, float_3d_nodes

    nodes = [
        helper.make_node("Conv", ["vol", "w"], ["a"], name="first_conv"),  # reads the lift
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Conv", ["b", "w"], ["c"], name="second_conv"),
        helper.make_node("Add", ["c", "vol"], ["d"], name="skip"),  # reads the lift
        helper.make_node("MatMul", ["d", "d"], ["e"], name="prior"),
        helper.make_node("Softmax", ["e"], ["f"], name="softmax"),
        helper.make_node("Add", ["f", "c"], ["g"], name="sum"),
    ]
    assert "MatMul" in FLOAT_3D_OPS and "Softmax" in FLOAT_3D_OPS and "Conv" not in FLOAT_3D_OPS
    assert float_3d_nodes(nodes, ["vol"]) == ["first_conv", "skip", "prior", "softmax"]


def test_cache_key_of_the_2d_scope_is_unchanged_and_the_3d_scope_has_its_own(calibrated) -> None:
    float_path, int8_path, used = calibrated
    assert int8_cache_path(float_path, int8_path.parent, used, "2d") == int8_path
    assert int8_cache_path(float_path, int8_path.parent, used, "2d+3d") != int8_path
