"""Compiling the TensorRT plugin (export/plugin) against the real TensorRT headers in
../shared/tensorrt (10.3.0, 10.16, 11.1; no libnvinfer there, so nothing links against
TensorRT) with nvcc, warnings as errors for our code. The headers are included as system
headers (-isystem): their own deprecation warnings are TensorRT's, not ours."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "export" / "plugin"
INCLUDE = PLUGIN / "include"
SOURCE = PLUGIN / "src" / "svs_trt_plugin.cpp"
KERNEL = PLUGIN / "src" / "svs_kernel.cu"
SHARED_TENSORRT = REPO.parent / "shared" / "tensorrt"
HEADER_SETS = ("10.3.0", "10.16", "11.1")  # JetPack 6, the last 10.x, TensorRT 11
ARCH = "87"  # Jetson Orin, the deployment target
BUILD_TIMEOUT_S = 900
WARNINGS = "-Wall,-Wextra,-Werror"
LIBRARY = "liboccdepth_svs_trt.so"


class BuildFailed(AssertionError):
    pass


def skip_reason() -> str | None:
    """Why the plugin cannot be compiled here, or None."""
    if not SHARED_TENSORRT.is_dir():
        return f"{SHARED_TENSORRT} (the real TensorRT headers, a sibling of the checkout) is absent"
    if shutil.which("nvcc") is None:
        return "nvcc is not on PATH: the plugin and its kernel cannot be compiled here"
    return None


def header_dir(version: str) -> Path:
    return SHARED_TENSORRT / version / "include"


def header_version(version: str) -> tuple[int, int]:
    """(major, minor) as NvInferVersion.h of that header set defines them."""
    text = (header_dir(version) / "NvInferVersion.h").read_text()
    found = {}
    for part in ("MAJOR", "MINOR"):
        match = (re.search(rf"#define\s+TRT_{part}_ENTERPRISE\s+(\d+)", text)
                 or re.search(rf"#define\s+NV_TENSORRT_{part}\s+(\d+)", text))
        assert match is not None, f"no {part} version in {version}/NvInferVersion.h"
        found[part] = int(match.group(1))
    return found["MAJOR"], found["MINOR"]


def builder_flags(version: str) -> set[str]:
    """The members of enum class BuilderFlag in that header set's NvInfer.h."""
    text = (header_dir(version) / "NvInfer.h").read_text()
    body = re.search(r"enum class BuilderFlag\s*:\s*int32_t\s*\{(.*?)\};", text, re.S)
    assert body is not None, f"no BuilderFlag enum in {version}/NvInfer.h"
    return set(re.findall(r"^\s*(k[A-Z0-9_]+)\b", body.group(1), re.M))


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    if proc.returncode != 0:
        raise BuildFailed(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


def nvcc_compile(source: Path, obj: Path, *flags: str) -> Path:
    """One translation unit -> object; nvcc's and the host compiler's warnings are errors."""
    _run(["nvcc", "-std=c++17", "-O2", "-c", "-Werror", "all-warnings", "-Xcompiler",
          f"-fPIC,-fvisibility=hidden,{WARNINGS}", f"-I{INCLUDE}", *flags, str(source), "-o", str(obj)])
    return obj


def compile_kernel(out_dir: Path, arch: str = ARCH) -> Path:
    return nvcc_compile(KERNEL, out_dir / "svs_kernel.o", f"-gencode=arch=compute_{arch},code=sm_{arch}")


def compile_plugin(version: str, out_dir: Path) -> Path:
    """svs_trt_plugin.cpp against one header set (nvcc adds CUDA's include folder)."""
    return nvcc_compile(SOURCE, out_dir / f"svs_trt_plugin-{version}.o", "-isystem", str(header_dir(version)))


def link_plugin(objects: list[Path], out_dir: Path) -> Path:
    """One self-contained .so (cudart linked statically, calls to its own symbols bound
    inside it: -Bsymbolic), as CMake builds it."""
    library = out_dir / LIBRARY
    _run(["nvcc", "-shared", "-Xlinker", "-Bsymbolic", *map(str, objects), "-o", str(library)])
    return library


def exported_symbols(library: Path) -> set[str]:
    text = _run(["nm", "-D", "--defined-only", str(library)])
    return {line.split()[-1] for line in text.splitlines() if " T " in line}


def build_plugin(version: str, out_dir: Path, kernel: Path | None = None) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    kernel = kernel or compile_kernel(out_dir)
    return link_plugin([compile_plugin(version, out_dir), kernel], out_dir)
