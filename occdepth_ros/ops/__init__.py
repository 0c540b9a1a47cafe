"""The stereo voxel sampling lift (2D features -> 3D voxel features), one op.

``stereo_voxel_sample`` is the PyTorch reference; ``torch_op`` registers the torch op
``occdepth::stereo_voxel_sample`` with its kernels (the native CPU kernel, the reference
elsewhere, autograd). ``lift`` is what the model calls: the op for the contract's cosine
fusion, the reference for the mean-fusion ablation, which is outside the contract.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .stereo_voxel_sample import stereo_voxel_sample
from .torch_op import OP_NAME, native_reason, stereo_voxel_sample_op

__all__ = ["OP_NAME", "lift", "native_reason", "stereo_voxel_sample", "stereo_voxel_sample_op"]


def lift(
    features: Sequence[torch.Tensor],
    pixel_index: torch.Tensor,
    grid_dims: tuple[int, int, int],
    depth_prob: torch.Tensor | None = None,
    depth_coords: torch.Tensor | None = None,
    gate_scale: float = 100.0,
    fusion: str = "cosine",
) -> torch.Tensor:
    """StereoVoxelSample (B, C, X, Y, Z); the arguments of :func:`stereo_voxel_sample`."""
    if fusion != "cosine":
        return stereo_voxel_sample(features, pixel_index, grid_dims, depth_prob, depth_coords, gate_scale, fusion)
    return stereo_voxel_sample_op(list(features), pixel_index, depth_prob, depth_coords, list(grid_dims),
                                  float(gate_scale))
