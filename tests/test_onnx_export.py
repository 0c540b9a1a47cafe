"""occdepth-export-onnx: the graph's structure (one StereoVoxelSample node with its
function and TensorRT attributes, lookups as inputs, config in metadata) and ONNX
Runtime against eager torch on the shipped (compact) model and the released b3/32
preset: labels equal on >= 99.99% of voxels, max logit error < 1e-4 of the largest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml

from occdepth_export.cli import main as export_main
from occdepth_export.cli import random_images
from occdepth_export.onnx_export import ExportError, export_onnx
from occdepth_export.spec import OP_DOMAIN, OP_NAME, OP_VERSION
from occdepth_ros.runtime.onnx_contract import INPUT_NAMES, META_CONFIG, META_FORMAT, META_FORMAT_VALUE, OUTPUT_SSC_LOGIT
from occdepth_ros.checkpoint.io import load_model
from occdepth_ros.geometry.calib import shipped_kitti_calibration
from occdepth_ros.inference import StereoInference
from occdepth_ros.model.config import config_from_dict, load_preset
from occdepth_ros.model.occdepth import OccDepth
from occdepth_ros.resources import default_model_path
from occdepth_ros.runtime.ort_backend import OrtBackend, available_providers
from occdepth_ros.runtime.ort_providers import CPU, OPENVINO

# ORT's own CPU provider always; OpenVINO's where onnxruntime-openvino is installed (x86-64)
NEEDS_OPENVINO = pytest.mark.skipif(OPENVINO not in available_providers(),
                                    reason="the OpenVINO provider needs onnxruntime-openvino (x86-64 only)")
PROVIDERS = [[CPU], pytest.param([OPENVINO, CPU], marks=NEEDS_OPENVINO)]


@pytest.fixture(scope="module")
def kitti_calibration():
    return shipped_kitti_calibration()


@pytest.fixture(scope="module")
def cli_export(tmp_path_factory) -> tuple[Path, int, str]:
    """The shipped model through the CLI (which also checks ORT against torch once)."""
    import contextlib
    import io

    path = tmp_path_factory.mktemp("onnx") / "default.onnx"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = export_main(["--out", str(path)])
    return path, code, stdout.getvalue()


@pytest.fixture(scope="module")
def default_export(cli_export) -> tuple[OccDepth, Path]:
    return load_model(default_model_path()), cli_export[0]


def stereo_pair(seed: int) -> list[np.ndarray]:
    return random_images(np.random.default_rng(seed), 2)


def compare(model: OccDepth, onnx_path: Path, calibration, images,
            providers: list[str] | str = "auto") -> tuple[float, float]:
    """(max |logit diff| / max |logit|, share of equal labels) torch vs ONNX Runtime."""
    out = []
    ort_backend = OrtBackend(onnx_path, providers=providers)
    for engine in (StereoInference(model), StereoInference(ort_backend)):
        engine.set_calibration(calibration)
        out.append(engine.logits(images))
    ref, got = out
    assert got.shape == ref.shape
    return float((ref - got).abs().max() / ref.abs().max()), float((ref.argmax(1) == got.argmax(1)).double().mean())


def test_graph_structure(default_export) -> None:
    model, path = default_export
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    cfg = model.cfg
    lift = [n for n in proto.graph.node if n.domain == OP_DOMAIN]
    assert [n.op_type for n in lift] == [OP_NAME]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in lift[0].attribute}
    assert attrs["grid"] == list(cfg.grid.feature_dims)
    assert attrs["gate_scale"] == pytest.approx(cfg.depth.gate_scale)
    assert attrs["num_scales"] == len(cfg.sfa_scales)
    assert attrs["plugin_namespace"] == OP_DOMAIN.encode() and attrs["plugin_version"] == str(OP_VERSION).encode()
    assert len(lift[0].input) == len(cfg.sfa_scales) + 3  # features, pixel_index, depth_prob, depth_coords
    assert [(f.domain, f.name) for f in proto.functions] == [(OP_DOMAIN, OP_NAME)]
    assert (OP_DOMAIN, OP_VERSION) in [(o.domain, o.version) for o in proto.opset_import]
    # Lookups are inputs, not constants: the engine serves any calibration.
    inputs = {i.name: i.type.tensor_type for i in proto.graph.input}
    assert list(inputs) == list(INPUT_NAMES)
    assert inputs["pixel_index"].elem_type == onnx.TensorProto.INT32
    n = int(np.prod(cfg.grid.feature_dims))
    assert [d.dim_value for d in inputs["pixel_index"].shape.dim] == [1, 2, len(cfg.sfa_scales), n]
    assert [o.name for o in proto.graph.output] == [OUTPUT_SSC_LOGIT]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta[META_FORMAT] == META_FORMAT_VALUE
    assert config_from_dict(yaml.safe_load(meta[META_CONFIG]), "meta") == cfg


@pytest.mark.parametrize("providers", PROVIDERS)
def test_default_model_onnxruntime_matches_torch(default_export, kitti_calibration, providers) -> None:
    model, path = default_export
    for seed in (0, 1):
        rel, agree = compare(model, path, kitti_calibration, stereo_pair(seed), providers)
        assert rel < 1e-4 and agree >= 0.9999, (rel, agree)


@pytest.mark.parametrize("providers", PROVIDERS)
def test_onnxruntime_runs_the_file_as_exported(default_export, kitti_calibration, providers) -> None:
    """No provider gets a rewritten graph: the logits come back in the exported layout and
    the file is untouched."""
    _, path = default_export
    before = path.read_bytes()
    engine = StereoInference(OrtBackend(path, providers=providers))
    engine.set_calibration(kitti_calibration)
    assert engine.logits(stereo_pair(0)).is_contiguous()
    assert path.read_bytes() == before


def test_one_file_serves_another_calibration(default_export, kitti_calibration) -> None:
    """Same file and session, re-calibrated to another rig (longer baseline, shifted
    principal point): the new lookups reach the graph."""
    model, path = default_export
    calib = kitti_calibration
    projections = [p.copy() for p in calib.projections]
    projections[1][0, 3] *= 1.5
    for p in projections:
        p[0, 2] += 7.0
    other = type(calib)(projections=projections, T_grid_to_ref=calib.T_grid_to_ref, image_size=calib.image_size)
    images = stereo_pair(3)
    ort_engine, torch_engine = StereoInference(OrtBackend(path)), StereoInference(model)
    outputs = []
    for rig in (calib, other):
        ort_engine.set_calibration(rig)
        torch_engine.set_calibration(rig)
        ref, got = torch_engine.logits(images), ort_engine.logits(images)
        assert float((ref - got).abs().max() / ref.abs().max()) < 1e-4
        assert float((ref.argmax(1) == got.argmax(1)).double().mean()) >= 0.9999
        outputs.append(got)
    assert not torch.equal(outputs[0], outputs[1])  # the rig change did reach the graph


def test_released_preset_onnxruntime_matches_torch(tmp_path, kitti_calibration) -> None:
    """kitti_b3_f32 at its full 370x1220 input (random weights, fixed seed); ~1 minute."""
    torch.manual_seed(0)
    model = OccDepth(load_preset("kitti_b3_f32")).eval()
    path = tmp_path / "b3.onnx"
    export_onnx(model, path, source="preset kitti_b3_f32")
    rel, agree = compare(model, path, kitti_calibration, stereo_pair(0))
    assert rel < 1e-4 and agree >= 0.9999, (rel, agree)


def test_mean_fusion_ablation_is_refused(tmp_path) -> None:
    import dataclasses

    cfg = dataclasses.replace(load_preset("compact"), sfa_fusion="mean")
    with pytest.raises(ExportError, match="mean"):
        export_onnx(OccDepth(cfg), tmp_path / "mean.onnx")
    assert not (tmp_path / "mean.onnx").exists()


def test_cli_exports_and_checks(cli_export) -> None:
    path, code, text = cli_export
    assert code == 0, text  # non-zero when ORT and torch disagree beyond tolerance
    assert path.is_file() and "full_check passed" in text and "labels equal on" in text


def test_cli_reports_a_bad_checkpoint(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert export_main(["--checkpoint", str(bad), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "bad.safetensors" in capsys.readouterr().err


def test_tensorrt_onnx_parser_accepts_the_graph(default_export) -> None:
    """TensorRT's ONNX parser and builder, as far as they run without a GPU: TensorRT for
    RTX (pip wheels, CPU-only build for a chosen SM) parses the file, inlines the lift's
    function (no plugin registered) and builds an engine. Full TensorRT is not
    installable here (docs/EXPORT.md); this is the part of its path that is checked."""
    trt = pytest.importorskip("tensorrt_rtx_bindings", reason="tensorrt_rtx_cu13 wheels (requirements.txt) missing")
    _, path = default_export
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse_from_file(str(path))
    assert ok, [str(parser.get_error(i)) for i in range(parser.num_errors)]
    types = {network.get_layer(i).type for i in range(network.num_layers)}
    assert trt.LayerType.GATHER in types and trt.LayerType.PLUGIN_V3 not in types  # the function, inlined
    assert [network.get_output(i).name for i in range(network.num_outputs)] == [OUTPUT_SSC_LOGIT]
    config = builder.create_builder_config()
    config.num_compute_capabilities = 1
    config.set_compute_capability(trt.ComputeCapability.SM86, 0)
    engine = builder.build_serialized_network(network, config)
    assert engine is not None and engine.nbytes > 1_000_000
