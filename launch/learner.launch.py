"""The learner side of a task session: `robot-stack learner CONFIG [--demos DIR]`.

The learner is a plain process, not a ROS node: it talks to the actors over ZeroMQ. This
file only starts it from `ros2 launch`, e.g. next to the robot nodes (sim_session.launch.py).
`robot-stack` must be on PATH (the project's virtual environment activated).

    ros2 launch robot_stack_ros learner.launch.py config:=hardware_configs/tasks/sim_pick_cube.yaml

Arguments: config (task YAML; a relative path is looked up in the working directory, then in
the package's share directory, as the nodes do), demos (demo folder; empty: the task's).

If the learner exits on its own, launch stops and exits non-zero; if launch dies, the learner
stops.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from robot_stack_ros.launch_rules import end_the_cell_when_it_exits


def _task_file(path):
    if os.path.isabs(path) or os.path.exists(path):
        return path
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = os.path.join(get_package_share_directory('robot_stack_ros'), path)
    except (ImportError, LookupError):
        return path
    return installed if os.path.exists(installed) else path


def _learner(context):
    # This code runs in the launch process: the learner stops itself if launch dies.
    cmd = ['robot-stack', 'learner', _task_file(LaunchConfiguration('config').perform(context)),
           '--parent-pid', str(os.getpid())]
    demos = LaunchConfiguration('demos').perform(context)
    if demos:
        cmd += ['--demos', demos]
    # On Ctrl-C the learner finishes its update and writes a final checkpoint (replay buffers
    # included), which takes longer than launch's default 5 s before it escalates to SIGTERM.
    learner = ExecuteProcess(cmd=cmd, name='learner', output='screen', sigterm_timeout='60', sigkill_timeout='30')
    return [learner, end_the_cell_when_it_exits(learner)]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument(
            'config', default_value='hardware_configs/tasks/sim_pick_cube.yaml',
            description='task YAML (hardware_configs/tasks/<task>.yaml)'),
        DeclareLaunchArgument(
            'demos', default_value='',
            description="demo folder; empty: the task's training.demo_dir"),
        OpaqueFunction(function=_learner),
    ])
