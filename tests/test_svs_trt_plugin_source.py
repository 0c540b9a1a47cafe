"""The TensorRT plugin source (export/plugin/src/svs_trt_plugin.cpp) against the exporter.

No TensorRT headers can be installed in this CI, so the plugin is checked in two ways:

- always: the identity strings and field names the C++ declares are the ones the
  exporter writes on the ONNX node (occdepth_export.spec and the registered OpSchema),
  with the field types the ONNX parser hands over; plus the source rules that keep it
  loadable (C entry points, const getOutputDataTypes, no anonymous namespace);
- where NvInfer.h is found ($TENSORRT_ROOT/include or a standard include path): the
  plugin and the kernel are compiled with nvcc into one shared library, which must export
  getCreators and setLoggerFinder. Elsewhere that test skips.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from occdepth_export import spec

PLUGIN = Path(__file__).resolve().parents[1] / "export" / "plugin"
INCLUDE = PLUGIN / "include"
SOURCE = PLUGIN / "src" / "svs_trt_plugin.cpp"
KERNEL = PLUGIN / "src" / "svs_kernel.cu"
ARCH = "87"  # Jetson Orin, the deployment target
BUILD_TIMEOUT_S = 900
PARSER_ATTRIBUTES = {"plugin_namespace", "plugin_version"}  # read by TensorRT's parser, not fields
# ONNX attribute type -> (PluginFieldType the ONNX parser passes, length) for this node.
FIELD_TYPES = {"grid": ("kINT32", 3), "gate_scale": ("kFLOAT32", 1), "num_scales": ("kINT32", 1)}
# Fields the plugin serialises that are no node attribute: set when the builder configures it.
SERIAL_ONLY_FIELDS = {"gated": ("kINT32", 1)}


@pytest.fixture(scope="module")
def source() -> str:
    return SOURCE.read_text()


@pytest.fixture(scope="module")
def string_constants(source) -> dict[str, str]:
    """`constexpr char kName[] = "value";` declarations of the C++ file."""
    return dict(re.findall(r'constexpr\s+char\s+(k\w+)\[\]\s*=\s*"([^"]*)"\s*;', source))


@pytest.fixture(scope="module")
def field_uses(source, string_constants) -> list[tuple[str, str, int]]:
    """Every PluginField(kField..., data, PluginFieldType::kX, length) as (name, type, length)."""
    uses = re.findall(r"PluginField\(\s*(kField\w+)\s*,[^,]+,\s*PluginFieldType::(k\w+)\s*,\s*(\d+)\s*\)", source)
    return [(string_constants[const], ftype, int(length)) for const, ftype, length in uses]


def test_identity_matches_exporter(string_constants) -> None:
    assert string_constants["kPluginName"] == spec.OP_NAME
    assert string_constants["kPluginVersion"] == str(spec.OP_VERSION)
    assert string_constants["kPluginNamespace"] == spec.PLUGIN_NAMESPACE == spec.OP_DOMAIN


def test_fields_are_the_node_attributes(string_constants, field_uses) -> None:
    onnx = pytest.importorskip("onnx")
    from occdepth_export.onnx_export import register_schema

    register_schema()
    schema = onnx.defs.get_schema(spec.OP_NAME, spec.OP_VERSION, spec.OP_DOMAIN)
    node_attributes = set(schema.attributes) - PARSER_ATTRIBUTES
    declared = {value for name, value in string_constants.items() if name.startswith("kField")}
    assert declared - set(SERIAL_ONLY_FIELDS) == node_attributes == set(FIELD_TYPES)
    # Each field is advertised by the creator (getFieldNames) and written by
    # getFieldsToSerialize, with the type the ONNX parser uses (INTS/INT -> kINT32).
    for field, expected in FIELD_TYPES.items():
        uses = [(ftype, length) for name, ftype, length in field_uses if name == field]
        assert uses == [expected, expected], (field, uses)
    for field, expected in SERIAL_ONLY_FIELDS.items():  # written by getFieldsToSerialize only
        assert [(t, n) for name, t, n in field_uses if name == field] == [expected], field
    attr_type = onnx.defs.OpSchema.AttrType
    kinds = {name: schema.attributes[name].type for name in FIELD_TYPES}
    assert kinds == {"grid": attr_type.INTS, "gate_scale": attr_type.FLOAT, "num_scales": attr_type.INT}


def test_source_rules(source) -> None:
    # TensorRT finds the creators through these C symbols (loadLibrary, trtexec --dynamicPlugins).
    assert re.search(r'#define\s+OCCDEPTH_TRT_EXPORT\s+extern\s+"C"\s+__attribute__\(\(visibility\("default"\)\)\)',
                     source)
    assert re.search(r"OCCDEPTH_TRT_EXPORT\s+nvinfer1::IPluginCreatorInterface\s*\*\s*const\s*\*\s*"
                     r"getCreators\(\s*int32_t\s*&\s*\w+\s*\)", source)
    assert re.search(r"OCCDEPTH_TRT_EXPORT\s+void\s+setLoggerFinder\(\s*nvinfer1::ILoggerFinder\s*\*\s*\w*\s*\)",
                     source)
    # const in the TensorRT 10 and 11 headers; a non-const override does not compile on 11.
    assert re.search(r"getOutputDataTypes\([^)]*\)\s*const\s+noexcept\s+override", source)
    # nvcc's stub generation breaks on kernel parameter types in an anonymous namespace.
    assert not re.search(r"namespace\s*\{", source)
    assert "occdepth_svs_forward_cuda(" in source


def _tensorrt_include_dir() -> tuple[Path | None, list[str]]:
    """The folder holding NvInfer.h: $TENSORRT_ROOT/include, then the standard places
    (Debian/JetPack packages use /usr/include/<multiarch>)."""
    candidates = []
    if os.environ.get("TENSORRT_ROOT"):
        candidates.append(Path(os.environ["TENSORRT_ROOT"]) / "include")
    candidates += [Path(p) for p in os.environ.get("CPATH", "").split(os.pathsep) if p]
    candidates += [Path("/usr/include"), Path(f"/usr/include/{platform.machine()}-linux-gnu"),
                   Path("/usr/local/include"), Path("/usr/local/TensorRT/include")]
    for folder in candidates:
        if (folder / "NvInfer.h").is_file():
            return folder, [str(c) for c in candidates]
    return None, [str(c) for c in candidates]


def test_plugin_compiles_with_tensorrt(tmp_path) -> None:
    trt_include, searched = _tensorrt_include_dir()
    if trt_include is None:
        pytest.skip(f"TensorRT headers (NvInfer.h) not installed: searched {', '.join(searched)}; "
                    "set TENSORRT_ROOT to build the plugin (export/plugin/README.md)")
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not on PATH: the plugin and its kernel cannot be compiled here")
    library = tmp_path / "liboccdepth_svs_trt.so"
    cmd = [nvcc, "-std=c++17", "-O2", "-shared", "-Xcompiler", "-fPIC,-fvisibility=hidden",
           f"-I{trt_include}", f"-I{INCLUDE}", f"-gencode=arch=compute_{ARCH},code=sm_{ARCH}",
           str(SOURCE), str(KERNEL), "-o", str(library)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("built, but nm is not on PATH to list the exported symbols")
    symbols = subprocess.run([nm, "-D", "--defined-only", str(library)], capture_output=True, text=True,
                             check=True).stdout
    exported = {line.split()[-1] for line in symbols.splitlines() if " T " in line}
    assert {"getCreators", "setLoggerFinder", "occdepth_svs_forward_cuda"} <= exported, exported
