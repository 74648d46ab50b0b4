"""The gymnasium env built from a task YAML over the simulated FR3."""

import textwrap

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from robot_stack.config import load_task_config
from robot_stack.envs import NonFiniteActionError, make_env, make_sim_env
from robot_stack.sim.tasks import GRIPPER_CLOSE


@pytest.fixture
def state_env(pick_cube_state_yaml):
    """The state-only pick-cube with the full 6-D twist + gripper action."""
    config = load_task_config(pick_cube_state_yaml)
    config = config.model_copy(update={"task": config.task.model_copy(update={"policy_controls_rotation": True})})
    sim = make_sim_env(config)
    yield sim
    sim.env.close()


def test_translation_only_task_holds_the_reset_orientation(pick_cube_state_yaml):
    sim = make_sim_env(pick_cube_state_yaml)
    env = sim.env
    assert env.action_dim == 4 and env.action_space.shape == (4,)
    env.reset(seed=0)
    _, reset_rotation = env.reset_pose
    for _ in range(5):
        env.step(np.array([0.5, -0.5, -0.5, 0.0]))
    state = sim.backend.read_state()
    assert np.allclose(state.tcp_rotation, reset_rotation, atol=0.02)
    with pytest.raises(ValueError, match=r"shape \(4,\).*3-D end-effector delta \+ gripper"):
        env.step(np.zeros(7))
    env.close()


def test_env_checker_passes_on_the_image_task(pick_cube_yaml):
    env = make_env(pick_cube_yaml)
    check_env(env, skip_render_check=True)
    env.close()


def test_env_checker_passes_on_the_state_only_task(pick_cube_state_yaml):
    env = make_env(pick_cube_state_yaml)
    check_env(env, skip_render_check=True)
    env.close()


def test_observation_has_uint8_camera_images_and_a_float32_state(pick_cube_yaml):
    env = make_env(pick_cube_yaml)
    obs, _ = env.reset(seed=0)
    assert set(obs["images"]) == {"front", "wrist"}
    for image in obs["images"].values():
        assert image.dtype == np.uint8 and image.shape == (128, 128, 3)
        assert image.std() > 5  # a rendered scene, not a blank buffer
    assert obs["state"].dtype == np.float32 and obs["state"].shape == (13,)
    # Proprioception is relative to the reset pose: right after the reset it is ~zero.
    np.testing.assert_allclose(obs["state"][:6], 0.0, atol=3e-3)
    env.close()


def test_state_only_task_renders_nothing(state_env):
    assert state_env.env.cameras is None
    obs, _ = state_env.env.reset(seed=0)
    assert "images" not in obs


def test_action_moves_the_tcp_in_the_end_effector_frame(state_env):
    env = state_env.env
    env.reset(seed=1)
    before = state_env.backend.read_state()
    # +z in the end-effector frame points out of the fingers, i.e. down for a gripper pointing down.
    env.step(np.array([0, 0, 1.0, 0, 0, 0, 0]))
    env.step(np.array([0, 0, 1.0, 0, 0, 0, 0]))
    after = state_env.backend.read_state()
    assert after.tcp_position_m[2] < before.tcp_position_m[2] - 0.015
    assert abs(after.tcp_position_m[0] - before.tcp_position_m[0]) < 0.005


def test_nan_action_raises_a_clear_error_and_does_not_move_the_robot(state_env):
    env = state_env.env
    env.reset(seed=0)
    before = state_env.backend.read_state()
    with pytest.raises(NonFiniteActionError, match=r"indices \[1\]"):
        env.step(np.array([0.0, np.nan, 0, 0, 0, 0, 0]))
    with pytest.raises(NonFiniteActionError):
        env.step(np.array([np.inf, 0, 0, 0, 0, 0, 0]))
    after = state_env.backend.read_state()
    assert after.time_s == before.time_s
    assert np.all(np.isfinite(after.tau_commanded_nm))


def test_wrong_action_shape_names_the_expected_shape(state_env):
    state_env.env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(7,\)"):
        state_env.env.step(np.zeros(6))


def test_out_of_range_action_is_clipped_and_reported(state_env):
    env = state_env.env
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([5.0, 0, 0, 0, 0, 0, 0]))
    assert info["action_clipped"] is True
    _, _, _, _, info = env.step(np.array([0.5, 0, 0, 0, 0, 0, 0]))
    assert info["action_clipped"] is False


def test_pushing_past_the_safety_box_is_clamped_and_reported(state_env):
    env = state_env.env
    env.reset(seed=0)
    box = env.task.safety_box
    clamped = []
    for _ in range(15):
        # -z in the end-effector frame is up for a gripper pointing down.
        _, _, _, _, info = env.step(np.array([0, 0, -1.0, 0, 0, 0, 0]))
        clamped.append(info["safety_clamped"])
    assert any(clamped)
    assert state_env.backend.read_state().tcp_position_m[2] <= box.xyz_max_m[2] + 0.003


def test_episode_truncates_at_the_time_limit(state_env):
    env = state_env.env
    env.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, reward, terminated, truncated, info = env.step(np.zeros(7))
        steps += 1
        done = terminated or truncated
    assert truncated and not terminated and steps == env.task.max_episode_steps
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(7))


def test_success_terminates_with_reward_one(state_env):
    env, expert, backend = state_env.env, state_env.expert, state_env.backend
    env.reset(seed=3)
    for _ in range(env.task.max_episode_steps):
        s = backend.read_state()
        _, reward, terminated, truncated, info = env.step(expert.act(s.tcp_position_m, s.tcp_rotation, s.gripper_width_m))
        if terminated or truncated:
            break
    assert terminated and info["success"] and reward == 1.0
    assert info["gripper_closed"] is True and GRIPPER_CLOSE > 0


def test_peg_task_has_a_six_dimensional_action(peg_yaml):
    env = make_env(peg_yaml)
    assert env.action_space.shape == (6,)
    env.close()


def test_object_position_is_measured_from_the_frame_the_task_names(pick_cube_state_yaml):
    config = load_task_config(pick_cube_state_yaml)
    offset = slice(-3, None)  # object_position is the last state key of the task
    assert config.task.observation.state[-1] == "object_position"
    observed = {}
    for frame in ("reset", "tcp"):
        task = config.task.model_copy(
            update={"observation": config.task.observation.model_copy(update={"object_frame": frame})}
        )
        sim = make_sim_env(config.model_copy(update={"task": task}))
        sim.env.reset(seed=0)
        obs, *_ = sim.env.step(np.array([1.0, -1.0, 0.5, 0.0]))
        reset_position, reset_rotation = sim.env.reset_pose
        origin = sim.backend.read_state().tcp_position_m if frame == "tcp" else reset_position
        expected = reset_rotation.T @ (sim.scene.object_position() - origin)
        np.testing.assert_allclose(obs["state"][offset], expected, atol=1e-6)
        observed[frame] = obs["state"][offset]
        sim.env.close()
    # The step moved the TCP by centimetres: the two frames must disagree by about that much.
    assert np.linalg.norm(observed["reset"] - observed["tcp"]) > 0.005


def test_object_frame_without_object_position_is_refused(pick_cube_yaml):
    config = load_task_config(pick_cube_yaml)
    with pytest.raises(ValueError, match="object_frame is 'tcp' but state does not list object_position"):
        config.task.observation.model_validate({**config.task.observation.model_dump(), "object_frame": "tcp"})


def test_a_new_task_variant_is_written_in_yaml_only(tmp_path, repo_root):
    """An engineer's new variant: bigger, heavier cube, other start range, tighter box."""
    configs = repo_root / "hardware_configs"
    (tmp_path / "big_cube.yaml").write_text(
        textwrap.dedent(
            f"""
            robot: {configs / 'robots' / 'sim_fr3.yaml'}
            cameras: {configs / 'cameras' / 'sim_front_wrist.yaml'}
            teleop: {configs / 'teleop' / 'scripted.yaml'}
            task:
              name: big_cube_variant
              max_episode_steps: 60
              action_scale: {{translation_m: 0.02, rotation_rad: 0.05}}
              safety_box:
                xyz_min_m: [0.35, -0.15, 0.005]
                xyz_max_m: [0.65, 0.15, 0.3]
              reset: {{tcp_position_m: [0.5, 0.0, 0.2], random_xy_range_m: 0.02}}
              observation: {{images: [], state: [tcp_pose, gripper_width]}}
              sim:
                scene:
                  kind: pick_cube
                  cube_edge_m: 0.05
                  cube_mass_kg: 0.2
                  cube_xy_center_m: [0.45, 0.05]
                  cube_xy_half_range_m: [0.04, 0.04]
                  success_lift_m: 0.08
            """
        )
    )
    sim = make_sim_env(tmp_path / "big_cube.yaml")
    env = sim.env
    assert env.observation_space["state"].shape == (7,)
    successes = 0
    for seed in range(3):
        env.reset(seed=seed)
        cube_position, _ = sim.scene.cube_pose()
        assert abs(cube_position[0] - 0.45) <= 0.04 + 1e-6 and abs(cube_position[1] - 0.05) <= 0.04 + 1e-6
        assert cube_position[2] == pytest.approx(0.025, abs=1e-3)
        for _ in range(env.task.max_episode_steps):
            s = sim.backend.read_state()
            _, _, terminated, truncated, info = env.step(sim.expert.act(s.tcp_position_m, s.tcp_rotation, s.gripper_width_m))
            if terminated or truncated:
                break
        successes += info["success"]
    assert successes == 3
    env.close()
