"""Segmentation heads on the full-resolution 3D features."""

from __future__ import annotations

import torch
from torch import nn

from .blocks3d import ASPP3D

N_OCC_CLASSES = 2  # empty / occupied


class _HeadTrunk(nn.Module):
    """conv0 + ReLU, then the residual dilated ASPP block; parameter names as released."""

    def __init__(self, inplanes: int, planes: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.conv0 = nn.Conv3d(inplanes, planes, 3, padding=1)
        aspp = ASPP3D(planes, dilations)
        # Registered flat (conv1, bn1, conv2, bn2) to match the official key names.
        self.conv1, self.bn1, self.conv2, self.bn2 = aspp.conv1, aspp.bn1, aspp.conv2, aspp.bn2
        self.relu = nn.ReLU()

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv0(x))
        y = None
        for conv1, bn1, conv2, bn2 in zip(self.conv1, self.bn1, self.conv2, self.bn2):
            branch = bn2(conv2(self.relu(bn1(conv1(x)))))
            y = branch if y is None else y + branch
        return self.relu(y + x)


class SegmentationHead(_HeadTrunk):
    """MonoScene head: trunk -> 3x3x3 conv to class logits."""

    def __init__(self, inplanes: int, planes: int, n_classes: int, dilations=(1, 2, 3)) -> None:
        super().__init__(inplanes, planes, tuple(dilations))
        self.conv_classes = nn.Conv3d(planes, n_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.conv_classes(self.trunk(x)), None


class CascadeHead(_HeadTrunk):
    """OccDepth cascade head: occupancy logits first; their softmax is concatenated
    to the trunk features (in that order) before the semantic classifier."""

    def __init__(self, inplanes: int, planes: int, n_classes: int, dilations=(1, 2, 3)) -> None:
        super().__init__(inplanes, planes, tuple(dilations))
        self.conv_classes = nn.Conv3d(planes + N_OCC_CLASSES, n_classes, 3, padding=1)
        self.occ_classes = nn.Conv3d(planes, N_OCC_CLASSES, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.trunk(x)
        occ_logit = self.occ_classes(t)
        ssc_logit = self.conv_classes(torch.cat([t, torch.softmax(occ_logit, dim=1)], dim=1))
        return ssc_logit, occ_logit
