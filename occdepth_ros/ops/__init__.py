"""The stereo voxel sampling lift (2D features -> 3D voxel features), one op.

``stereo_voxel_sample`` is the PyTorch reference (autograd, any device, ONNX export).
``lift`` is what the model calls: the fused native CPU library when it applies
(inference on CPU float32 tensors, cosine fusion, library built), else the reference.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Sequence

import torch

from .native_lift import (
    NativeLiftError,
    limits_reason,
    native_stereo_voxel_sample,
    native_unavailable_reason,
    unsupported_reason,
)
from .stereo_voxel_sample import stereo_voxel_sample

__all__ = ["LIFT_ENV", "LIFT_PATHS", "LiftChoice", "NativeLiftError", "lift", "lift_path", "native_stereo_voxel_sample",
           "stereo_voxel_sample"]

log = logging.getLogger(__name__)

LIFT_ENV = "OCCDEPTH_LIFT"
# auto: native where valid, else the reference; reference: always the reference;
# native: the native path or an error saying why not (benchmarks, tests).
LIFT_PATHS = ("auto", "reference", "native")
_warned: list[str] = []


def _requested(path: str | None) -> str:
    choice = (path or os.environ.get(LIFT_ENV) or "auto").strip().lower()
    if choice not in LIFT_PATHS:
        raise ValueError(f"lift path {choice!r} (from {'argument' if path else LIFT_ENV}) is not one of {LIFT_PATHS}")
    return choice


def _capturing_graph() -> bool:
    """Tracing, torch.compile or ONNX export: they need the torch op, not a ctypes call."""
    compiling = getattr(torch.compiler, "is_compiling", lambda: False)  # torch >= 2.3
    return torch.jit.is_tracing() or compiling() or torch.onnx.is_in_onnx_export()


@dataclass(frozen=True)
class LiftChoice:
    path: str  # "native" or "reference"
    reason: str
    native_unavailable: bool = False  # the library could not be built or loaded


def lift_path(
    features: Sequence[torch.Tensor],
    pixel_index: torch.Tensor,
    depth_prob: torch.Tensor | None = None,
    depth_coords: torch.Tensor | None = None,
    fusion: str = "cosine",
    path: str | None = None,
) -> LiftChoice:
    """Which implementation runs these inputs under ``path`` / $OCCDEPTH_LIFT, and why."""
    choice = _requested(path)
    if choice == "reference":
        return LiftChoice("reference", "requested")
    unavailable = False
    if _capturing_graph():
        reason: str | None = "tracing/export needs the torch op"
    else:
        reason = unsupported_reason(features, pixel_index, depth_prob, depth_coords, fusion)
        if reason is None:  # only inference calls build (first use) or load the library
            reason = native_unavailable_reason()
            unavailable = reason is not None
        if reason is None:
            reason = limits_reason(features, pixel_index)
    if reason is None:
        return LiftChoice("native", "inference on CPU float32")
    if choice == "native":
        raise NativeLiftError(f"{LIFT_ENV}=native but the native lift cannot run: {reason}")
    return LiftChoice("reference", reason, unavailable)


def lift(
    features: Sequence[torch.Tensor],
    pixel_index: torch.Tensor,
    grid_dims: tuple[int, int, int],
    depth_prob: torch.Tensor | None = None,
    depth_coords: torch.Tensor | None = None,
    gate_scale: float = 100.0,
    fusion: str = "cosine",
    path: str | None = None,
) -> torch.Tensor:
    """StereoVoxelSample (B, C, X, Y, Z) by the fastest valid implementation; same
    arguments as :func:`stereo_voxel_sample`, plus ``path`` (see ``LIFT_PATHS``)."""
    choice = lift_path(features, pixel_index, depth_prob, depth_coords, fusion, path)
    if choice.path == "native":
        return native_stereo_voxel_sample(features, pixel_index, grid_dims, depth_prob, depth_coords,
                                          gate_scale, fusion)
    if choice.native_unavailable and not _warned:  # say it once, then run the reference
        _warned.append(choice.reason)
        log.warning("native lift unavailable, using the torch reference: %s", choice.reason)
    return stereo_voxel_sample(features, pixel_index, grid_dims, depth_prob, depth_coords, gate_scale, fusion)
