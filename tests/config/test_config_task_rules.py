"""Cross-field safety rules of a task file, reported at the line that breaks them."""

import textwrap

import pytest

from robot_stack.config import ConfigError, load_task_config


def write(tmp_path, body):
    path = tmp_path / "task.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_a_reset_pose_whose_random_range_leaves_the_safety_box_is_refused(tmp_path):
    path = write(
        tmp_path,
        """
        robot: {backend: sim}
        task:
          name: x
          safety_box: {xyz_min_m: [0.3, -0.2, 0.02], xyz_max_m: [0.7, 0.2, 0.4]}
          reset: {tcp_position_m: [0.5, 0.0, 0.39], random_z_range_m: 0.02}
          sim: {scene: {kind: pick_cube}}
        """,
    )
    with pytest.raises(ConfigError) as error:
        load_task_config(path)
    message = str(error.value)
    assert f"{path}:6: task.reset.tcp_position_m" in message
    assert "z = 0.39 +- 0.02 m leaves task.safety_box [0.02, 0.4]" in message


def test_a_reset_yaw_range_wider_than_the_box_is_refused(tmp_path):
    path = write(
        tmp_path,
        """
        robot: {backend: sim}
        task:
          name: x
          safety_box: {rpy_min_rad: [-0.3, -0.3, -0.2], rpy_max_rad: [0.3, 0.3, 0.2]}
          reset: {random_rz_range_rad: 0.3}
          sim: {scene: {kind: pick_cube}}
        """,
    )
    with pytest.raises(ConfigError, match=r"random_rz_range_rad = 0.3 exceeds the safety box yaw limits"):
        load_task_config(path)


def test_a_peg_task_must_keep_the_gripper_closed(tmp_path):
    path = write(
        tmp_path,
        """
        robot: {backend: sim}
        task:
          name: x
          gripper_mode: binary
          sim: {scene: {kind: peg_insertion}}
        """,
    )
    with pytest.raises(ConfigError) as error:
        load_task_config(path)
    assert f"{path}:5: task.gripper_mode = 'binary'" in str(error.value)
    assert "must be 'fixed_closed' for a peg_insertion scene" in str(error.value)


def test_a_sim_robot_needs_a_sim_scene(tmp_path):
    path = write(tmp_path, "robot: {backend: sim}\ntask: {name: x}\n")
    with pytest.raises(ConfigError, match="task.sim is missing"):
        load_task_config(path)


def test_a_cube_start_region_the_gripper_cannot_reach_is_refused(tmp_path):
    path = write(
        tmp_path,
        """
        robot: {backend: sim}
        task:
          name: x
          safety_box: {xyz_min_m: [0.3, -0.2, 0.005], xyz_max_m: [0.7, 0.2, 0.35]}
          sim: {scene: {kind: pick_cube, cube_xy_center_m: [0.5, 0.15], cube_xy_half_range_m: [0.05, 0.08]}}
        """,
    )
    with pytest.raises(ConfigError) as error:
        load_task_config(path)
    assert "cube_xy_center_m y = 0.15 +- 0.08 m (cube_xy_half_range_m) leaves task.safety_box [-0.2, 0.2]" in str(error.value)


def test_a_lift_above_the_safety_box_is_refused(tmp_path):
    path = write(
        tmp_path,
        """
        robot: {backend: sim}
        task:
          name: x
          safety_box: {xyz_min_m: [0.3, -0.2, 0.005], xyz_max_m: [0.7, 0.2, 0.1]}
          reset: {tcp_position_m: [0.5, 0.0, 0.08]}
          sim: {scene: {kind: pick_cube, success_lift_m: 0.1}}
        """,
    )
    with pytest.raises(ConfigError) as error:
        load_task_config(path)
    assert "success_lift_m = 0.1 m lifts the cube's centre to 0.120 m, above task.safety_box's top (0.1 m)" in str(error.value)
