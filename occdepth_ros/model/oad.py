"""OAD module holder: the depth net and the grid buffers under the official name."""

from __future__ import annotations

import torch
from torch import nn

from .config import DepthConfig, GridConfig
from .depth_net import DepthNet


class OccupancyAwareDepth(nn.Module):
    """Holds ``depth_net`` and the (informational) 3D-grid buffers that the released
    state dict carries as ``flosp_depth.voxel_size / voxel_coord / voxel_num``.

    The frustum-to-voxel sampling itself is part of the lift op
    (:mod:`occdepth_ros.ops.stereo_voxel_sample`); its coordinates come from the host.
    """

    def __init__(self, in_channels: int, depth: DepthConfig, grid: GridConfig) -> None:
        super().__init__()
        self.depth_net = nn.Sequential(DepthNet(in_channels, depth.mid_channels, depth.n_bins))
        fs = grid.feature_voxel_size
        self.register_buffer("voxel_size", torch.tensor([fs, fs, fs], dtype=torch.float32))
        self.register_buffer(
            "voxel_coord", torch.tensor([o + fs / 2 for o in grid.origin], dtype=torch.float32)
        )
        self.register_buffer("voxel_num", torch.tensor(grid.feature_dims, dtype=torch.int64))

    def forward(self, feat: torch.Tensor, pixel_size: torch.Tensor) -> torch.Tensor:
        """Depth logits (N, n_bins, h, w) for N images."""
        return self.depth_net[0](feat, pixel_size)
