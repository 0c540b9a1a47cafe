"""2D UNet: a geffnet EfficientNet encoder and an AdaBins-style BN decoder.

Module names (``encoder.original_model``, ``decoder.up16`` ...) follow the
official state dict so released checkpoints load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError

# Decoder stage -> (output stride, channel divisor of the backbone's head width).
DECODER_STAGES = (("up16", 16, 2), ("up8", 8, 4), ("up4", 4, 8), ("up2", 2, 16), ("up1", 1, 32))


def build_efficientnet(name: str) -> nn.Module:
    """The TF-ported EfficientNet from geffnet (TF 'SAME' padding, BN eps 1e-3), no weights.

    Pretrained weights are never downloaded: a checkpoint supplies them.
    """
    try:
        import geffnet
    except ImportError as exc:  # pragma: no cover - install problem
        raise ImportError(
            "geffnet is required for the EfficientNet backbone: pip install --no-deps geffnet==1.0.2"
        ) from exc
    if not hasattr(geffnet, name):
        raise ConfigError(f"backbone {name!r} is not a geffnet model")
    model = geffnet.create_model(name, pretrained=False)
    model.global_pool = nn.Identity()
    model.classifier = nn.Identity()
    return model


def _last_conv_channels(module: nn.Module) -> int:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


class Encoder(nn.Module):
    """Runs the backbone and taps stages 0, 1, 2, 4 and the raw (pre-BN) conv_head."""

    TAPPED_STAGES = (0, 1, 2, 4)

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.original_model = backbone
        self.skip_channels = [3] + [_last_conv_channels(backbone.blocks[i]) for i in self.TAPPED_STAGES]
        self.head_channels = backbone.conv_head.out_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        m = self.original_model
        taps = [x]
        y = m.act1(m.bn1(m.conv_stem(x)))
        for i, stage in enumerate(m.blocks):
            y = stage(y)
            if i in self.TAPPED_STAGES:
                taps.append(y)
        taps.append(m.conv_head(y))  # bn2/act2 are not used by the decoder
        return taps  # [input, 1/2, 1/4, 1/8, 1/16, 1/32 head]


class UpSampleBN(nn.Module):
    """Bilinear (align_corners) upsample to the skip's size, concat, two conv-BN-LeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self._net = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=True)
        return self._net(torch.cat([x, skip], dim=1))


class DecoderBN(nn.Module):
    def __init__(self, head_channels: int, skip_channels: list[int], out_feature: int,
                 width: int | None = None) -> None:
        super().__init__()
        f = width or head_channels
        # Official quirk: a 1x1 conv with padding=1 grows the map by a bias-only border.
        self.conv2 = nn.Conv2d(head_channels, f, kernel_size=1, padding=1)
        for stride in (1, 2, 4, 8, 16):
            divisor = {s: d for _, s, d in DECODER_STAGES}[stride]
            setattr(self, f"resize_output_1_{stride}", nn.Conv2d(f // divisor, out_feature, 1))
        # skip_channels: [input(1/1), 1/2, 1/4, 1/8, 1/16]
        skip_for_stride = {1: skip_channels[0], 2: skip_channels[1], 4: skip_channels[2],
                           8: skip_channels[3], 16: skip_channels[4]}
        prev = f
        for name, stride, divisor in DECODER_STAGES:
            setattr(self, name, UpSampleBN(prev + skip_for_stride[stride], f // divisor))
            prev = f // divisor

    def forward(self, taps: list[torch.Tensor], strides: tuple[int, ...]) -> dict[int, torch.Tensor]:
        """Decode down to the finest requested stride; return {stride: features}."""
        skips = {1: taps[0], 2: taps[1], 4: taps[2], 8: taps[3], 16: taps[4]}
        finest = min(strides)
        x = self.conv2(taps[5])
        out: dict[int, torch.Tensor] = {}
        for name, stride, _ in DECODER_STAGES:
            x = getattr(self, name)(x, skips[stride])
            if stride in strides:
                out[stride] = getattr(self, f"resize_output_1_{stride}")(x)
            if stride == finest:
                break
        return out


class UNet2D(nn.Module):
    def __init__(self, backbone_name: str, out_feature: int, decoder_channels: int | None = None) -> None:
        super().__init__()
        self.encoder = Encoder(build_efficientnet(backbone_name))
        self.decoder = DecoderBN(self.encoder.head_channels, self.encoder.skip_channels, out_feature,
                                 decoder_channels)

    def forward(self, image: torch.Tensor, strides: tuple[int, ...]) -> dict[int, torch.Tensor]:
        return self.decoder(self.encoder(image), strides)
