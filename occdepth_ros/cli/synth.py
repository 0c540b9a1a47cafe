"""occdepth-synth: a synthetic street in the KITTI odometry / SemanticKITTI layout."""

from __future__ import annotations

from ..data.synth.cli import main

__all__ = ["main"]
