"""The names a LeRobot dataset gives each entry of the state and the action, from the task section."""

from robot_stack.data.spec import action_names, state_names
from robot_stack.config.schema import ObservationConfig, TaskSpec


def test_state_names_follow_the_task_sections_state_keys_in_order():
    task = TaskSpec(name="t", observation=ObservationConfig(state=("gripper_width", "tcp_pose")))

    assert state_names(task) == ["gripper.width", "tcp.x", "tcp.y", "tcp.z", "tcp.rx", "tcp.ry", "tcp.rz"]


def test_action_names_drop_the_rotation_and_the_gripper_when_the_task_does_not_command_them():
    assert action_names(TaskSpec(name="t")) == ["dx", "dy", "dz", "drx", "dry", "drz", "gripper"]
    fixed = TaskSpec(name="t", policy_controls_rotation=False, gripper_mode="fixed_closed")
    assert action_names(fixed) == ["dx", "dy", "dz"]
