"""A network small enough to run over many frames in a test (~0.3 s a frame on one core):
the compact architecture with 8 channels, 64x192 input and 0.8 m output voxels over the
SemanticKITTI volume (64x64x8, four times the benchmark's 0.2 m on each axis)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from occdepth_ros.checkpoint import save_checkpoint
from occdepth_ros.model import OccDepth, load_preset
from occdepth_ros.model.config import GridConfig, ModelConfig


def tiny_config(**grid) -> ModelConfig:
    cfg = load_preset("compact")
    return dataclasses.replace(
        cfg, name="tiny", feature=8, decoder_channels=32,
        image=dataclasses.replace(cfg.image, height=64, width=192),
        grid=GridConfig(**{"dims": (64, 64, 8), "voxel_size": 0.8, "project_scale": 1, **grid}),
    )


def save_tiny_model(path: Path, seed: int = 0, **grid) -> Path:
    """Random weights (seeded) in the package's .safetensors format."""
    torch.manual_seed(seed)
    return save_checkpoint(path, OccDepth(tiny_config(**grid)).eval())
