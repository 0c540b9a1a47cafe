"""occdepth_ros: OccDepth stereo semantic scene completion for ROS 2.

The package reads as the pipeline: ``geometry`` (calibration, voxel grids,
lookups) -> ``model`` (the network) -> ``ops`` (the stereo voxel sampling lift)
-> ``checkpoint`` (loading weights safely) -> ``inference`` -> ``cli``/tools.
"""

__version__ = "0.1.0"
