"""The TensorRT runtime's bookkeeping, with FAKES of the TensorRT API objects
(tests/helpers/fake_tensorrt.py; libnvinfer cannot be installed here): the plugin library
is registered once per process, engine I/O buffers take the engine's own dtypes, the
calibration lookups reach the device once rather than every frame, the engine cache
tells Jetson Orin modules apart, and a ``.engine`` runs only with the plugin it was
built with."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers.fake_tensorrt import DataType, FakeContext, FakeEngine, fake_tensorrt

from occdepth_ros.geometry.lookups import LiftTensors
from occdepth_ros.runtime import BackendError
from occdepth_ros.runtime import trt_env
from occdepth_ros.runtime.engine_cache import EngineCache, EngineKey, engine_plugin_problem, validate_engine
from occdepth_ros.runtime.trt_backend import TrtBackend
from occdepth_ros.runtime.trt_io import EngineIO

V, S, N, H, W = 2, 4, 48, 8, 16


@pytest.fixture(autouse=True)
def fresh_process_state(monkeypatch) -> None:
    monkeypatch.setattr(trt_env, "_loaded_plugins", {})


@pytest.fixture
def libraries(tmp_path):
    a, b = tmp_path / "liba.so", tmp_path / "libb.so"
    a.write_bytes(b"\x7fELF plugin build A")
    b.write_bytes(b"\x7fELF plugin build B")
    (tmp_path / "link.so").symlink_to(a)
    return a, b, tmp_path / "link.so"


def test_plugin_library_registered_once_per_process(libraries) -> None:
    a, b, link = libraries
    trt = fake_tensorrt()
    # A cache miss: the engine builder loads the plugin, then the backend that runs the engine.
    trt_env.load_plugin(trt, a)
    trt_env.load_plugin(trt, a)
    trt_env.load_plugin(trt, link)  # the same file by another name
    trt_env.load_plugin(trt, None)
    assert trt.registry.loaded == [str(a)]
    with pytest.raises(BackendError, match="already registered in this process"):
        trt_env.load_plugin(trt, b)
    rtx = fake_tensorrt("tensorrt_rtx_bindings")  # another TensorRT, another registry
    trt_env.load_plugin(rtx, b)
    assert rtx.registry.loaded == [str(b)] and trt.registry.loaded == [str(a)]


def test_gpu_model_tells_orin_modules_apart(tmp_path) -> None:
    tree = tmp_path / "model"
    tree.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    assert trt_env.board_model(tree) == "NVIDIA Jetson AGX Orin Developer Kit"
    assert trt_env.board_model(tmp_path / "absent") == ""
    agx = trt_env.describe_gpu("Orin", 16, trt_env.board_model(tree))
    nx = trt_env.describe_gpu("Orin", 8, "NVIDIA Jetson Orin NX Engineering Reference Developer Kit")
    nano = trt_env.describe_gpu("Orin", 8, "NVIDIA Jetson Orin Nano Developer Kit")
    assert len({agx, nx, nano}) == 3
    assert agx == "Orin (16 SMs) on NVIDIA Jetson AGX Orin Developer Kit"
    assert trt_env.describe_gpu("NVIDIA GeForce RTX 3090", 82) == "NVIDIA GeForce RTX 3090 (82 SMs)"


def _key(onnx_file, gpu: str, plugin=None) -> EngineKey:
    return EngineKey.for_build(onnx_file, "fp16", "10.3.0", "8.7", plugin, gpu_model=gpu)


@pytest.fixture
def onnx_file(tmp_path):
    from onnx import TensorProto, helper, save

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph([helper.make_node("Relu", ["images"], ["y"])], "g", [x], [y])
    path = tmp_path / "m.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10), str(path))
    return path


def test_engine_for_another_orin_module_is_stale(tmp_path, onnx_file) -> None:
    agx = _key(onnx_file, "Orin (16 SMs) on NVIDIA Jetson AGX Orin Developer Kit")
    nano = dataclasses.replace(agx, gpu_model="Orin (8 SMs) on NVIDIA Jetson Orin Nano Developer Kit")
    assert agx.compute_capability == nano.compute_capability and agx.digest() != nano.digest()
    stored = EngineCache(tmp_path).store(agx, "m", b"engine")
    found, why = validate_engine(stored.path, nano)
    assert found is None and "gpu_model" in why


def test_manifest_from_before_the_gpu_model_field_means_rebuild(tmp_path, onnx_file) -> None:
    import json

    stored = EngineCache(tmp_path).store(_key(onnx_file, "Orin (16 SMs)"), "m", b"engine")
    manifest_path = stored.path.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text())
    del manifest["key"]["gpu_model"]
    manifest_path.write_text(json.dumps(manifest))
    found, why = validate_engine(stored.path, None)
    assert found is None and "lacks gpu_model" in why and "rebuild" in why


def test_engine_runs_only_with_the_plugin_it_was_built_with(tmp_path, onnx_file, libraries) -> None:
    a, b, _ = libraries
    key = _key(onnx_file, "Orin (16 SMs)", plugin=a)
    stored = EngineCache(tmp_path).store(key, "m", b"engine", {"plugin": str(a), "config": "name: x"})
    assert engine_plugin_problem(stored.manifest, a) == ""
    assert "is not the one the engine was built with" in engine_plugin_problem(stored.manifest, b)
    assert "no plugin library is loaded" in engine_plugin_problem(stored.manifest, None)
    plain = EngineCache(tmp_path).store(_key(onnx_file, "Orin (16 SMs)"), "p", b"engine", {"plugin": ""})
    assert engine_plugin_problem(plain.manifest, None) == engine_plugin_problem(plain.manifest, b) == ""
    # Loading the .engine path checks before TensorRT is touched (none is installed here).
    with pytest.raises(BackendError, match=r"liba\.so.*sha256"):
        TrtBackend.from_engine(stored.path, plugin=b)
    with pytest.raises(BackendError, match="no plugin library is loaded"):
        TrtBackend.from_engine(stored.path, plugin="none")


def _engine(images=DataType.FLOAT, pixel_index=DataType.INT32, output=DataType.FLOAT) -> FakeEngine:
    return FakeEngine({"images": ((1, V, 3, H, W), images), "pixel_index": ((1, V, S, N), pixel_index),
                       "depth_coords": ((1, V, N, 3), DataType.FLOAT), "pixel_size": ((1, V, 1), DataType.FLOAT),
                       "ssc_logit": ((1, 5, 4, 4, 3), output)})


def _lift(seed: int) -> LiftTensors:
    g = torch.Generator().manual_seed(seed)
    return LiftTensors(torch.randint(-1, H * W, (1, V, S, N), generator=g), torch.rand(1, V, N, 3, generator=g),
                       torch.rand(1, V, 1, generator=g))


def _images(seed: int) -> torch.Tensor:
    return torch.rand(1, V, 3, H, W, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("images, pixel_index, output", [
    (DataType.FLOAT, DataType.INT32, DataType.FLOAT),
    (DataType.HALF, DataType.INT64, DataType.HALF),  # an FP16-I/O engine
])
def test_buffers_take_the_engine_dtypes(images, pixel_index, output) -> None:
    context = FakeContext()
    io = EngineIO.bind(fake_tensorrt(), _engine(images, pixel_index, output), context, torch.device("cpu"))
    expected = {DataType.FLOAT: torch.float32, DataType.HALF: torch.float16, DataType.INT32: torch.int32,
                DataType.INT64: torch.int64}
    assert io.buffers["images"].dtype == expected[images]
    assert io.buffers["pixel_index"].dtype == expected[pixel_index]
    assert io.buffers["ssc_logit"].dtype == expected[output]
    assert context.addresses == {name: t.data_ptr() for name, t in io.buffers.items()}
    lift, frame = _lift(1), _images(1)
    io.feed(frame, lift)
    assert torch.equal(io.buffers["pixel_index"], lift.pixel_index.to(expected[pixel_index]))
    assert torch.equal(io.buffers["images"], frame.to(expected[images]))
    assert io.output().dtype == torch.float32


def test_lookups_are_copied_once_not_per_frame() -> None:
    io = EngineIO.bind(fake_tensorrt(), _engine(), FakeContext(), torch.device("cpu"))
    lift = _lift(1)
    copied = [io.feed(_images(i), lift) for i in range(4)]
    lookups = ["pixel_index", "depth_coords", "pixel_size"]
    assert copied == [["images", *lookups]] + [["images"]] * 3
    assert torch.equal(io.buffers["images"], _images(3))
    other = _lift(2)  # a new calibration
    assert io.feed(_images(4), other) == ["images", *lookups]
    assert torch.equal(io.buffers["depth_coords"], other.depth_coords)
    other.depth_coords.mul_(0.5)  # changed in place: still noticed
    assert io.feed(_images(5), other) == ["images", *lookups]
    assert torch.equal(io.buffers["depth_coords"], other.depth_coords)


def test_engine_io_errors_are_named() -> None:
    trt = fake_tensorrt()
    engine = _engine()
    del engine.tensors["pixel_size"]
    with pytest.raises(BackendError, match=r"lacks I/O tensors \['pixel_size'\]"):
        EngineIO.bind(trt, engine, FakeContext(), torch.device("cpu"))
    with pytest.raises(BackendError, match="'images' has TensorRT type DataType.FP8"):
        EngineIO.bind(trt, _engine(images=DataType.FP8), FakeContext(), torch.device("cpu"))
    dynamic = _engine()
    dynamic.tensors["images"] = ((-1, V, 3, H, W), DataType.FLOAT)
    with pytest.raises(BackendError, match="dynamic shape"):
        EngineIO.bind(trt, dynamic, FakeContext(), torch.device("cpu"))
    io = EngineIO.bind(trt, _engine(), FakeContext(), torch.device("cpu"))
    with pytest.raises(BackendError, match=r"'images' is \(1, 2, 3, 8, 8\), the engine was built for"):
        io.feed(torch.zeros(1, V, 3, H, H), _lift(1))
