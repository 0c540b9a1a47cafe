"""Plain-Python inference: images + calibration in, semantic voxel grid out."""

from .pipeline import InputError, Prediction, StereoInference

__all__ = ["InputError", "Prediction", "StereoInference"]
