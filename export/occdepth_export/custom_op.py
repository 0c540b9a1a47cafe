"""The lift during export: ``torch.ops.occdepth.stereo_voxel_sample`` (registered in
``occdepth_ros.ops.torch_op``) is one opaque call that the exporter translates to one
``occdepth::StereoVoxelSample`` node.

:func:`lift_as_custom_op` makes a model instance's lift call the op and refuse the
mean-fusion ablation, which the op contract does not cover.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch

from occdepth_ros.ops import lift
from occdepth_ros.ops.torch_op import stereo_voxel_sample_op

__all__ = ["export_lift", "lift_as_custom_op", "stereo_voxel_sample_op"]


def export_lift(
    features: Sequence[torch.Tensor],
    pixel_index: torch.Tensor,
    grid_dims: tuple[int, int, int],
    depth_prob: torch.Tensor | None = None,
    depth_coords: torch.Tensor | None = None,
    gate_scale: float = 100.0,
    fusion: str = "cosine",
) -> torch.Tensor:
    """Drop-in for the model's ``lift_op`` that calls the op, cosine fusion only."""
    if fusion != "cosine":
        raise ValueError(
            f"view fusion {fusion!r} is an ablation outside the StereoVoxelSample contract; "
            "only cosine (Stereo-SFA) models can be exported"
        )
    return lift(features, pixel_index, grid_dims, depth_prob, depth_coords, gate_scale)


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
