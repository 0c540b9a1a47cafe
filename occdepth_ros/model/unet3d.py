"""The SemanticKITTI 3D UNet: two DDR levels down, optional CRP, three up, a head."""

from __future__ import annotations

import torch
from torch import nn

from .blocks3d import Downsample, Process, Upsample
from .crp import ContextRelationPrior
from .heads import CascadeHead, SegmentationHead


class UNet3D(nn.Module):
    def __init__(
        self,
        feature: int,
        n_classes: int,
        feature_dims: tuple[int, int, int],
        project_scale: int,
        context_prior: bool,
        cascade_head: bool,
        n_relations: int = 4,
    ) -> None:
        super().__init__()
        f = feature
        self.process_l1 = nn.Sequential(Process(f), Downsample(f))
        self.process_l2 = nn.Sequential(Process(2 * f), Downsample(2 * f))
        self.up_13_l2 = Upsample(4 * f, 2 * f)
        self.up_12_l1 = Upsample(2 * f, f)
        # project_scale 1: the features are already at output resolution.
        self.up_l1_lfull = Upsample(f, f // 2, stride=project_scale)
        head = CascadeHead if cascade_head else SegmentationHead
        self.ssc_head = head(f // 2, f // 2, n_classes)
        self.context_prior = context_prior
        if context_prior:
            size_l3 = tuple(d // 4 for d in feature_dims)
            self.CP_mega_voxels = ContextRelationPrior(4 * f, size_l3, n_relations)

    def forward(self, x3d: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        x_l2 = self.process_l1(x3d)
        x_l3 = self.process_l2(x_l2)
        if self.context_prior:
            x_l3, out["P_logits"] = self.CP_mega_voxels(x_l3)
        x_up_l2 = self.up_13_l2(x_l3) + x_l2
        x_up_l1 = self.up_12_l1(x_up_l2) + x3d
        ssc_logit, occ_logit = self.ssc_head(self.up_l1_lfull(x_up_l1))
        out["ssc_logit"] = ssc_logit
        if occ_logit is not None:
            out["occ_logit"] = occ_logit
        return out
