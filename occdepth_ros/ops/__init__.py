"""The stereo voxel sampling lift (2D features -> 3D voxel features), one op."""

from .stereo_voxel_sample import stereo_voxel_sample

__all__ = ["stereo_voxel_sample"]
