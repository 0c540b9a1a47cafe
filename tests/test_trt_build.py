"""The engine builder's choices, on the real exported graph, and its build with TensorRT
for RTX (the real ONNX parser and builder of the TensorRT API; no GPU needed):

- which graph the parser gets: TensorRT 10.0-10.6 import a node through its model-local
  function before looking for a plugin, so with the plugin loaded they get a copy without
  the functions; 10.7+, 11.x and RTX keep them; the file on disk always keeps them;
- FP16: the builder flag where TensorRT has one, with the depth-probability layers pinned
  to float32; else the strongly typed FP16 graph (features and convolutions in float16,
  depth_prob and the lift's sums in float32), run here by ONNX Runtime against float32;
- RTX with our plugin loaded: the shipped model and kitti_b3_f32, FP32 and FP16, and
  one-node gated and ungated graphs become engines with one PLUGIN_V3 layer; a float16
  depth_prob is refused, as the contract says.

The plugin builds run in a child process (tests/helpers/rtx_build.py) whose
LD_LIBRARY_PATH holds the unversioned libtensorrt_rtx.so the RTX parser dlopen()s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

from helpers import trt_plugin
from helpers.lift_graph import single_op_model
from helpers.lift_cases import GATE_SCALE, make_case, run_reference
from occdepth_export.build_engine import build_serialized
from occdepth_export.build_engine import main as build_engine_main
from occdepth_export.fp16_graph import Fp16GraphError, depth_prob_path, lift_node, to_fp16
from occdepth_export.onnx_export import export_onnx
from occdepth_export.spec import OP_DOMAIN, OP_NAME
from occdepth_ros.runtime.onnx_contract import INPUT_DEPTH_COORDS, OUTPUT_SSC_LOGIT
from occdepth_export.trt_network import (FP16_FLAG, FP16_TYPED, FP32, TENSORRT, TENSORRT_RTX, Toolkit,
                                         depth_prob_layers, graph_for_parser, parse_version)
from occdepth_ros.checkpoint.io import load_model
from occdepth_ros.model.config import load_preset
from occdepth_ros.model.occdepth import OccDepth
from occdepth_ros.resources import default_model_path
from occdepth_ros.runtime.base import BackendError

HELPER = Path(__file__).resolve().parent / "helpers" / "rtx_build.py"
RTX_REASON = "tensorrt_rtx_cu13 wheels (requirements.txt) are not installed"
PLUGIN_REASON = trt_plugin.skip_reason()
needs_plugin = pytest.mark.skipif(PLUGIN_REASON is not None, reason=PLUGIN_REASON or "")
RTX_HEADERS = "10.16"  # the plugin library RTX loads is built against these headers
# A one-node graph: V=2 views, S=2 scales, C=4 channels, grid 3x4x5 on a 9x13 image.
ONE_NODE = dict(n_views=2, n_scales=2, grid=(3, 4, 5), gate_scale=GATE_SCALE,
                shapes={"f0": (1, 2, 4, 9, 13), "f1": (1, 2, 4, 5, 7), "index": (1, 2, 2, 60),
                        "prob": (1, 2, 6, 4, 5), "coords": (1, 2, 60, 3)})


# --- exported graphs, shared by every test here -------------------------------------------
@pytest.fixture(scope="module")
def shipped_onnx(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("shipped") / "default.onnx"
    export_onnx(load_model(default_model_path()), path)
    return path


@pytest.fixture(scope="module")
def b3_onnx(tmp_path_factory) -> Path:
    """kitti_b3_f32 at 370x1220, random weights (seed 0); ~30 s to export on 2 cores."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("b3") / "b3.onnx"
    export_onnx(OccDepth(load_preset("kitti_b3_f32")).eval(), path, source="preset kitti_b3_f32")
    return path


@pytest.fixture(scope="module")
def shipped_proto(shipped_onnx) -> onnx.ModelProto:
    return onnx.load(str(shipped_onnx))


@pytest.fixture(scope="module")
def shipped_fp16(shipped_proto) -> onnx.ModelProto:
    return to_fp16(shipped_proto)


# --- which graph the parser gets ------------------------------------------------------------
@pytest.mark.parametrize("version,strips", [("10.0.1.6", True), ("10.3.0.30", True), ("10.6.0.26", True),
                                            ("10.7.0.23", False), ("10.16.0.72", False), ("11.1.0.8", False)])
def test_functions_stripped_below_10_7_with_the_plugin(shipped_onnx, shipped_proto, version, strips) -> None:
    before = shipped_onnx.read_bytes()
    toolkit = Toolkit(TENSORRT, parse_version(version), fp16_flag=True)
    graph, stripped = graph_for_parser(shipped_proto, toolkit, plugin_loaded=True)
    assert stripped is strips
    assert len(graph.functions) == (0 if strips else 1)
    assert [(f.domain, f.name) for f in shipped_proto.functions] == [(OP_DOMAIN, OP_NAME)]  # the input is untouched
    assert shipped_onnx.read_bytes() == before  # and so is the file
    # The node itself stays, with the attributes the parser looks the plugin up by.
    assert [n.op_type for n in graph.graph.node if n.domain == OP_DOMAIN] == [OP_NAME]
    assert graph.graph.node == shipped_proto.graph.node
    # Without the plugin the function is the lift: never stripped.
    assert graph_for_parser(shipped_proto, toolkit, plugin_loaded=False) == (shipped_proto, False)


def test_rtx_keeps_the_functions(shipped_proto) -> None:
    """TensorRT for RTX 1.x prefers the plugin (checked with its parser below)."""
    toolkit = Toolkit(TENSORRT_RTX, (1, 7, 1, 116), fp16_flag=False)
    assert graph_for_parser(shipped_proto, toolkit, plugin_loaded=True) == (shipped_proto, False)


def test_versions_parse() -> None:
    assert parse_version("10.3.0.30") == (10, 3, 0, 30)
    assert parse_version("11.1.0rc1") == (11, 1, 0)
    with pytest.raises(ValueError):
        parse_version("dev")


def test_toolkit_of_the_real_rtx_module() -> None:
    trt = pytest.importorskip("tensorrt_rtx_bindings", reason=RTX_REASON)
    toolkit = Toolkit.of(trt)
    assert toolkit.name == TENSORRT_RTX and not toolkit.fp16_flag and not toolkit.parser_prefers_function
    assert toolkit.precision_mode("fp16") == FP16_TYPED and toolkit.precision_mode("fp32") == FP32


@pytest.mark.parametrize("version,fp16_flag,mode", [("10.3.0", True, FP16_FLAG), ("10.16.0", True, FP16_FLAG),
                                                    ("11.1.0", False, FP16_TYPED)])
def test_fp16_mode_follows_the_builder_flag(version, fp16_flag, mode) -> None:
    """Whether BuilderFlag.FP16 exists decides (the header sets agree:
    tests/test_trt_plugin_build.py)."""
    assert Toolkit(TENSORRT, parse_version(version), fp16_flag).precision_mode("fp16") == mode


def test_require_plugin_without_one_is_an_error(shipped_onnx, tmp_path, capsys) -> None:
    with pytest.raises(BackendError, match="plugin was required"):
        build_serialized(shipped_onnx, "fp32", None, require_plugin=True)
    code = build_engine_main(["--onnx", str(shipped_onnx), "--plugin", "none", "--require-plugin", "--build-only",
                              "--cache-dir", str(tmp_path)])
    assert code == 2 and "plugin was required but --plugin none was given" in capsys.readouterr().err


def test_trt_check_requires_the_plugin_where_it_passes_one() -> None:
    """export/trt_check.sh (for a TensorRT machine) fails when an engine meant to run the
    plugin holds no PLUGIN_V3 layer: every build it asks the plugin of says --require-plugin."""
    script = (Path(__file__).resolve().parents[1] / "export" / "trt_check.sh").read_text()
    commands = [c for c in script.replace("\\\n", " ").splitlines() if "occdepth-build-engine" in c]
    with_plugin = [c for c in commands if '--plugin "$PLUGIN"' in c]
    assert len(commands) == 3 and len(with_plugin) == 2
    assert all("--require-plugin" in c for c in with_plugin)
    assert all("--require-plugin" not in c for c in commands if "--plugin none" in c)
    assert "set -euo pipefail" in script
    assert subprocess.run(["bash", "-n", "-c", script]).returncode == 0


# --- the strongly typed FP16 graph ------------------------------------------------------------
def _types(model: onnx.ModelProto) -> dict[str, int]:
    g = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.input, *g.value_info, *g.output]}
    return types | {t.name: t.data_type for t in g.initializer}


def test_fp16_graph_types(shipped_proto, shipped_fp16) -> None:
    fp16 = shipped_fp16
    types = _types(fp16)
    lift = lift_node(fp16.graph)
    scales = next(a.i for a in lift.attribute if a.name == "num_scales")
    # Graph inputs and output keep float32 (the engine binds the same buffers).
    assert [(i.name, i.type.tensor_type.elem_type) for i in fp16.graph.input] == \
           [(i.name, i.type.tensor_type.elem_type) for i in shipped_proto.graph.input]
    outputs = [(o.name, o.type.tensor_type.elem_type) for o in fp16.graph.output]
    assert outputs == [(OUTPUT_SSC_LOGIT, TensorProto.FLOAT)]
    # The lift: features float16, depth_prob and depth_coords float32, volume float16.
    assert [types[name] for name in lift.input[:scales]] == [TensorProto.FLOAT16] * scales
    assert types[lift.input[scales]] == TensorProto.INT32
    assert types[lift.input[scales + 1]] == TensorProto.FLOAT and lift.input[scales + 2] == INPUT_DEPTH_COORDS
    assert types[lift.output[0]] == TensorProto.FLOAT16
    # depth_prob is a float32 softmax of float16 logits cast up.
    producer = {o: n for n in fp16.graph.node for o in n.output}
    softmax = producer[lift.input[scales + 1]]
    assert softmax.op_type == "Softmax" and types[softmax.input[0]] == TensorProto.FLOAT
    cast = producer[softmax.input[0]]
    assert cast.op_type == "Cast" and types[cast.input[0]] == TensorProto.FLOAT16
    # Everything else computes in float16: every float weight and every convolution.
    weights = {t.data_type for t in fp16.graph.initializer if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)}
    assert weights == {TensorProto.FLOAT16}
    convs = [n for n in fp16.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert convs and {types[n.output[0]] for n in convs} == {TensorProto.FLOAT16}
    float32 = {n.op_type for n in fp16.graph.node if n.output[0] in types and types[n.output[0]] == TensorProto.FLOAT}
    assert float32 == {"Softmax", "Cast"}  # the depth softmax, and the Casts to it and to the output


def test_fp16_function_sums_in_float32(shipped_fp16) -> None:
    """The lift's function in the FP16 graph casts its float16 features to float32 on entry
    and its volume to float16 on exit; nothing between is float16."""
    (fn,) = shipped_fp16.functions
    scales = next(a.i for a in lift_node(shipped_fp16.graph).attribute if a.name == "num_scales")
    entry, body, exit_cast = fn.node[:scales], fn.node[scales:-1], fn.node[-1]
    assert [(n.op_type, n.input[0], n.attribute[0].i) for n in entry] == \
           [("Cast", fn.input[s], TensorProto.FLOAT) for s in range(scales)]
    assert (exit_cast.op_type, exit_cast.output[0], exit_cast.attribute[0].i) == ("Cast", fn.output[0],
                                                                                  TensorProto.FLOAT16)
    assert not {i for n in body for i in n.input} & set(fn.input[:scales])  # the body reads the float32 copies
    assert not [n for n in body if n.op_type == "Cast" and n.attribute[0].i == TensorProto.FLOAT16]


def test_fp16_one_node_function_against_float64() -> None:
    """ONNX Runtime runs the FP16 one-node graph: the float16-rounded features through
    float32 sums are within float16's output rounding of the float64 reference on the
    same rounded features."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in requirements.txt")
    rng = np.random.default_rng(7)
    features, index, prob, coords, grid = make_case(rng, 1, 2, 2, 4, grid=ONE_NODE["grid"])
    model = to_fp16(single_op_model(2, 2, True, grid, GATE_SCALE))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"f0": features[0], "f1": features[1], "index": index, "prob": prob,
                                "coords": coords})
    rounded = [f.astype(np.float16).astype(np.float64) for f in features]
    ref = run_reference(rounded, index, grid, prob.astype(np.float64), coords.astype(np.float64)).reshape(got.shape)
    scale = np.abs(ref).max()
    assert got.dtype == np.float32 and scale > 0
    assert np.abs(got - ref).max() <= 2e-3 * scale  # float16's output rounding (2^-11), with margin


def test_fp16_graph_runs_and_agrees_with_float32(shipped_onnx, shipped_fp16, tmp_path) -> None:
    """ONNX Runtime (CPU) on the shipped model: the FP16 graph's labels against the float32
    graph's on one random stereo pair (measured: 99.95 % equal)."""
    from occdepth_export.cli import random_images
    from occdepth_ros.geometry.calib import shipped_kitti_calibration
    from occdepth_ros.inference import StereoInference
    from occdepth_ros.runtime.ort_backend import OrtBackend

    fp16_path = tmp_path / "fp16.onnx"
    onnx.save(shipped_fp16, str(fp16_path))
    images = random_images(np.random.default_rng(0), 2)
    logits = []
    for path in (shipped_onnx, fp16_path):
        engine = StereoInference(OrtBackend(path, providers=["CPUExecutionProvider"]))
        engine.set_calibration(shipped_kitti_calibration())
        logits.append(engine.logits(images))
    agree = float((logits[0].argmax(1) == logits[1].argmax(1)).double().mean())
    rel = float((logits[0] - logits[1]).abs().max() / logits[0].abs().max())
    assert agree >= 0.999 and 0 < rel < 2e-2, (agree, rel)


def test_fp16_depth_prob_is_refused() -> None:
    model = single_op_model(2, 2, True, (3, 4, 5), GATE_SCALE, prob_dtype=TensorProto.FLOAT16)
    with pytest.raises(Fp16GraphError, match="depth_prob must be float32"):
        to_fp16(model)


def test_fp16_refuses_weights_beyond_float16(shipped_proto) -> None:
    broken = onnx.ModelProto()
    broken.CopyFrom(shipped_proto)
    weight = next(t for t in broken.graph.initializer if t.data_type == TensorProto.FLOAT)
    weight.CopyFrom(onnx.numpy_helper.from_array(np.full(onnx.numpy_helper.to_array(weight).shape, 1e6, np.float32),
                                                 weight.name))
    with pytest.raises(Fp16GraphError, match=weight.name):
        to_fp16(broken)


# --- weakly typed FP16: which layers stay float32 ---------------------------------------------
def test_depth_prob_layers_found_in_the_parsed_network(shipped_proto) -> None:
    """TensorRT 10's FP16 flag lets the builder choose; the builder pins the layers that
    compute depth_prob. Their lookup is checked on the network the real parser (RTX)
    makes of the shipped model: the parser's SOFTMAX layer and the shuffle after it."""
    trt = pytest.importorskip("tensorrt_rtx_bindings", reason=RTX_REASON)
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(shipped_proto.SerializeToString())
    values, nodes = depth_prob_path(shipped_proto.graph)
    layers = depth_prob_layers(trt, network, values)
    assert [layer.type for layer in layers] == [trt.LayerType.SHUFFLE, trt.LayerType.SOFTMAX]
    softmax_node = next(n for n in shipped_proto.graph.node if n.name in nodes)
    assert layers[1].get_input(0).name == softmax_node.input[0]  # the depth logits: the whole softmax is pinned
    assert layers[0].get_output(0).name in values


# --- TensorRT for RTX with our plugin -----------------------------------------------------
@pytest.fixture(scope="module")
def rtx_plugins(tmp_path_factory):
    """version -> the plugin library built against that header set, in a folder that also
    holds the libtensorrt_rtx.so symlink (built once per version)."""
    if PLUGIN_REASON is not None:
        pytest.skip(PLUGIN_REASON)
    libs = pytest.importorskip("tensorrt_rtx_libs", reason=RTX_REASON)
    versioned = Path(libs.__file__).parent / "libtensorrt_rtx.so.1"
    assert versioned.is_file(), f"{versioned} missing from the tensorrt_rtx_cu13_libs wheel"
    kernel = trt_plugin.compile_kernel(tmp_path_factory.mktemp("kernel"))
    built: dict[str, Path] = {}

    def get(version: str) -> Path:
        if version not in built:
            folder = tmp_path_factory.mktemp(f"rtx_plugin_{version}")
            (folder / "libtensorrt_rtx.so").symlink_to(versioned)
            built[version] = trt_plugin.build_plugin(version, folder, kernel)
        return built[version]

    return get


@pytest.fixture(scope="module")
def rtx_plugin(rtx_plugins) -> Path:
    return rtx_plugins(RTX_HEADERS)


def run_rtx(plugin: Path | None, mode: str, onnx_path: Path, *args: str) -> tuple[int, dict, str]:
    """(exit code, the JSON report, the whole output) of tests/helpers/rtx_build.py."""
    folder = plugin.parent if plugin is not None else None
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    if folder is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(folder), os.environ.get("LD_LIBRARY_PATH")]))
    cmd = [sys.executable, str(HELPER), mode, str(onnx_path), *(["--plugin", str(plugin)] if plugin else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    text = proc.stdout + proc.stderr
    assert proc.returncode in (0, 2), f"rtx_build.py died ({proc.returncode}):\n{text[-4000:]}"
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1]), text


def expected_io(scales: int, gated: bool, precision: str) -> list[str]:
    feature = "HALF" if precision == "fp16" else "FLOAT"
    return [feature] * scales + ["INT32"] + (["FLOAT", "FLOAT"] if gated else []) + [feature]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("model", ["shipped", "kitti_b3_f32"])
def test_rtx_builds_the_model_with_the_plugin(request, rtx_plugin, tmp_path, model, precision) -> None:
    onnx_path = request.getfixturevalue("shipped_onnx" if model == "shipped" else "b3_onnx")
    engine = tmp_path / "model.engine"
    code, report, text = run_rtx(rtx_plugin, "builder", onnx_path, "--precision", precision, "--require-plugin",
                                 "--engine", str(engine))
    assert code == 0, text
    assert report["plugin_layers"] == ["node_stereo_voxel_sample"] and report["lift"] == "plugin"
    assert report["precision_mode"] == (FP32 if precision == "fp32" else FP16_TYPED)
    assert not report["functions_stripped"]  # RTX prefers the plugin with the function present
    scales = len(load_preset("compact" if model == "shipped" else "kitti_b3_f32").sfa_scales)
    assert report["plugin_io"] == [expected_io(scales, True, precision)]
    assert engine.stat().st_size == report["engine_bytes"] > 1_000_000
    assert f"lift: plugin {OP_NAME}" in text


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("gated", [True, False])
def test_rtx_builds_one_node_graphs(rtx_plugin, tmp_path, gated, precision) -> None:
    path = tmp_path / "one.onnx"
    onnx.save(single_op_model(gated=gated, **ONE_NODE), str(path))
    code, report, text = run_rtx(rtx_plugin, "builder", path, "--precision", precision, "--require-plugin")
    assert code == 0, text
    assert len(report["plugin_layers"]) == 1, report
    assert report["plugin_io"] == [expected_io(2, gated, precision)]
    assert report["engine_bytes"] > 0


@pytest.mark.parametrize("version", trt_plugin.HEADER_SETS)
def test_rtx_loads_the_plugin_built_against_each_header_set(rtx_plugins, tmp_path, version) -> None:
    """The library built against the 10.3.0 (JetPack 6), 10.16 and 11.1 headers alike
    registers its creator in RTX and builds the gated FP16 one-node graph."""
    path = tmp_path / "one.onnx"
    onnx.save(single_op_model(gated=True, **ONE_NODE), str(path))
    code, report, text = run_rtx(rtx_plugins(version), "builder", path, "--precision", "fp16", "--require-plugin")
    assert code == 0, text
    assert report["plugin_io"] == [expected_io(2, True, "fp16")] and report["engine_bytes"] > 0


def test_rtx_refuses_a_float16_depth_prob(rtx_plugin, tmp_path) -> None:
    """The plugin takes depth_prob in float32 only (supportsFormatCombination): the same
    graph builds with a float32 depth_prob, and with a float16 one the builder finds no
    format the plugin supports."""
    runs = {}
    for name, dtype in (("float", TensorProto.FLOAT), ("half", TensorProto.FLOAT16)):
        path = tmp_path / f"{name}.onnx"
        onnx.save(single_op_model(gated=True, prob_dtype=dtype, with_function=False, **ONE_NODE), str(path))
        _, report, text = run_rtx(rtx_plugin, "as-typed", path)
        runs[name] = report, text
    report, _ = runs["float"]
    assert report["parsed"] and len(report["plugin_layers"]) == 1 and report["engine_bytes"] > 0
    report, text = runs["half"]
    assert report["parsed"] and len(report["plugin_layers"]) == 1 and report["engine_bytes"] == 0, report
    assert "supported plugin" in text, text[-2000:]


def test_rtx_binds_the_graph_jetpack_6_gets(rtx_plugin, shipped_proto, tmp_path) -> None:
    """The copy TensorRT 10.3 parses (no model-local function) binds to the plugin in a
    real parser, as the function-free node must there."""
    graph, stripped = graph_for_parser(shipped_proto, Toolkit(TENSORRT, (10, 3, 0), True), plugin_loaded=True)
    assert stripped
    path = tmp_path / "stripped.onnx"
    onnx.save(graph, str(path))
    _, report, _ = run_rtx(rtx_plugin, "as-typed", path)
    assert report["parsed"] and report["plugin_layers"] == ["node_stereo_voxel_sample"]
    assert report["engine_bytes"] > 1_000_000


def test_rtx_without_the_plugin_inlines_the_function(shipped_onnx) -> None:
    """No plugin library: the builder reports the function, read from the network."""
    trt = pytest.importorskip("tensorrt_rtx_bindings", reason=RTX_REASON)
    lines: list[str] = []
    built = build_serialized(shipped_onnx, "fp32", None, trt=trt, compute_capabilities=("SM86",), log=lines.append)
    assert built.plugin_layers == () and built.lift == "function" and len(built.engine) > 1_000_000
    assert not built.functions_stripped and built.plugin_io == ()
    assert lines == [built.describe()] and "lift: the ONNX function, inlined" in lines[0]
