"""occdepth-build-engine: TensorRT engine with the StereoVoxelSample plugin."""

from __future__ import annotations

from occdepth_export.build_engine import main

__all__ = ["main"]
