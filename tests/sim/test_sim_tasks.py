"""Simulated task scenes: randomisation, ground-truth success, scripted experts, resets."""

import numpy as np
import pytest

from robot_stack.config import load_task_config
from robot_stack.envs import make_sim_env
from robot_stack.reset.scripted import ResetTimeout, ScriptedReset
from robot_stack.sim.expert_runs import run_scripted_episodes


def test_cube_start_positions_stay_inside_the_configured_range(pick_cube_state_yaml):
    sim = make_sim_env(pick_cube_state_yaml)
    scene = sim.scene.scene
    rng = np.random.default_rng(0)
    positions = []
    for _ in range(200):
        sim.scene.randomise(rng)
        positions.append(sim.scene.cube_pose()[0])
    positions = np.array(positions)
    center, half = np.array(scene.cube_xy_center_m), np.array(scene.cube_xy_half_range_m)
    assert np.all(np.abs(positions[:, :2] - center) <= half + 1e-9)
    # The range is actually used, not collapsed to the centre.
    assert np.all(np.ptp(positions[:, :2], axis=0) > 1.5 * half)
    np.testing.assert_allclose(positions[:, 2], scene.cube_edge_m / 2)


def test_cube_counts_as_success_only_when_lifted_by_the_configured_height(pick_cube_state_yaml):
    sim = make_sim_env(pick_cube_state_yaml)
    sim.scene.randomise(np.random.default_rng(0))
    assert not sim.scene.status().success
    data = sim.world.data
    qpos = sim.world.model.jnt_qposadr[sim.world.model.joint("cube_joint").id]
    lift = sim.scene.scene.success_lift_m
    data.qpos[qpos + 2] = sim.scene.rest_height_m + lift * 0.9
    import mujoco

    mujoco.mj_forward(sim.world.model, data)
    assert not sim.scene.status().success
    data.qpos[qpos + 2] = sim.scene.rest_height_m + lift * 1.05
    mujoco.mj_forward(sim.world.model, data)
    status = sim.scene.status()
    assert status.success and status.metrics["cube_lift_m"] == pytest.approx(lift * 1.05)


def test_peg_beside_the_hole_is_not_an_insertion(peg_yaml):
    sim = make_sim_env(peg_yaml)
    sim.env.reset(seed=0)
    status = sim.scene.status()
    assert not status.success and status.metrics["insertion_depth_m"] < 0


def test_hole_clearance_in_the_model_matches_the_yaml(peg_yaml):
    sim = make_sim_env(peg_yaml)
    model = sim.world.model
    scene = sim.scene.scene
    peg_half_width = model.geom("peg").size[0]
    # Wall 0 is the +x wall: its inner face sits at the hole's inner half-width.
    wall = model.geom("hole_wall_0")
    inner_half_width = wall.pos[0] - wall.size[0]
    assert peg_half_width == pytest.approx(scene.peg_radius_m)
    assert inner_half_width - peg_half_width == pytest.approx(scene.hole_clearance_m)


@pytest.mark.parametrize("task", ["sim_pick_cube_state.yaml", "sim_peg_insertion.yaml"])
def test_scripted_expert_solves_ten_seeded_episodes(repo_root, task):
    config = load_task_config(repo_root / "hardware_configs" / "tasks" / task)
    report = run_scripted_episodes(config, 10, seed=100, noise_std=0.0, progress=False)
    assert report.success_rate >= 0.9, [(e.seed, e.metrics) for e in report.episodes if not e.success]


def test_noisy_scripted_teleoperator_still_solves_pick_cube(pick_cube_state_yaml):
    config = load_task_config(pick_cube_state_yaml)
    report = run_scripted_episodes(config, 5, seed=7, noise_std=0.1, progress=False)
    assert report.success_rate >= 0.8


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sim_pick_cube.yaml", "sim_peg_insertion.yaml"])
def test_scripted_expert_succeeds_in_95_percent_of_50_episodes(repo_root, task):
    config = load_task_config(repo_root / "hardware_configs" / "tasks" / task)
    report = run_scripted_episodes(config, 50, seed=0, noise_std=0.0, progress=False)
    assert report.success_rate >= 0.95


def test_seeded_episodes_replay_exactly(pick_cube_state_yaml):
    sim = make_sim_env(pick_cube_state_yaml)
    actions = np.random.default_rng(3).uniform(-1, 1, (15, sim.env.action_dim))

    def rollout():
        obs, _ = sim.env.reset(seed=42)
        states = [obs["state"]]
        for a in actions:
            states.append(sim.env.step(a)[0]["state"])
        return np.array(states)

    np.testing.assert_array_equal(rollout(), rollout())


def test_scripted_reset_lifts_releases_and_reaches_the_randomised_start(pick_cube_state_yaml):
    sim = make_sim_env(pick_cube_state_yaml)
    env, backend = sim.env, sim.backend
    env.reset(seed=5)
    for _ in range(40):  # grasp and lift the cube with the expert
        s = backend.read_state()
        expert = sim.expert.act(s.tcp_position_m, s.tcp_rotation, s.gripper_width_m)
        _, _, terminated, truncated, _ = env.step(expert[[0, 1, 2, 6]])  # the task controls translation + gripper
        if terminated or truncated:
            break
    assert backend.read_state().gripper_width_m < 0.05  # holding the cube
    config = env.config
    reset = ScriptedReset(config.task.reset, np.array(config.robot.home_joint_positions_rad), 0.08)
    rng = np.random.default_rng(0)
    lift_start_z = backend.read_state().tcp_position_m[2]
    replaced = []
    outcome = reset.run(backend, rng, between=lambda: replaced.append(backend.read_state()))
    at_between = replaced[0]
    assert at_between.tcp_position_m[2] > lift_start_z + 0.5 * config.task.reset.lift_before_reset_m
    assert at_between.gripper_width_m > 0.075  # opened before moving on
    assert np.linalg.norm(outcome.position_m - outcome.target_position_m) < 0.003
    offset = outcome.target_position_m - np.array(config.task.reset.tcp_position_m)
    assert np.all(np.abs(offset[:2]) <= config.task.reset.random_xy_range_m + 1e-9)


def test_reset_that_cannot_settle_in_time_says_how_far_off_it_is(pick_cube_state_yaml):
    sim = make_sim_env(pick_cube_state_yaml)
    config = sim.env.config
    tight = config.task.reset.model_copy(update={"timeout_s": 0.1})
    reset = ScriptedReset(tight, np.array(config.robot.home_joint_positions_rad), 0.08)
    with pytest.raises(ResetTimeout, match=r"position error \d+\.\d mm"):
        reset.move_to_start(sim.backend, np.random.default_rng(0))
