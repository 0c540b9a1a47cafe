"""``torch.ops.occdepth.stereo_voxel_sample``: the lift as one opaque op, so the exporter
sees a single call it can translate to one ``occdepth::StereoVoxelSample`` node.

Used only while exporting: :func:`lift_as_custom_op` replaces ``model.lift_op`` on a
model instance. Its CPU implementation is the torch reference, so tracing and eager
runs through the op give the reference's numbers.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Sequence

import torch

from occdepth_ros.ops.stereo_voxel_sample import stereo_voxel_sample

from .spec import OP_DOMAIN

QUALIFIED_NAME = f"{OP_DOMAIN}::stereo_voxel_sample"


@torch.library.custom_op(QUALIFIED_NAME, mutates_args=())
def stereo_voxel_sample_op(
    features: list[torch.Tensor],
    pixel_index: torch.Tensor,
    depth_prob: Optional[torch.Tensor],
    depth_coords: Optional[torch.Tensor],
    grid: list[int],
    gate_scale: float,
) -> torch.Tensor:
    return stereo_voxel_sample(features, pixel_index.long(), tuple(grid), depth_prob, depth_coords, gate_scale)


@stereo_voxel_sample_op.register_fake
def _(features, pixel_index, depth_prob, depth_coords, grid, gate_scale):
    f0 = features[0]
    return f0.new_empty((f0.shape[0], f0.shape[2], *grid))


def export_lift(
    features: Sequence[torch.Tensor],
    pixel_index: torch.Tensor,
    grid_dims: tuple[int, int, int],
    depth_prob: torch.Tensor | None = None,
    depth_coords: torch.Tensor | None = None,
    gate_scale: float = 100.0,
    fusion: str = "cosine",
) -> torch.Tensor:
    """Drop-in for the model's ``lift_op`` that calls the custom op."""
    if fusion != "cosine":
        raise ValueError(
            f"view fusion {fusion!r} is an ablation outside the StereoVoxelSample contract; "
            "only cosine (Stereo-SFA) models can be exported"
        )
    return torch.ops.occdepth.stereo_voxel_sample(
        list(features), pixel_index, depth_prob, depth_coords, list(grid_dims), float(gate_scale)
    )


@contextlib.contextmanager
def lift_as_custom_op(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Within the block, ``model`` runs its lift through the custom op."""
    had = "lift_op" in vars(model)
    saved = vars(model).get("lift_op")
    model.lift_op = export_lift
    try:
        yield model
    finally:
        if had:
            model.lift_op = saved
        else:
            del model.lift_op
