"""export/plugin's CMake project, configured and built here with the real nvcc and the
real TensorRT headers (../shared/tensorrt):

- it finds nvcc where stock JetPack leaves it (/usr/local/cuda/bin, not on PATH), or
  where CUDAToolkit_ROOT / CUDACXX say;
- the plugin library calls its own copy of the kernel entry point, even when another
  loaded object exports the same symbol (it links with -Bsymbolic).

No libnvinfer can be installed here: the plugin links against an empty stand-in
libnvinfer.so that the test builds (the plugin needs no symbol from it to link).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "export" / "plugin"
HARNESS = ROOT / "tests" / "native" / "svs_trt_plugin_harness.cpp"
TENSORRT_INCLUDE = ROOT.parent / "shared" / "tensorrt" / "10.3.0" / "include"
JETPACK_CUDA = Path("/usr/local/cuda")
ARCH = "87"
ENTRY = "occdepth_svs_forward_cuda"


def _path_without_nvcc() -> str:
    return os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not (Path(d) / "nvcc").exists())


@pytest.fixture(scope="module")
def cmake() -> str:
    exe = shutil.which("cmake")
    if exe is None:
        pytest.skip("cmake is not installed")
    if not (JETPACK_CUDA / "bin" / "nvcc").is_file():
        pytest.skip(f"no CUDA toolkit at {JETPACK_CUDA} (the JetPack location these tests use)")
    return exe


def _configure(cmake: str, build: Path, env_extra: dict[str, str], *defines: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CUDACXX", "CUDAToolkit_ROOT", "CUDA_HOME", "CUDA_PATH")}
    env.update(PATH=_path_without_nvcc(), **env_extra)
    cmd = [cmake, "-S", str(PLUGIN), "-B", str(build), f"-DCMAKE_CUDA_ARCHITECTURES={ARCH}", *defines]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def _cache(build: Path, name: str) -> str:
    for line in (build / "CMakeCache.txt").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split("=", 1)[1]
    return ""


@pytest.mark.parametrize("how", ["jetpack-default", "CUDAToolkit_ROOT", "CUDACXX"])
def test_nvcc_found_when_not_on_path(cmake, tmp_path, how) -> None:
    assert shutil.which("nvcc", path=_path_without_nvcc()) is None
    toolkit = JETPACK_CUDA.resolve()  # /usr/local/cuda-<version> behind the JetPack symlink
    expected = {"jetpack-default": JETPACK_CUDA / "bin" / "nvcc", "CUDAToolkit_ROOT": toolkit / "bin" / "nvcc",
                "CUDACXX": toolkit / "bin" / "nvcc"}[how]
    env = {"CUDACXX": str(expected)} if how == "CUDACXX" else {}
    defines = [f"-DCUDAToolkit_ROOT={toolkit}"] if how == "CUDAToolkit_ROOT" else []
    proc = _configure(cmake, tmp_path / "build", env, "-DOCCDEPTH_SVS_TENSORRT=OFF", *defines)
    assert proc.returncode == 0, proc.stderr
    assert _cache(tmp_path / "build", "CMAKE_CUDA_COMPILER") == str(expected)
    assert "no CUDA compiler" not in proc.stdout


@pytest.fixture(scope="module")
def plugin_build(cmake, tmp_path_factory) -> Path:
    if not TENSORRT_INCLUDE.is_dir():
        pytest.skip(f"{TENSORRT_INCLUDE} is absent (the real TensorRT headers live in ../shared/tensorrt)")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler for the stand-in libnvinfer")
    root = tmp_path_factory.mktemp("plugin")
    stub = root / "stub"
    stub.mkdir()
    (stub / "empty.c").write_text("/* stand-in libnvinfer: link-time only */\n")
    subprocess.run([cc, "-shared", "-fPIC", "-Wl,-soname,libnvinfer.so", "-o", str(stub / "libnvinfer.so"),
                    str(stub / "empty.c")], check=True)
    build = root / "build"
    proc = _configure(cmake, build, {}, f"-DTENSORRT_ROOT={TENSORRT_INCLUDE.parent}",
                      f"-DOCCDEPTH_NVINFER_LIBRARY={stub / 'libnvinfer.so'}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    made = subprocess.run([cmake, "--build", str(build), "--target", "occdepth_svs_trt"], capture_output=True,
                          text=True, env={**os.environ, "PATH": _path_without_nvcc()})
    assert made.returncode == 0, made.stdout + made.stderr
    return build


def test_plugin_library_binds_the_kernel_entry_locally(plugin_build) -> None:
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf (binutils) is not installed")
    library = plugin_build / "liboccdepth_svs_trt.so"
    relocations = subprocess.run([readelf, "-rW", str(library)], capture_output=True, text=True, check=True).stdout
    assert ENTRY not in relocations  # no PLT slot another copy could fill
    dynamic = subprocess.run([readelf, "-dW", str(library)], capture_output=True, text=True, check=True).stdout
    assert "SYMBOLIC" in dynamic
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True,
                             check=True).stdout
    assert {"getCreators", "setLoggerFinder", ENTRY} <= {line.split()[-1] for line in symbols.splitlines()}


def test_another_copy_of_the_entry_point_does_not_take_over(plugin_build) -> None:
    """The harness executable exports its own ``occdepth_svs_forward_cuda`` (a recorder)
    and links the built plugin: the plugin must still call its own kernel (which, with no
    GPU here, fails to launch: enqueue reports it and the recorder stays untouched)."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    exe = plugin_build / "harness"
    subprocess.run([cxx, "-std=c++17", f"-I{PLUGIN / 'include'}", "-isystem", str(TENSORRT_INCLUDE),
                    "-isystem", str(JETPACK_CUDA / "include"), "-rdynamic", str(HARNESS),
                    f"-L{plugin_build}", "-loccdepth_svs_trt", f"-Wl,-rpath,{plugin_build}", "-o", str(exe)],
                   check=True, capture_output=True)
    stub_dir = Path(_cache(plugin_build, "OCCDEPTH_NVINFER_LIBRARY")).parent
    ran = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "LD_LIBRARY_PATH": str(stub_dir)})
    assert ran.returncode == 0, ran.stderr
    scenarios = [json.loads(line) for line in ran.stdout.splitlines()]
    enqueued = [s for s in scenarios if s.get("runtime_plugin")]
    assert enqueued and all(s["kernel_calls"] == 0 for s in enqueued), scenarios
    assert all(s["enqueue"] != 0 for s in enqueued)  # the plugin's own kernel ran and found no GPU
