"""A whole simulated task session on one machine: the learner (learner.launch.py) and the
robot-side nodes on the simulated FR3 (robot.launch.py), talking over loopback.

    ros2 launch robot_stack_ros sim_session.launch.py
    ros2 launch robot_stack_ros sim_session.launch.py config:=hardware_configs/tasks/sim_pick_cube.yaml

Arguments: config, demos, run_dir, actor_id, use_spacemouse (default false: the actor's
scripted teleoperator intervenes itself), use_cameras.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from robot_stack_ros.launch_rules import BOOLEAN_CHOICES

HERE = os.path.dirname(os.path.abspath(__file__))


def generate_launch_description():
    config = LaunchConfiguration('config')
    return LaunchDescription([
        DeclareLaunchArgument(
            'config', default_value='hardware_configs/tasks/sim_pick_cube_state.yaml',
            description='task YAML with a simulated robot (robot backend sim)'),
        DeclareLaunchArgument(
            'demos', default_value='',
            description="demo folder; empty: the task's training.demo_dir"),
        DeclareLaunchArgument(
            'run_dir', default_value='',
            description="the actor's status.json and outbox go here; empty: none"),
        DeclareLaunchArgument('actor_id', default_value='actor0'),
        DeclareLaunchArgument(
            'use_spacemouse', default_value='false', choices=BOOLEAN_CHOICES,
            description='also publish the teleop device (scripted in simulation) on ROS topics'),
        DeclareLaunchArgument(
            'use_cameras', default_value='true', choices=BOOLEAN_CHOICES,
            description='start the camera node (false for state-only tasks saves rendering)'),

        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(HERE, 'learner.launch.py')),
            launch_arguments={
                'config': config,
                'demos': LaunchConfiguration('demos'),
            }.items()),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(HERE, 'robot.launch.py')),
            launch_arguments={
                'config': config,
                'run_dir': LaunchConfiguration('run_dir'),
                'actor_id': LaunchConfiguration('actor_id'),
                'use_spacemouse': LaunchConfiguration('use_spacemouse'),
                'use_cameras': LaunchConfiguration('use_cameras'),
            }.items()),
    ])
