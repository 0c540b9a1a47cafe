"""Replay a KITTI odometry bag (occdepth-kitti2bag) into occdepth_node and watch it in RViz.

    ros2 launch occdepth_ros kitti_replay.launch.py bag:=kitti_08 \\
        calib_file:=<kitti>/sequences/08/calib.txt [fuse:=true]

fuse:=true adds the temporal map, its poses from the bag's /odom (occdepth-kitti2bag writes it
from poses.txt).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare('occdepth_ros')
    names = ('bag', 'calib_file', 'checkpoint', 'bag_rate', 'use_rviz', 'fuse')
    defaults = {'bag_rate': '1.0', 'use_rviz': 'true', 'calib_file': '', 'checkpoint': '', 'fuse': ''}
    args = [DeclareLaunchArgument(n, **({'default_value': defaults[n]} if n in defaults else {})) for n in names]
    stereo = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, 'launch', 'stereo.launch.py'])),
        launch_arguments={
            'config': PathJoinSubstitution([share, 'config', 'kitti.yaml']),
            'bag_loop': 'true',
            **{n: LaunchConfiguration(n) for n in names},
        }.items(),
    )
    return LaunchDescription(args + [stereo])
