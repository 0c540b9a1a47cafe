"""occdepth-export-onnx: ONNX export with the lift as one custom op."""

from __future__ import annotations

from occdepth_export.cli import main

__all__ = ["main"]
