"""The backend contract shared by eager torch, ONNX Runtime and TensorRT."""

from __future__ import annotations

from typing import Protocol

import torch

from ..geometry.lookups import LiftTensors
from ..model.config import ModelConfig


class BackendError(RuntimeError):
    """A backend cannot be created or run (missing library, bad or stale model file)."""


class Backend(Protocol):
    """Runs the network. ``images``: (1, V, 3, H, W) float32 network input (CPU tensor);
    ``lift``: the calibration's lookups. Returns the semantic logits (1, classes, X, Y, Z)
    as a CPU float32 tensor. ``cfg`` is the architecture the backend runs."""

    name: str
    cfg: ModelConfig

    def forward(self, images: torch.Tensor, lift: LiftTensors) -> torch.Tensor: ...

    def describe(self) -> str: ...


def with_selection(backend: object, text: str) -> str:
    """``describe()`` text, followed by how backend ``auto`` chose this backend (if it did)."""
    selection = getattr(backend, "selection", "")
    return f"{text}; {selection}" if selection else text
