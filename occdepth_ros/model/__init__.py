"""The OccDepth network: 2D UNet, Stereo-SFA + OAD lift, 3D UNet with CRP, cascade head."""

from .config import ModelConfig, load_preset, preset_names
from .occdepth import OccDepth

__all__ = ["ModelConfig", "OccDepth", "load_preset", "preset_names"]
