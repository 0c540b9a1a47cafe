"""CRP: the 3D context relation prior (MonoScene CPMegaVoxels) at the coarsest level."""

from __future__ import annotations

import torch
from torch import nn

from .blocks3d import ASPP3D, Process


class ContextRelationPrior(nn.Module):
    """Predicts, for each voxel and each of ``n_relations`` relations, its affinity to
    every 'mega voxel' (a 2x coarser cell), and mixes mega-voxel context back in."""

    def __init__(self, feature: int, size: tuple[int, int, int], n_relations: int = 4) -> None:
        super().__init__()
        self.size = tuple(size)
        self.n_relations = n_relations
        self.context_feature = feature * 2
        self.n_voxels = size[0] * size[1] * size[2]
        self.n_mega = (size[0] // 2) * (size[1] // 2) * (size[2] // 2)
        padding = tuple((s + 1) % 2 for s in size)
        self.mega_context = nn.Sequential(
            nn.Conv3d(feature, self.context_feature, 3, stride=2, padding=padding)
        )
        self.context_prior_logits = nn.ModuleList(
            [nn.Sequential(nn.Conv3d(feature, self.n_mega, 1)) for _ in range(n_relations)]
        )
        self.aspp = ASPP3D(feature, (1, 2, 3))
        self.resize = nn.Sequential(
            nn.Conv3d(self.context_feature * n_relations + feature, feature, 1, bias=False),
            Process(feature, dilations=(1,)),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (features, P_logits (B, n_relations, n_mega, n_voxels))."""
        b = x.shape[0]
        x_agg = self.aspp(x)
        mega = self.mega_context(x_agg).reshape(b, self.context_feature, -1).permute(0, 2, 1)
        logits, contexts = [], []
        for head in self.context_prior_logits:
            logit = head(x_agg).reshape(b, self.n_mega, self.n_voxels)
            logits.append(logit)
            contexts.append(torch.bmm(torch.sigmoid(logit.permute(0, 2, 1)), mega))
        context = torch.cat(contexts, dim=2).permute(0, 2, 1).reshape(b, -1, *self.size)
        out = self.resize(torch.cat([x, context], dim=1))
        return out, torch.stack(logits, dim=1)
