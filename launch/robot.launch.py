"""The robot side of a task session: impedance controller, cameras, SpaceMouse, reward
service, reset node and actor, all reading the same task file.

    ros2 launch robot_stack_ros robot.launch.py config:=hardware_configs/tasks/sim_pick_cube.yaml \
        learner_host:=192.168.1.50

Arguments: config (task YAML, relative to the working directory or to the package's share
directory), learner_host and run_dir (actor; empty: the task's session file / none),
actor_id, use_spacemouse, use_cameras (true or false).

If the impedance controller exits on its own, launch stops every node and exits non-zero.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from robot_stack_ros.launch_rules import BOOLEAN_CHOICES, end_the_cell_when_it_exits


def _text(value):
    # A string parameter whatever the value looks like (an address, a number, empty).
    return ParameterValue(value, value_type=str)


def generate_launch_description():
    controller = Node(
        package='robot_stack_ros', executable='controller', name='impedance_controller',
        parameters=[{'config': _text(LaunchConfiguration('config'))}], output='screen')
    return LaunchDescription([
        DeclareLaunchArgument(
            'config', default_value='hardware_configs/tasks/sim_pick_cube.yaml',
            description='task YAML (hardware_configs/tasks/<task>.yaml)'),
        DeclareLaunchArgument(
            'learner_host', default_value='',
            description="the learner PC's address; empty: the task's session file"),
        DeclareLaunchArgument(
            'run_dir', default_value='',
            description="the actor's status.json and outbox go here; empty: none"),
        DeclareLaunchArgument(
            'actor_id', default_value='actor0',
            description='unique per robot; a restarted actor keeps its id'),
        DeclareLaunchArgument(
            'use_spacemouse', default_value='true', choices=BOOLEAN_CHOICES,
            description="start the SpaceMouse node (the task's teleop device)"),
        DeclareLaunchArgument(
            'use_cameras', default_value='true', choices=BOOLEAN_CHOICES,
            description='start the camera node (needed when the task observes images)'),

        controller,
        end_the_cell_when_it_exits(controller),
        Node(
            package='robot_stack_ros', executable='camera', name='cameras',
            parameters=[{'config': _text(LaunchConfiguration('config'))}], output='screen',
            condition=IfCondition(LaunchConfiguration('use_cameras'))),
        Node(
            package='robot_stack_ros', executable='spacemouse', name='spacemouse',
            parameters=[{'config': _text(LaunchConfiguration('config'))}], output='screen',
            condition=IfCondition(LaunchConfiguration('use_spacemouse'))),
        Node(
            package='robot_stack_ros', executable='reward', name='reward_service',
            parameters=[{'config': _text(LaunchConfiguration('config'))}], output='screen'),
        Node(
            package='robot_stack_ros', executable='reset', name='reset',
            parameters=[{'config': _text(LaunchConfiguration('config'))}], output='screen'),
        Node(
            package='robot_stack_ros', executable='actor', name='actor',
            parameters=[{
                'config': _text(LaunchConfiguration('config')),
                'actor_id': _text(LaunchConfiguration('actor_id')),
                'learner_host': _text(LaunchConfiguration('learner_host')),
                'run_dir': _text(LaunchConfiguration('run_dir')),
            }],
            output='screen'),
    ])
