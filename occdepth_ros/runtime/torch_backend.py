"""Eager PyTorch: the reference backend (and the only one that trains)."""

from __future__ import annotations

import torch

from ..geometry.lookups import LiftTensors
from ..model.occdepth import OccDepth
from . import host_memory
from .base import with_selection


class TorchBackend:
    name = "torch"

    def __init__(self, model: OccDepth, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.cfg = model.cfg
        self._lift: tuple[LiftTensors, LiftTensors] | None = None  # (host lookups, on the device)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor, lift: LiftTensors) -> torch.Tensor:
        if self._lift is None or self._lift[0] is not lift:  # copy once per calibration
            self._lift = (lift, LiftTensors(*(t.to(self.device) for t in lift)))
        return self.model(images.to(self.device), self._lift[1])["ssc_logit"].float().cpu()

    def describe(self) -> str:
        allocator = f"; {host_memory.describe()}" if self.device.type == "cpu" else ""
        return with_selection(self, f"torch {torch.__version__} on {self.device} "
                                    f"({torch.get_num_threads()} threads){allocator}")
