"""Data tools around the ROS node: KITTI -> rosbag2 conversion and a bag player for
machines that have the ROS 2 PyPI wheels but no ``ros2 bag``."""
