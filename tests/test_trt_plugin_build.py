"""The TensorRT plugin and its CUDA kernel compiled with nvcc, warnings as errors for our
own code, against each real TensorRT header set in ../shared/tensorrt: 10.3.0 (JetPack 6),
10.16 (the last 10.x) and 11.1. Nothing links against libnvinfer (there is none here);
the library must still export TensorRT's two entry points. TensorRT for RTX loads the
library and builds engines with it in tests/test_trt_build.py."""

from __future__ import annotations

import pytest

from helpers import trt_plugin

REASON = trt_plugin.skip_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """svs_kernel.cu for sm_87 (it includes no TensorRT header: one compile serves all)."""
    return trt_plugin.compile_kernel(tmp_path_factory.mktemp("kernel"))


@pytest.mark.parametrize("version", trt_plugin.HEADER_SETS)
def test_plugin_compiles_against_tensorrt_headers(version, kernel, tmp_path) -> None:
    header = trt_plugin.header_dir(version) / "NvInferRuntime.h"
    assert header.is_file(), f"{header} missing: ../shared/tensorrt/README.md lists the header sets"
    library = trt_plugin.build_plugin(version, tmp_path, kernel)
    exported = trt_plugin.exported_symbols(library)
    assert {"getCreators", "setLoggerFinder"} <= exported, exported


def test_the_header_sets_are_the_versions_they_claim() -> None:
    """The folders hold what their names say; TensorRT 11 has no kFP16 builder flag
    (which is why the engine builder makes a strongly typed FP16 graph there)."""
    for version in trt_plugin.HEADER_SETS:
        assert trt_plugin.header_version(version) == tuple(int(p) for p in version.split(".")[:2])
    flags = {version: trt_plugin.builder_flags(version) for version in trt_plugin.HEADER_SETS}
    assert "kFP16" in flags["10.3.0"] and "kFP16" in flags["10.16"] and "kFP16" not in flags["11.1"]
    assert "kPREFER_PRECISION_CONSTRAINTS" in flags["10.3.0"] and "kPREFER_PRECISION_CONSTRAINTS" in flags["10.16"]


def test_warnings_fail_the_build(tmp_path) -> None:
    """The flags bite: a source with an unused variable does not compile."""
    source = tmp_path / "warn.cpp"
    source.write_text("int f() { int unused = 0; return 1; }\n")
    with pytest.raises(trt_plugin.BuildFailed, match="unused"):
        trt_plugin.nvcc_compile(source, tmp_path / "warn.o")
