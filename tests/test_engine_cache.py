"""Engine cache and TensorRT plumbing that runs without TensorRT: keys, staleness per
key field, corrupt engines, manifests, and the errors a user sees when TensorRT, a GPU
or the plugin library is missing. The TensorRT build itself is in test_tensorrt.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from occdepth_export.backends import create_backend
from occdepth_ros.runtime import BackendError
from occdepth_ros.runtime.engine_cache import EngineCache, EngineKey, file_sha256, onnx_input_shapes, validate_engine
from occdepth_ros.runtime.trt_env import PLUGIN_ENV, find_plugin_library

try:
    import tensorrt  # noqa: F401

    HAVE_TRT = True
except ImportError:
    HAVE_TRT = False

ORIN_AGX = "Orin (16 SMs) on NVIDIA Jetson AGX Orin Developer Kit"


@pytest.fixture
def onnx_file(tmp_path) -> Path:
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 2, 3, 8, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 8, 16])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["images"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture
def key(onnx_file) -> EngineKey:
    return EngineKey.for_build(onnx_file, "fp16", "10.3.0", "8.7", None, gpu_model=ORIN_AGX)


def test_key_fields(onnx_file, key, tmp_path) -> None:
    assert key.onnx_sha256 == file_sha256(onnx_file)
    assert json.loads(key.input_shapes) == {"images": [1, 2, 3, 8, 16]} == onnx_input_shapes(onnx_file)
    assert key.plugin_sha256 == ""
    plugin = tmp_path / "libplugin.so"
    plugin.write_bytes(b"\x7fELF fake")
    with_plugin = EngineKey.for_build(onnx_file, "fp16", "10.3.0", "8.7", plugin, gpu_model=ORIN_AGX)
    assert with_plugin.plugin_sha256 == file_sha256(plugin) and with_plugin.digest() != key.digest()


def test_store_then_lookup(tmp_path, key) -> None:
    cache = EngineCache(tmp_path / "cache")
    stored = cache.store(key, "m", b"engine bytes", {"config": "name: x"})
    found, why = cache.lookup(key, "m")
    assert why == "" and found.path == stored.path and found.path.read_bytes() == b"engine bytes"
    assert found.manifest["config"] == "name: x" and "fp16-sm87" in found.path.name
    assert not list(cache.root.glob("*.tmp*"))  # atomic writes leave nothing behind


@pytest.mark.parametrize("field,value", [
    ("onnx_sha256", "0" * 64), ("precision", "fp32"), ("input_shapes", '{"images": [1, 2, 3, 16, 32]}'),
    ("tensorrt_version", "10.7.0"), ("compute_capability", "9.0"), ("plugin_sha256", "f" * 64),
    ("gpu_model", "Orin (8 SMs) on NVIDIA Jetson Orin Nano Developer Kit"),
])
def test_every_key_field_makes_an_engine_stale(tmp_path, key, field, value) -> None:
    cache = EngineCache(tmp_path)
    stored = cache.store(key, "m", b"engine")
    changed = dataclasses.replace(key, **{field: value})
    # Under the new key's own file name nothing exists ...
    assert cache.lookup(changed, "m")[0] is None
    # ... and a renamed or copied engine is caught by its manifest.
    found, why = validate_engine(stored.path, changed)
    assert found is None and "stale" in why and field in why


def test_corrupt_engine_and_bad_manifests(tmp_path, key) -> None:
    cache = EngineCache(tmp_path)
    stored = cache.store(key, "m", b"engine")
    stored.path.write_bytes(b"engine, truncated")
    assert "corrupt" in cache.lookup(key, "m")[1]
    manifest = stored.path.with_suffix(".json")
    manifest.write_text("{not json")
    assert "unreadable" in cache.lookup(key, "m")[1]
    manifest.write_text(json.dumps({"cache_format": 999, "key": {}}))
    assert "not an occdepth_ros engine manifest" in cache.lookup(key, "m")[1]
    manifest.unlink()
    assert "no manifest" in cache.lookup(key, "m")[1]


def test_plugin_library_lookup(tmp_path, monkeypatch) -> None:
    with pytest.raises(BackendError, match="plugin library not found"):
        find_plugin_library(tmp_path / "missing.so")
    lib = tmp_path / "liboccdepth_svs_trt.so"
    lib.write_bytes(b"x")
    monkeypatch.setenv(PLUGIN_ENV, str(lib))
    assert find_plugin_library() == lib
    assert find_plugin_library("none") is None  # build without the plugin: the ONNX function is inlined


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here; the missing-TensorRT error cannot be shown")
def test_tensorrt_backend_without_tensorrt_says_so(tmp_path, onnx_file) -> None:
    with pytest.raises(BackendError, match="TensorRT is not importable"):
        create_backend("tensorrt", checkpoint=str(onnx_file), device="cuda:0", cache=tmp_path)
    from occdepth_export.build_engine import main

    assert main(["--onnx", str(onnx_file), "--build-only", "--cache-dir", str(tmp_path)]) == 2


def test_backend_names_and_files_are_checked(tmp_path, onnx_file) -> None:
    with pytest.raises(BackendError, match="unknown backend"):
        create_backend("tflite")
    with pytest.raises(BackendError, match="needs a checkpoint"):
        create_backend("torch", checkpoint=str(onnx_file))
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"x")
    with pytest.raises(BackendError, match="TensorRT engine"):
        create_backend("onnxruntime", checkpoint=str(engine))
