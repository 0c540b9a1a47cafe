"""host_memory.keep_freed_memory: large torch tensors stop costing fresh pages every
time. Measured as minor page faults in a child process, with and without the setting
(the shipped model's forward pass: ~50,000 faults without, ~0 with; see the module)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

CHILD = """
import json, resource, sys, torch
from occdepth_ros.runtime import host_memory
applied = host_memory.keep_freed_memory() if sys.argv[1] == "1" else {}
volume = (1, 20, 128, 128, 32)  # 40 MiB: above glibc's largest dynamic mmap threshold (32 MiB)
for _ in range(2):  # first touches, not counted
    torch.ones(volume).add_(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(volume).add_(1)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"faults": faults, "applied": applied, "describe": host_memory.describe()}))
"""
PAGES_PER_VOLUME = 20 * 128 * 128 * 32 * 4 // 4096

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc",
                                reason="the setting is glibc's mallopt; this C library is not glibc")


def child(apply: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, "1" if apply else "0"], check=True, capture_output=True,
                         text=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_without_the_setting_every_volume_costs_fresh_pages():
    """The problem exists (glibc mmaps blocks this size): otherwise the next test proves nothing."""
    assert child(apply=False)["faults"] >= 20 * PAGES_PER_VOLUME * 0.9


def test_with_the_setting_volumes_reuse_the_heap():
    result = child(apply=True)
    assert result["applied"]["M_TRIM_THRESHOLD"] >= 1 << 30
    assert result["applied"]["M_MMAP_THRESHOLD"] >= 32 << 20
    assert "M_MMAP_THRESHOLD" in result["describe"]
    # Without the setting every one of the 20 volumes faults its pages in. With it the heap
    # still grows in a few steps while other threads allocate (1 to 5 volumes' worth on a
    # loaded 2-core machine), never for most of the volumes.
    assert result["faults"] <= 20 * PAGES_PER_VOLUME // 2


def test_constructing_a_backend_leaves_malloc_alone():
    """Only an application opts in (the node's host_memory_tuning parameter, the benchmark)."""
    code = ("import json, torch; from occdepth_ros.runtime import host_memory; "
            "from occdepth_ros.runtime.torch_backend import TorchBackend; "
            "from occdepth_ros.model.config import load_preset; from occdepth_ros.model.occdepth import OccDepth; "
            "b = TorchBackend(OccDepth(load_preset('compact'))); before = [host_memory._applied, b.describe()]; "
            "first = host_memory.keep_freed_memory(); "
            "print(json.dumps(before + [b.describe(), first is host_memory.keep_freed_memory()]))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120)
    applied, describe, after, once = json.loads(out.stdout.strip().splitlines()[-1])
    assert applied is None and "C library defaults" in describe
    assert "glibc allocator" in after and once  # applied once per process


def test_the_node_parameter_opts_in_by_default():
    from occdepth_ros.node.params import NodeParams

    assert NodeParams().host_memory_tuning is True
    assert NodeParams.from_dict({"host_memory_tuning": False}).host_memory_tuning is False
