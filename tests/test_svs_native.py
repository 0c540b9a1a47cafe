"""The native StereoVoxelSample (export/plugin) against the PyTorch reference op.

The CPU library is built with the host C++ compiler and called through its C ABI; it
runs the same header (export/plugin/include/occdepth/stereo_voxel_sample.h) as the
CUDA kernel, which is only compiled here (no GPU in CI), once per target arch.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from occdepth_ros.ops.native_lift import SvsParams, header_constant
from lift_cases import CASES, GATE_SCALE, make_case, run_reference

PLUGIN = Path(__file__).resolve().parents[1] / "export" / "plugin"
INCLUDE = PLUGIN / "include"
HEADER = INCLUDE / "occdepth" / "stereo_voxel_sample.h"
API_HEADER = INCLUDE / "occdepth" / "svs_api.h"
CUDA_ARCHS = ["87", "86", "89", "90"]  # Orin, Ampere desktop, Ada, Hopper
BUILD_TIMEOUT_S = 900
MAX_SCALES = header_constant(HEADER, "kSvsMaxScales")
MAX_VIEWS = header_constant(HEADER, "kSvsMaxViews")
STATUS = {name: header_constant(HEADER, name) for name in
          ("kSvsOk", "kSvsNullPointer", "kSvsTooManyScales", "kSvsTooManyViews", "kSvsBadDtype")}
FLOAT16 = header_constant(HEADER, "kSvsFloat16")
ENTRY_POINTS = ("occdepth_svs_forward_f32", "occdepth_svs_forward_f32_tiled")  # the twin, the fast path
THREADS = 2  # the tiled entry point's thread count (ignored without OpenMP)


def _compile(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return elapsed, proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def svs_lib(tmp_path_factory) -> ctypes.CDLL:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++/c++ or $CXX) to build export/plugin/src/svs_cpu.cpp")
    out = tmp_path_factory.mktemp("svs_cpu") / "liboccdepth_svs_cpu.so"
    _compile([cxx, "-O2", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden", "-Wall", "-Wextra",
              f"-I{INCLUDE}", str(PLUGIN / "src" / "svs_cpu.cpp"), "-o", str(out)])
    lib = ctypes.CDLL(str(out))
    lib.occdepth_svs_forward_f32.argtypes = [ctypes.POINTER(SvsParams), ctypes.c_void_p]
    lib.occdepth_svs_forward_f32.restype = ctypes.c_int32
    lib.occdepth_svs_forward_f32_tiled.argtypes = [ctypes.POINTER(SvsParams), ctypes.c_void_p, ctypes.c_int32]
    lib.occdepth_svs_forward_f32_tiled.restype = ctypes.c_int32
    lib.occdepth_svs_params_size.restype = ctypes.c_size_t
    lib.occdepth_svs_abi_version.restype = ctypes.c_int32
    return lib


def make_params(features, index, depth_prob=None, coords=None, gate_scale=GATE_SCALE) -> SvsParams:
    """Fill SvsParams from contiguous numpy arrays (the caller keeps them alive)."""
    B, V, S, N = index.shape
    p = SvsParams()
    for s, feat in enumerate(features):
        p.features[s] = feat.ctypes.data
        p.feature_height[s], p.feature_width[s] = feat.shape[3:]
    p.pixel_index = index.ctypes.data
    p.voxels, p.batch, p.views, p.scales, p.channels = N, B, V, S, features[0].shape[2]
    if depth_prob is not None:
        p.depth_prob, p.depth_coords = depth_prob.ctypes.data, coords.ctypes.data
        p.depth_bins, p.depth_height, p.depth_width = depth_prob.shape[2:]
    p.gate_scale = gate_scale
    return p


def call(lib, entry: str, params: SvsParams, out: np.ndarray) -> int:
    args = (ctypes.byref(params), out.ctypes.data) + ((THREADS,) if entry.endswith("_tiled") else ())
    return getattr(lib, entry)(*args)


def run_native(lib, features, index, depth_prob=None, coords=None, entry=ENTRY_POINTS[0]) -> np.ndarray:
    B, _, _, N = index.shape
    out = np.full((B, features[0].shape[2], N), np.nan, dtype=np.float32)
    params = make_params(features, index, depth_prob, coords)
    assert call(lib, entry, params, out) == STATUS["kSvsOk"]
    return out




@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("B,V,S,C,with_depth,zero_view0", CASES)
def test_cpu_matches_reference_op(svs_lib, B, V, S, C, with_depth, zero_view0, entry) -> None:
    rng = np.random.default_rng([B, V, S, C, int(with_depth), int(zero_view0)])
    features, index, depth_prob, coords, grid = make_case(rng, B, V, S, C, zero_view0)
    if not with_depth:
        depth_prob = coords = None
    got = run_native(svs_lib, features, index, depth_prob, coords, entry)
    want = run_reference(features, index, grid, depth_prob, coords)
    scale = float(np.abs(want).max())
    assert scale > 0
    # Float32 both sides with different summation orders: rtol 1e-5, plus an atol at
    # 1e-6 of the output's scale for entries that cancel to near zero.
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * scale)
    assert (got[:, :, 0] == 0).all()  # seen by no view
    if with_depth and V > 1:
        assert (got[:, :, 9] == 0).all()  # covered by no depth volume


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_abi_layout_and_status_codes(svs_lib, entry) -> None:
    assert svs_lib.occdepth_svs_abi_version() == header_constant(API_HEADER, "OCCDEPTH_SVS_ABI_VERSION")
    assert svs_lib.occdepth_svs_params_size() == ctypes.sizeof(SvsParams)
    features, index, depth_prob, coords, _ = make_case(np.random.default_rng(0), 1, 2, 1, 3)
    out = np.zeros((1, 3, index.shape[-1]), dtype=np.float32)

    def status(**changes) -> int:
        params = make_params(features, index, depth_prob, coords)
        for name, value in changes.items():
            setattr(params, name, value)
        return call(svs_lib, entry, params, out)

    assert status() == STATUS["kSvsOk"]
    assert status(views=MAX_VIEWS + 1) == STATUS["kSvsTooManyViews"]
    assert status(scales=MAX_SCALES + 1) == STATUS["kSvsTooManyScales"]
    assert status(pixel_index=None) == STATUS["kSvsNullPointer"]
    assert status(depth_coords=None) == STATUS["kSvsNullPointer"]
    assert status(feature_dtype=FLOAT16) == STATUS["kSvsBadDtype"]  # half runs on CUDA only


# --- the CUDA kernel: compile only -----------------------------------------------------
@pytest.fixture(scope="session", params=CUDA_ARCHS, ids=[f"sm_{a}" for a in CUDA_ARCHS])
def cuda_object(request, tmp_path_factory) -> tuple[str, Path, float, str]:
    """svs_kernel.cu compiled once per arch (the slow part, shared by the session)."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not on PATH: the CUDA kernel cannot be compiled here")
    arch = request.param
    out = tmp_path_factory.mktemp(f"svs_sm{arch}") / "svs_kernel.o"
    elapsed, log = _compile([nvcc, "-std=c++17", "-O3", "-Xcompiler", "-fPIC", f"-I{INCLUDE}",
                             f"-gencode=arch=compute_{arch},code=sm_{arch}", "-Xptxas", "-v",
                             "-c", str(PLUGIN / "src" / "svs_kernel.cu"), "-o", str(out)])
    print(f"\nnvcc sm_{arch}: {elapsed:.1f} s")
    return arch, out, elapsed, log


def test_cuda_kernel_compiles(cuda_object, record_property) -> None:
    arch, obj, elapsed, ptxas_log = cuda_object
    record_property(f"nvcc_sm_{arch}_seconds", round(elapsed, 2))
    assert obj.stat().st_size > 0
    # Both storage types were built as device code for this arch.
    for dtype in ("f", "6__half"):
        assert re.search(rf"svs_forward_kernelI{dtype}E\S* for 'sm_{arch}'", ptxas_log), ptxas_log
