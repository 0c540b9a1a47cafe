"""Run occdepth_node on a stereo camera, optionally with RViz and a bag to play.

    ros2 launch occdepth_ros stereo.launch.py                       # KITTI configuration
    ros2 launch occdepth_ros stereo.launch.py config:=<share>/config/generic_stereo.yaml \\
        left_image:=/zed/left/image_rect_color right_image:=/zed/right/image_rect_color \\
        left_info:=/zed/left/camera_info right_info:=/zed/right/camera_info use_rviz:=true
    ros2 launch occdepth_ros stereo.launch.py bag:=kitti_00 use_rviz:=true
    ros2 launch occdepth_ros stereo.launch.py bag:=kitti_00 fuse:=true   # + the map, poses from the bag's /odom

Empty arguments leave the config file's value in place. RViz opens the RViz config of
the node config (generic_stereo.yaml: rviz/generic_stereo.rviz, fixed frame occdepth_grid;
otherwise rviz/occdepth.rviz, fixed frame velodyne), or with fuse:=true rviz/occdepth_map.rviz
(the map's topics, fixed frame odom); fixed_frame:=<frame> overrides the fixed frame.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'occdepth_ros'
# Launch argument -> node parameter, passed only when not empty.
PARAMETER_ARGS = ('checkpoint', 'preset', 'backend', 'ort_provider', 'device', 'calib_file', 'frame_id', 'fuse')
# Of those, the bool parameters: launch_ros passes a plain string on as a string parameter.
BOOL_ARGS = {'fuse'}
BOOL_WORDS = {'true': True, '1': True, 'false': False, '0': False}
# Node config file name -> its RViz config (fixed frame = that config's grid frame).
RVIZ_CONFIGS = {'generic_stereo.yaml': 'generic_stereo.rviz'}
DEFAULT_RVIZ = 'occdepth.rviz'
MAP_RVIZ = 'occdepth_map.rviz'  # fuse:=true: the temporal map, fixed frame odom
# Launch argument -> the node's input topic it remaps.
REMAP_ARGS = {
    'left_image': 'left/image_rect',
    'right_image': 'right/image_rect',
    'left_info': 'left/camera_info',
    'right_info': 'right/camera_info',
}


def node_settings(value):
    """What the launch arguments (``value(name)`` -> string) make of the node and RViz:
    parameters (the config file, then the non-empty overrides), remappings, RViz config
    file name and extra RViz arguments."""
    overrides = {name: _parameter(name, value(name)) for name in PARAMETER_ARGS if value(name)}
    fixed = value('fixed_frame') or value('frame_id')
    return {
        'parameters': [value('config'), overrides],
        'remappings': [(topic, value(arg)) for arg, topic in REMAP_ARGS.items() if value(arg)],
        'rviz_config': (MAP_RVIZ if overrides.get('fuse') else
                        RVIZ_CONFIGS.get(os.path.basename(value('config')), DEFAULT_RVIZ)),
        'rviz_extra_args': ['--fixed-frame', fixed] if fixed else [],
    }


def _parameter(name, text):
    """A launch argument's string as the node parameter's type."""
    if name not in BOOL_ARGS:
        return text
    if text.lower() not in BOOL_WORDS:
        raise ValueError(f'launch argument {name} must be true or false, got {text!r}')
    return BOOL_WORDS[text.lower()]


def _setup(context):
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    settings = node_settings(value)
    actions = [Node(
        package=PACKAGE, executable='occdepth_node', name='occdepth_node', output='screen',
        parameters=settings['parameters'], remappings=settings['remappings'],
    )]
    if value('use_rviz').lower() in ('true', '1'):
        rviz = PathJoinSubstitution([FindPackageShare(PACKAGE), 'rviz', settings['rviz_config']])
        actions.append(Node(package='rviz2', executable='rviz2', arguments=['-d', rviz, *settings['rviz_extra_args']],
                            output='screen'))
    if value('bag'):
        cmd = ['ros2', 'bag', 'play', value('bag'), '--rate', value('bag_rate')]
        if value('bag_loop').lower() in ('true', '1'):
            cmd.append('--loop')
        actions.append(ExecuteProcess(cmd=cmd, output='screen'))
    return actions


def generate_launch_description():
    share = FindPackageShare(PACKAGE)
    args = [
        DeclareLaunchArgument('config', default_value=PathJoinSubstitution([share, 'config', 'kitti.yaml']),
                              description='node parameter file'),
        DeclareLaunchArgument('checkpoint', default_value='', description='weights; empty: shipped default'),
        DeclareLaunchArgument('preset', default_value='', description='model preset for official .ckpt files'),
        DeclareLaunchArgument('backend', default_value='', description='auto (the default: TensorRT, else ONNX Runtime, else torch) | torch | onnxruntime | tensorrt; ONNX and engines are cached'),
        DeclareLaunchArgument('ort_provider', default_value='',
                              description='onnxruntime: openvino | cpu | cuda | tensorrt; empty: the best installed'),
        DeclareLaunchArgument('device', default_value='', description='cpu or cuda'),
        DeclareLaunchArgument('calib_file', default_value='', description='KITTI calib.txt / stereo YAML'),
        DeclareLaunchArgument('frame_id', default_value='', description='frame of the voxel grid'),
        DeclareLaunchArgument('fuse', default_value='',
                              description='true: also a temporal map in the odometry frame (~/map/*), poses from '
                                          '/odom; empty: the config file\'s (false)'),
        DeclareLaunchArgument('use_rviz', default_value='false'),
        DeclareLaunchArgument('fixed_frame', default_value='',
                              description="RViz fixed frame; empty: frame_id if set, else the RViz config's"),
        DeclareLaunchArgument('bag', default_value='', description='rosbag2 folder to play'),
        DeclareLaunchArgument('bag_rate', default_value='1.0'),
        DeclareLaunchArgument('bag_loop', default_value='true'),
    ] + [DeclareLaunchArgument(arg, default_value='', description=f'remap of {topic}')
         for arg, topic in REMAP_ARGS.items()]
    return LaunchDescription(args + [OpaqueFunction(function=_setup)])
