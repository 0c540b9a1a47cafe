"""The fused CPU lift: StereoVoxelSample from the native library in export/plugin.

The reference op (``stereo_voxel_sample.py``) materialises a (B, V, C, N) gather per
scale and several elementwise passes over it. The native library computes the same
contract (docs/stereo_voxel_sample.md) in one pass over voxel tiles, so inference on a
CPU does not pay for those intermediates.

The library is compiled from ``export/plugin/src/svs_cpu.cpp`` with the host C++
compiler the first time it is needed, into ``resources.cache_dir("native")`` under a
name keyed by a hash of the sources, the flags, the compiler and the CPU, so an edited
source or another machine gets its own build. The ctypes mirror of
``occdepth::SvsParams`` and the header constants it needs are read from the C++
headers, the single source of those values.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import torch

log = logging.getLogger(__name__)

PLUGIN_DIR_ENV = "OCCDEPTH_SVS_PLUGIN_DIR"  # a folder with include/ and src/svs_cpu.cpp
CACHE_SUBDIR = "native"  # built libraries go to resources.cache_dir("native")
CXX_ENV = "CXX"
LIBRARY_STEM = "liboccdepth_svs_cpu"
CXX_FLAGS = ("-O3", "-std=c++17", "-fopenmp", "-shared", "-fPIC", "-fvisibility=hidden")
# Tuned for the CPU that builds it (the cache key holds the CPU's identity). ISO C++17
# keeps floating-point contraction off, so the results do not depend on it.
CPU_FLAGS = ("-march=native",)
BUILD_TIMEOUT_S = 600
STATUS_NAMES = ("kSvsOk", "kSvsNullPointer", "kSvsBadShape", "kSvsTooManyScales",
                "kSvsTooManyViews", "kSvsBadDtype")


class NativeLiftError(RuntimeError):
    """The native lift cannot be built, loaded or run; the message says why."""


# -- sources and header constants --------------------------------------------------------
@dataclass(frozen=True)
class PluginSources:
    """Where the C++ sources of the CPU library are."""

    root: Path

    @property
    def include(self) -> Path:
        return self.root / "include"

    @property
    def header(self) -> Path:
        return self.include / "occdepth" / "stereo_voxel_sample.h"

    @property
    def api_header(self) -> Path:
        return self.include / "occdepth" / "svs_api.h"

    @property
    def cpu_source(self) -> Path:
        return self.root / "src" / "svs_cpu.cpp"

    def files(self) -> list[Path]:
        """Every file that goes into the build (the cache key hashes them)."""
        return [self.cpu_source, *sorted(self.include.rglob("*.h"))]


def plugin_sources() -> PluginSources:
    """$OCCDEPTH_SVS_PLUGIN_DIR, else export/plugin of a source checkout or the share folder."""
    candidates = []
    if os.environ.get(PLUGIN_DIR_ENV):
        candidates.append(Path(os.environ[PLUGIN_DIR_ENV]))
    candidates.append(Path(__file__).resolve().parents[2] / "export" / "plugin")
    try:
        from ..resources import share_dir

        candidates.append(share_dir() / "export" / "plugin")
    except FileNotFoundError:
        pass
    for root in candidates:
        sources = PluginSources(root)
        if sources.cpu_source.is_file() and sources.header.is_file() and sources.api_header.is_file():
            return sources
    raise NativeLiftError(
        "the native lift's sources (export/plugin/src/svs_cpu.cpp and include/) were not found; "
        f"tried {', '.join(str(c) for c in candidates)}. Set {PLUGIN_DIR_ENV} to export/plugin."
    )


def header_constant(path: Path, name: str) -> int:
    """An integer constant of the C++ headers (``name = 8`` or ``#define name 8``)."""
    match = re.search(rf"\b{name}\b\s*=?\s*(-?\d+)", path.read_text())
    if match is None:
        raise NativeLiftError(f"{name} not found in {path}")
    return int(match.group(1))


@dataclass(frozen=True)
class HeaderConstants:
    max_scales: int
    max_views: int
    float32: int
    float16: int
    abi_version: int
    status: dict[str, int]

    def status_name(self, code: int) -> str:
        for name, value in self.status.items():
            if value == code:
                return name
        return f"status {code}"


@lru_cache(maxsize=None)
def header_constants() -> HeaderConstants:
    src = plugin_sources()
    return HeaderConstants(
        max_scales=header_constant(src.header, "kSvsMaxScales"),
        max_views=header_constant(src.header, "kSvsMaxViews"),
        float32=header_constant(src.header, "kSvsFloat32"),
        float16=header_constant(src.header, "kSvsFloat16"),
        abi_version=header_constant(src.api_header, "OCCDEPTH_SVS_ABI_VERSION"),
        status={name: header_constant(src.header, name) for name in STATUS_NAMES},
    )


@lru_cache(maxsize=None)
def svs_params_type() -> type[ctypes.Structure]:
    """The ctypes mirror of occdepth::SvsParams: same field order (checked against sizeof
    when the library loads), array sizes from the header."""
    max_scales = header_constants().max_scales

    class SvsParams(ctypes.Structure):
        _fields_ = [
            ("features", ctypes.c_void_p * max_scales),
            ("pixel_index", ctypes.c_void_p),
            ("depth_prob", ctypes.c_void_p),
            ("depth_coords", ctypes.c_void_p),
            ("voxels", ctypes.c_int64),
            ("feature_height", ctypes.c_int32 * max_scales),
            ("feature_width", ctypes.c_int32 * max_scales),
            ("batch", ctypes.c_int32),
            ("views", ctypes.c_int32),
            ("scales", ctypes.c_int32),
            ("channels", ctypes.c_int32),
            ("depth_bins", ctypes.c_int32),
            ("depth_height", ctypes.c_int32),
            ("depth_width", ctypes.c_int32),
            ("gate_scale", ctypes.c_float),
            ("feature_dtype", ctypes.c_int32),
        ]

    return SvsParams


def __getattr__(name: str) -> Any:  # PEP 562: ``from native_lift import SvsParams``
    if name == "SvsParams":
        return svs_params_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- build ---------------------------------------------------------------------------------
def library_cache_dir() -> Path:
    """The package's cache folder for derived files (resources.cache_dir), ``native/``."""
    from ..resources import cache_dir

    try:
        return cache_dir(CACHE_SUBDIR)
    except OSError as exc:
        raise NativeLiftError(f"cannot create the native lift's cache folder: {exc}") from exc


def find_compiler() -> str:
    cxx = os.environ.get(CXX_ENV) or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise NativeLiftError(
            f"no C++ compiler to build the native lift (g++/c++ not on PATH and ${CXX_ENV} unset); "
            "install g++ (apt-get install g++) or run with OCCDEPTH_LIFT=reference"
        )
    return cxx


def _cpu_identity() -> str:
    """What -march=native depends on: the machine, and the CPU model and flags."""
    first: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":", 1)[0].strip().lower()
            if key in ("model name", "flags", "features", "cpu part"):
                first.setdefault(key, line)  # the first core's; the others repeat it
    except OSError:
        first["processor"] = platform.processor()
    return "\n".join([platform.machine(), *first.values()])


def _compiler_version(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise NativeLiftError(f"the C++ compiler {cxx!r} does not run: {exc}") from exc


def build_key(sources: PluginSources, cxx: str, flags: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for part in (_compiler_version(cxx), " ".join(flags), _cpu_identity()):
        digest.update(part.encode() + b"\0")
    for path in sources.files():
        digest.update(path.relative_to(sources.root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:20]


def build_library(sources: PluginSources | None = None, out_dir: Path | None = None,
                  cxx: str | None = None) -> Path:
    """Compile the CPU library unless an identical build is cached; return its path.

    The compiler writes a temporary file that is renamed into place, so concurrent
    builds (two processes, two tests) never load a half-written library."""
    sources = sources or plugin_sources()
    cxx = cxx or find_compiler()
    out_dir = out_dir or library_cache_dir()
    # -march=native first; without it where the compiler refuses it.
    builds = [(flags, out_dir / f"{LIBRARY_STEM}-{build_key(sources, cxx, flags)}.so")
              for flags in ((*CXX_FLAGS, *CPU_FLAGS), CXX_FLAGS)]
    for _, target in builds:
        if target.is_file():
            return target
    errors = []
    for flags, target in builds:
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=out_dir)
        except OSError as exc:
            raise NativeLiftError(f"cannot write the native lift to {out_dir}: {exc}") from exc
        os.close(fd)
        cmd = [cxx, *flags, f"-I{sources.include}", str(sources.cpu_source), "-o", tmp_name]
        log.info("building the native lift: %s", " ".join(cmd))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as exc:
            Path(tmp_name).unlink(missing_ok=True)
            raise NativeLiftError(f"cannot run {cxx!r}: {exc}") from exc
        if proc.returncode == 0:
            os.replace(tmp_name, target)
            return target
        Path(tmp_name).unlink(missing_ok=True)
        errors.append(f"$ {' '.join(cmd)}\n{proc.stderr.strip()}")
    raise NativeLiftError("building the native lift failed:\n" + "\n".join(errors))


# -- load ------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def load_library() -> ctypes.CDLL:
    """Build (first use) and load the CPU library, and check it matches the headers'
    ABI version and the ctypes mirror's size. Cached: one load per process."""
    path = build_library()
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise NativeLiftError(f"cannot load the native lift {path}: {exc}") from exc
    params = svs_params_type()
    lib.occdepth_svs_abi_version.restype = ctypes.c_int32
    lib.occdepth_svs_params_size.restype = ctypes.c_size_t
    lib.occdepth_svs_forward_f32.argtypes = [ctypes.POINTER(params), ctypes.c_void_p]
    lib.occdepth_svs_forward_f32.restype = ctypes.c_int32
    lib.occdepth_svs_forward_f32_tiled.argtypes = [ctypes.POINTER(params), ctypes.c_void_p, ctypes.c_int32]
    lib.occdepth_svs_forward_f32_tiled.restype = ctypes.c_int32
    want = header_constants().abi_version
    if lib.occdepth_svs_abi_version() != want:
        raise NativeLiftError(f"{path} has ABI version {lib.occdepth_svs_abi_version()}, the headers {want}")
    if lib.occdepth_svs_params_size() != ctypes.sizeof(params):
        raise NativeLiftError(f"SvsParams is {lib.occdepth_svs_params_size()} bytes in {path}, "
                              f"{ctypes.sizeof(params)} in the ctypes mirror")
    log.info("native lift loaded from %s", path)
    return lib


@lru_cache(maxsize=1)
def native_unavailable_reason() -> str | None:
    """None when the library loads, else why not (built on the first call). Cached, so a
    missing compiler costs one attempt per process, not one per frame."""
    try:
        load_library()
    except NativeLiftError as exc:
        return str(exc)
    return None


# -- the op ----------------------------------------------------------------------------------
def unsupported_reason(
    features: Sequence[torch.Tensor],
    pixel_index: torch.Tensor,
    depth_prob: torch.Tensor | None = None,
    depth_coords: torch.Tensor | None = None,
    fusion: str = "cosine",
) -> str | None:
    """Why these inputs cannot take the native path (None if they can), without
    touching the library: it has no autograd, runs float32 on the CPU, and implements
    the op contract's cosine fusion only."""
    if fusion != "cosine":
        return f"fusion {fusion!r} is not part of the op contract (cosine only)"
    tensors = [*features, pixel_index] + [t for t in (depth_prob, depth_coords) if t is not None]
    if any(t.device.type != "cpu" for t in tensors):
        return "inputs are not on the CPU"
    if any(f.dtype != torch.float32 for f in features) or any(
            t.dtype != torch.float32 for t in (depth_prob, depth_coords) if t is not None):
        return "features/depth are not float32"
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return "an input requires grad (the native lift has no backward)"
    return None


def limits_reason(features: Sequence[torch.Tensor], pixel_index: torch.Tensor) -> str | None:
    """Why the library's fixed limits (the header's kSvsMaxViews/kSvsMaxScales) exclude
    these inputs, None if they fit. Reads the headers: ask once the library is available."""
    consts = header_constants()
    if pixel_index.dim() != 4 or pixel_index.shape[1] > consts.max_views:
        return f"pixel_index {tuple(pixel_index.shape)}: at most {consts.max_views} views"
    if len(features) > consts.max_scales:
        return f"{len(features)} scales: at most {consts.max_scales}"
    return None


def _check_shapes(features: Sequence[torch.Tensor], pixel_index: torch.Tensor, n: int,
                  depth_prob: torch.Tensor | None, depth_coords: torch.Tensor | None) -> None:
    """The library trusts its sizes, so every shape it reads through is checked here."""
    if pixel_index.dim() != 4 or pixel_index.shape[2] != len(features) or pixel_index.shape[3] != n:
        raise ValueError(f"pixel_index must be (B, V, {len(features)}, {n}), got {tuple(pixel_index.shape)}")
    b, v = pixel_index.shape[:2]
    c = features[0].shape[2] if features and features[0].dim() == 5 else -1
    for s, f in enumerate(features):
        if f.dim() != 5 or tuple(f.shape[:3]) != (b, v, c):
            raise ValueError(f"features[{s}] must be (B={b}, V={v}, C={c}, h, w), got {tuple(f.shape)}")
    if (depth_prob is None) != (depth_coords is None):
        raise ValueError("depth_prob and depth_coords go together")
    if depth_prob is not None:
        if depth_prob.dim() != 5 or tuple(depth_prob.shape[:2]) != (b, v):
            raise ValueError(f"depth_prob must be (B={b}, V={v}, D, h, w), got {tuple(depth_prob.shape)}")
        if tuple(depth_coords.shape) != (b, v, n, 3):
            raise ValueError(f"depth_coords must be ({b}, {v}, {n}, 3), got {tuple(depth_coords.shape)}")


def native_stereo_voxel_sample(
    features: Sequence[torch.Tensor],
    pixel_index: torch.Tensor,
    grid_dims: tuple[int, int, int],
    depth_prob: torch.Tensor | None = None,
    depth_coords: torch.Tensor | None = None,
    gate_scale: float = 100.0,
    fusion: str = "cosine",
    num_threads: int | None = None,
) -> torch.Tensor:
    """:func:`stereo_voxel_sample` run by the native library: (B, C, X, Y, Z) float32.

    Same arguments and contract as the reference (cosine fusion only, no autograd).
    ``num_threads``: OpenMP threads, default ``torch.get_num_threads()`` so the lift
    uses the same cores as the rest of the network."""
    reason = unsupported_reason(features, pixel_index, depth_prob, depth_coords, fusion)
    if reason is None:
        lib = load_library()
        reason = limits_reason(features, pixel_index)
    if reason is not None:
        raise NativeLiftError(f"the native lift cannot run these inputs: {reason}")
    x, y, z = grid_dims
    n = x * y * z
    _check_shapes(features, pixel_index, n, depth_prob, depth_coords)
    consts = header_constants()
    feats = [f.detach().contiguous() for f in features]
    index = pixel_index.detach().to(torch.int32).contiguous()
    b, v, s, _ = index.shape
    c = feats[0].shape[2]
    params = svs_params_type()()
    for i, f in enumerate(feats):
        params.features[i] = f.data_ptr()
        params.feature_height[i], params.feature_width[i] = f.shape[3], f.shape[4]
    params.pixel_index = index.data_ptr()
    params.voxels, params.batch, params.views, params.scales, params.channels = n, b, v, s, c
    params.gate_scale = float(gate_scale)
    params.feature_dtype = consts.float32
    keep = []  # contiguous copies must outlive the call
    if depth_prob is not None:
        prob = depth_prob.detach().contiguous()
        coords = depth_coords.detach().contiguous()
        keep += [prob, coords]
        params.depth_prob, params.depth_coords = prob.data_ptr(), coords.data_ptr()
        params.depth_bins, params.depth_height, params.depth_width = prob.shape[2:]
    out = torch.empty((b, c, x, y, z), dtype=torch.float32)
    threads = torch.get_num_threads() if num_threads is None else int(num_threads)
    status = lib.occdepth_svs_forward_f32_tiled(ctypes.byref(params), ctypes.c_void_p(out.data_ptr()), threads)
    del keep
    if status != consts.status["kSvsOk"]:
        raise NativeLiftError(f"occdepth_svs_forward_f32_tiled returned {consts.status_name(status)}")
    return out
