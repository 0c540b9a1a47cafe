"""The OccDepth network, with state-dict names identical to the released checkpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..ops import lift as lift_dispatch
from .config import ModelConfig
from .oad import OccupancyAwareDepth
from .unet2d import UNet2D
from .unet3d import UNet3D

if TYPE_CHECKING:  # geometry imports model.config; import only for type hints
    from ..geometry.lookups import LiftTensors


class OccDepth(nn.Module):
    """Stereo images -> semantic voxel logits.

    Inputs are network-ready images (B, V, 3, H, W), ImageNet-normalised RGB, and the
    calibration-derived :class:`LiftTensors`. Outputs: ``ssc_logit`` (B, classes, X, Y, Z),
    ``occ_logit`` (cascade head), ``P_logits`` (CRP) and ``depth_logits`` (B, V, D, h, w).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        g = cfg.grid
        # Registration order fixes the state-dict order of the release.
        self.net_3d_decoder = UNet3D(
            cfg.feature, cfg.n_classes, g.feature_dims, g.project_scale,
            cfg.context_prior, cfg.cascade_head, cfg.n_relations,
        )
        self.net_rgb = UNet2D(cfg.backbone, cfg.feature, cfg.decoder_channels)
        if cfg.depth.enabled:
            self.flosp_depth = OccupancyAwareDepth(cfg.feature, cfg.depth, g)
        # A plain attribute, not a module: the state dict stays official. ops.lift calls
        # the torch op occdepth::stereo_voxel_sample (native CPU kernel, reference
        # elsewhere); the exporter swaps in a guard that refuses the mean-fusion ablation.
        self.lift_op = lift_dispatch

    @property
    def feature_strides(self) -> tuple[int, ...]:
        strides = set(self.cfg.sfa_scales)
        if self.cfg.depth.enabled:
            strides.add(self.cfg.depth.feature_scale)
        return tuple(sorted(strides))

    def image_features(self, images: torch.Tensor) -> dict[int, torch.Tensor]:
        """{stride: (B, V, C, h, w)} 2D features of every view."""
        b, v = images.shape[:2]
        strides = self.feature_strides
        if self.training and self.cfg.share_2d_backbone_gradient and v > 1:
            # Official training: only the left view's 2D features carry gradients.
            left = self.net_rgb(images[:, 0], strides)
            with torch.no_grad():
                others = [self.net_rgb(images[:, i], strides) for i in range(1, v)]
            return {s: torch.stack([left[s]] + [o[s] for o in others], dim=1) for s in strides}
        feats = self.net_rgb(images.flatten(0, 1), strides)
        return {s: f.unflatten(0, (b, v)) for s, f in feats.items()}

    def forward(self, images: torch.Tensor, lift: "LiftTensors") -> dict[str, torch.Tensor]:
        cfg = self.cfg
        if images.dim() != 5 or images.shape[1] != cfg.n_views or images.shape[2] != 3:
            raise ValueError(f"images must be (B, {cfg.n_views}, 3, H, W), got {tuple(images.shape)}")
        if tuple(images.shape[3:]) != (cfg.image.height, cfg.image.width):
            raise ValueError(
                f"images are {images.shape[4]}x{images.shape[3]}, the network input is "
                f"{cfg.image.width}x{cfg.image.height}"
            )
        feats = self.image_features(images)
        out: dict[str, torch.Tensor] = {}
        depth_prob = depth_coords = None
        if cfg.depth.enabled:
            f = feats[cfg.depth.feature_scale]
            b, v = f.shape[:2]
            logits = self.flosp_depth(f.flatten(0, 1), lift.pixel_size.reshape(b * v, 1))
            out["depth_logits"] = logits.unflatten(0, (b, v))
            depth_prob = out["depth_logits"].softmax(dim=2)
            depth_coords = lift.depth_coords
        x3d = self.lift_op(
            [feats[s] for s in cfg.sfa_scales],
            lift.pixel_index,
            cfg.grid.feature_dims,
            depth_prob=depth_prob,
            depth_coords=depth_coords,
            gate_scale=cfg.depth.gate_scale,
            fusion=cfg.sfa_fusion,
        )
        out.update(self.net_3d_decoder(x3d))
        return out
