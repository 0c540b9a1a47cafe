"""OAD's camera-aware depth network (BEVDepth style) on the 1/8 2D features."""

from __future__ import annotations

import torch
from torch import nn

class Mlp(nn.Module):
    def __init__(self, in_features: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CameraSE(nn.Module):
    """Squeeze-excitation gate driven by the camera embedding instead of pooling."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, channels, 1)
        self.act1 = nn.ReLU()
        self.conv_expand = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, camera_embedding: torch.Tensor) -> torch.Tensor:
        gate = self.conv_expand(self.act1(self.conv_reduce(camera_embedding)))
        return x * torch.sigmoid(gate)


class BasicBlock(nn.Module):
    """ResNet basic block (mmdet naming): conv-BN-ReLU-conv-BN + identity, ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + x)


class DepthNet(nn.Module):
    def __init__(self, in_channels: int, mid_channels: int, n_bins: int) -> None:
        super().__init__()
        self.reduce_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 3, padding=1),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(),
        )
        self.mlp = Mlp(1, mid_channels, mid_channels)
        self.se = CameraSE(mid_channels)
        self.depth_conv = nn.Sequential(*[BasicBlock(mid_channels) for _ in range(3)])
        self.depth_pred = nn.Conv2d(mid_channels, n_bins, 1)

    def forward(self, feat: torch.Tensor, pixel_size: torch.Tensor) -> torch.Tensor:
        """feat (N, C, h, w); pixel_size (N, 1) scaled pixel size. Returns depth logits."""
        x = self.reduce_conv(feat)
        x = self.se(x, self.mlp(pixel_size)[..., None, None])
        return self.depth_pred(self.depth_conv(x))
