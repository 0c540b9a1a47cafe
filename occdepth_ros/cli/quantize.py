"""occdepth-quantize: the INT8 graph of a checkpoint (docs/INT8.md)."""

from __future__ import annotations

from occdepth_export.quantize import main

__all__ = ["main"]
