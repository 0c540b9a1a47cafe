"""Host allocator settings for a process that runs the network frame after frame.

glibc serves every block above its mmap threshold with a fresh ``mmap`` and returns it
on ``free``; torch's CPU tensors (the 3D volumes are megabytes each) therefore come back
as new, unfaulted pages every frame. On the shipped model that is ~50,000 page faults
(~200 MiB zeroed by the kernel) per forward pass, ~20% of torch's CPU latency and most
of its jitter. Serving large blocks from the heap and never trimming it makes the second
frame onward fault-free. ONNX Runtime has its own arena and does not need this.

The cost: the process keeps its peak heap resident, which a perception node does anyway.
It changes malloc for the whole process, so only an application applies it, at start:
the node when its ``host_memory_tuning`` parameter is true (the default), and
occdepth-bench, which measures what the node runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MIB = 1 << 20
SETTINGS = (
    ("M_MMAP_THRESHOLD", M_MMAP_THRESHOLD, 256 * MIB),  # blocks below this come from the heap
    ("M_TRIM_THRESHOLD", M_TRIM_THRESHOLD, 1024 * MIB),  # free heap kept before returning any
    ("M_TOP_PAD", M_TOP_PAD, 64 * MIB),  # heap grows in large steps
)
# glibc builds that cap the mmap threshold accept this (the documented 64-bit maximum).
FALLBACK_MMAP_THRESHOLD = 32 * MIB

_applied: dict[str, int] | None = None


def keep_freed_memory() -> dict[str, int]:
    """Apply SETTINGS through glibc's mallopt, once per process. Returns what was set
    (empty where the C library is not glibc, e.g. musl or macOS)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = {}
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
    except (OSError, AttributeError, TypeError):
        log.info("allocator settings skipped: the C library is not glibc")
        return _applied
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    for name, param, value in SETTINGS:
        if not mallopt(param, value) and param == M_MMAP_THRESHOLD:
            value = FALLBACK_MMAP_THRESHOLD if mallopt(param, FALLBACK_MMAP_THRESHOLD) else 0
        if value:
            _applied[name] = value
    return _applied


def describe() -> str:
    if not _applied:
        return "allocator: C library defaults"
    return "glibc allocator: " + ", ".join(f"{k}={v // MIB} MiB" for k, v in _applied.items())
