"""Calibration, image transforms, voxel grids and the lift lookups built from them."""
