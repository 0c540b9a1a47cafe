"""3D building blocks of the OccDepth/MonoScene 3D UNet (DDR bottlenecks, ASPP)."""

from __future__ import annotations

import torch
from torch import nn


def _pool_conv_bn(pool: tuple[int, int, int], channels: int, momentum: float) -> nn.Sequential:
    return nn.Sequential(
        nn.AvgPool3d(kernel_size=pool, stride=pool),
        nn.Conv3d(channels, channels, kernel_size=1, bias=False),
        nn.BatchNorm3d(channels, momentum=momentum),
    )


class Bottleneck3D(nn.Module):
    """DDR bottleneck: 1x1x1 reduce, factorised (1,1,3)/(1,3,1)/(3,1,1) convs with
    dense residuals, 1x1x1 expand. The pooled shortcuts downsample2/3/4 exist (and
    are in the state dict) even at stride 1, where they are unused."""

    def __init__(
        self,
        inplanes: int,
        planes: int,
        dilation: int = 1,
        stride: int = 1,
        expansion: int = 4,
        downsample: nn.Module | None = None,
        momentum: float = 0.1,
    ) -> None:
        super().__init__()
        d, s = dilation, stride
        self.stride = stride
        self.conv1 = nn.Conv3d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes, momentum=momentum)
        self.conv2 = nn.Conv3d(planes, planes, (1, 1, 3), stride=(1, 1, s), dilation=(1, 1, d),
                               padding=(0, 0, d), bias=False)
        self.bn2 = nn.BatchNorm3d(planes, momentum=momentum)
        self.conv3 = nn.Conv3d(planes, planes, (1, 3, 1), stride=(1, s, 1), dilation=(1, d, 1),
                               padding=(0, d, 0), bias=False)
        self.bn3 = nn.BatchNorm3d(planes, momentum=momentum)
        self.conv4 = nn.Conv3d(planes, planes, (3, 1, 1), stride=(s, 1, 1), dilation=(d, 1, 1),
                               padding=(d, 0, 0), bias=False)
        self.bn4 = nn.BatchNorm3d(planes, momentum=momentum)
        self.conv5 = nn.Conv3d(planes, planes * expansion, 1, bias=False)
        self.bn5 = nn.BatchNorm3d(planes * expansion, momentum=momentum)
        self.relu = nn.ReLU()
        self.downsample = downsample
        self.downsample2 = _pool_conv_bn((1, s, 1), planes, momentum)
        self.downsample3 = _pool_conv_bn((s, 1, 1), planes, momentum)
        self.downsample4 = _pool_conv_bn((s, 1, 1), planes, momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.relu(self.bn1(self.conv1(x)))
        out2 = self.bn2(self.conv2(out1))
        out3 = self.bn3(self.conv3(self.relu(out2)))
        if self.stride != 1:
            out2 = self.downsample2(out2)
        out3 = out3 + out2
        out4 = self.bn4(self.conv4(self.relu(out3)))
        if self.stride != 1:
            out2 = self.downsample3(out2)
            out3 = self.downsample4(out3)
        out4 = out4 + out2 + out3
        out5 = self.bn5(self.conv5(self.relu(out4)))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out5 + residual)


class Process(nn.Module):
    """A chain of stride-1 bottlenecks with the given dilations."""

    def __init__(self, feature: int, dilations: tuple[int, ...] = (1, 2, 3), momentum: float = 0.1) -> None:
        super().__init__()
        self.main = nn.Sequential(
            *[Bottleneck3D(feature, feature // 4, dilation=d, momentum=momentum) for d in dilations]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class Downsample(nn.Module):
    """Stride-2 bottleneck doubling the channels."""

    def __init__(self, feature: int, expansion: int = 8, momentum: float = 0.1) -> None:
        super().__init__()
        out = feature * expansion // 4
        shortcut = nn.Sequential(
            nn.AvgPool3d(kernel_size=2, stride=2),
            nn.Conv3d(feature, out, 1, bias=False),
            nn.BatchNorm3d(out, momentum=momentum),
        )
        self.main = Bottleneck3D(feature, feature // 4, stride=2, expansion=expansion,
                                 downsample=shortcut, momentum=momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class Upsample(nn.Module):
    """Transposed conv (k3, s2, output_padding 1) doubling the resolution, BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2, momentum: float = 0.1) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose3d(in_channels, out_channels, 3, stride=stride, padding=1,
                               output_padding=stride - 1),
            nn.BatchNorm3d(out_channels, momentum=momentum),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class ASPP3D(nn.Module):
    """Residual sum of dilated conv-BN-ReLU-conv-BN branches, then ReLU."""

    def __init__(self, planes: int, dilations: tuple[int, ...] = (1, 2, 3)) -> None:
        super().__init__()

        def convs() -> nn.ModuleList:
            return nn.ModuleList(
                [nn.Conv3d(planes, planes, 3, padding=d, dilation=d, bias=False) for d in dilations]
            )

        self.conv1 = convs()
        self.bn1 = nn.ModuleList([nn.BatchNorm3d(planes) for _ in dilations])
        self.conv2 = convs()
        self.bn2 = nn.ModuleList([nn.BatchNorm3d(planes) for _ in dilations])
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = None
        for conv1, bn1, conv2, bn2 in zip(self.conv1, self.bn1, self.conv2, self.bn2):
            branch = bn2(conv2(self.relu(bn1(conv1(x)))))
            y = branch if y is None else y + branch
        return self.relu(y + x)
