"""Build a task's env from its YAML: a gymnasium env the task names, or the Franka with its
backend, cameras, success source and reset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.config import load_task_config
from robot_stack.config.schema import TaskConfig
from robot_stack.control.from_config import safety_box_from_config
from robot_stack.envs.franka_env import FrankaEnv, SuccessReading
from robot_stack.hardware.interfaces import RobotState


class GroundTruthSuccess:
    """Success read from the simulator's object poses (sim_ground_truth reward source)."""

    def __init__(self, scene):
        self.scene = scene

    def evaluate(self, observation: dict[str, Any], state: RobotState) -> SuccessReading:
        status = self.scene.status()
        return SuccessReading(status.success, status.metrics)


@dataclass
class SimEnv:
    """A simulated task env and the simulator parts behind it (for experts and tests)."""

    env: FrankaEnv
    world: Any  # robot_stack.sim.world.SimWorld
    backend: Any  # robot_stack.sim.backend.SimFrankaBackend
    scene: Any  # robot_stack.sim.tasks.PickCube | PegInsertion
    expert: Any  # robot_stack.sim.tasks.PickCubeExpert | PegInsertionExpert


def make_sim_env(config: TaskConfig | str | Path, render_mode: str | None = None) -> SimEnv:
    from robot_stack.reset.scripted import ScriptedReset
    from robot_stack.sim.backend import SimFrankaBackend
    from robot_stack.sim.cameras import SimCameras
    from robot_stack.sim.tasks import make_expert, make_task_scene
    from robot_stack.sim.world import SimWorld

    if not isinstance(config, TaskConfig):
        config = load_task_config(config)
    if config.robot is None or config.robot.backend != "sim" or config.task.sim is None:
        runs_on = f"robot backend '{config.robot.backend}'" if config.robot is not None else "a gymnasium env"
        raise ValueError(
            f"task '{config.task.name}' runs on {runs_on}; "
            "a simulated env needs backend 'sim' and a task 'sim' section"
        )
    world = SimWorld(config.robot, config.task.sim)
    backend = SimFrankaBackend(world, safety_box_from_config(config.task))
    scene = make_task_scene(world, config.task)
    expert = make_expert(scene, config.task)
    ground_truth = GroundTruthSuccess(scene)
    success_source, reward_cameras = ground_truth, ()
    if config.task.reward.source != "sim_ground_truth":
        # A learned detector gives the reward, as on a real robot; the simulator's own
        # answer rides along as the true_success metric (for evaluation only).
        from robot_stack.reward.detector import LearnedSuccess, SuccessDetector

        success_source = LearnedSuccess(SuccessDetector.from_task(config.task, config.cameras), ground_truth=ground_truth)
        reward_cameras = success_source.cameras
    cameras = None
    names = tuple(config.task.observation.images)
    if names or reward_cameras or render_mode == "rgb_array":
        names = tuple(dict.fromkeys(names + reward_cameras)) or tuple(config.cameras.cameras)
        cameras = SimCameras(world, config.cameras.cameras, names)
    reset = ScriptedReset(config.task.reset, np.array(config.robot.home_joint_positions_rad), config.robot.gripper.max_width_m)
    held_width = config.robot.gripper.min_width_m if config.task.gripper_mode == "fixed_closed" else None

    def reset_routine(rng: np.random.Generator):
        # In simulation the scene is restored rather than cleared by the lift-and-open
        # part of the routine: a seed then reproduces an episode exactly. The arm still
        # makes the routine's joint move home and Cartesian move to the randomised start.
        world.restore_initial_state(gripper_width_m=held_width)
        backend.recover()
        if held_width is not None:
            backend.set_gripper(held_width)
        expert.reset()
        scene.randomise(rng)
        outcome = reset.move_to_start(backend, rng)
        return outcome.position_m, outcome.rotation

    env = FrankaEnv(
        config, backend, cameras, success_source, reset_routine,
        render_mode=render_mode, object_position=scene.object_position, reward_cameras=reward_cameras,
    )
    return SimEnv(env=env, world=world, backend=backend, scene=scene, expert=expert)


def wait_for_operator(backend, timeout_s: float, prompt: str, stream=None) -> None:
    """Block until the operator presses Enter on the terminal (the arm holds meanwhile)."""
    import select
    import sys
    import time

    stream = stream if stream is not None else sys.stdin
    if not stream.isatty():
        raise RuntimeError(
            "reset mode 'human' waits for the operator to press Enter on a terminal, and this process has none; "
            "run it from a terminal, or run the cell as ROS 2 nodes (the reset node's reset/operator_done service)"
        )
    print(prompt, flush=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        backend.hold()
        ready, _, _ = select.select([stream], [], [], 0.2)
        if ready:
            stream.readline()
            return
    raise TimeoutError(f"the operator did not confirm the reset within {timeout_s:.0f} s")


def make_real_env(config: TaskConfig, render_mode: str | None = None) -> FrankaEnv:
    """A task on the real robot: the arm through the driver ``robot.driver`` names, the
    RealSense cameras the observation and the reward model need, the learned success
    detector, and the scripted reset (then, in reset mode 'human', the operator's go)."""
    from robot_stack.hardware.devices import make_cameras, make_robot_backend
    from robot_stack.reset.scripted import ScriptedReset
    from robot_stack.reward.detector import LearnedSuccess, SuccessDetector

    success = LearnedSuccess(SuccessDetector.from_task(config.task, config.cameras))
    names = tuple(dict.fromkeys(tuple(config.task.observation.images) + success.cameras))
    if not names and render_mode == "rgb_array":
        names = tuple(config.cameras.cameras)
    backend = make_robot_backend(config.robot, config.task)
    cameras = None
    try:
        cameras = make_cameras(config.cameras, names)
        routine = ScriptedReset(
            config.task.reset, np.array(config.robot.home_joint_positions_rad), config.robot.gripper.max_width_m
        )

        def reset_routine(rng: np.random.Generator):
            outcome = routine.run(backend, rng)
            if config.task.reset.mode == "human":
                wait_for_operator(
                    backend, config.ros.reset_timeout_s,
                    f"[{config.task.name}] reset: set the scene up for the next episode, then press Enter",
                )
                state = backend.read_state()
                return state.tcp_position_m, state.tcp_rotation
            return outcome.position_m, outcome.rotation

        return FrankaEnv(
            config, backend, cameras, success, reset_routine, render_mode=render_mode, reward_cameras=success.cameras
        )
    except BaseException:
        if cameras is not None:
            cameras.close()
        backend.close()
        raise


def make_env(config: TaskConfig | str | Path, render_mode: str | None = None):
    """The env a task YAML describes, from either provider of the env contract: the gymnasium
    env its 'env' section names, or the Franka, simulated (robot backend 'sim') or real ('franka')."""
    if not isinstance(config, TaskConfig):
        config = load_task_config(config)
    if config.env is not None:
        from robot_stack.envs.gymnasium_env import make_gymnasium_env

        return make_gymnasium_env(config, render_mode)
    if config.robot.backend == "sim":
        return make_sim_env(config, render_mode).env
    return make_real_env(config, render_mode)
