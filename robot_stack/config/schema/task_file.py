"""A resolved task file: every section together, the rules that span sections, and the
models of the files a task file names."""

from __future__ import annotations

from typing import Optional

from pydantic import model_validator

from robot_stack.config.schema.actor_section import ActorConfig
from robot_stack.config.schema.agent_section import AgentConfig
from robot_stack.config.schema.cameras_section import CamerasConfig
from robot_stack.config.schema.env_section import GymnasiumEnvConfig
from robot_stack.config.schema.primitives import StrictModel
from robot_stack.config.schema.robot_section import RobotConfig
from robot_stack.config.schema.ros_section import RosConfig
from robot_stack.config.schema.session_section import SessionConfig
from robot_stack.config.schema.task_section import (
    ActionScaleConfig,
    ObservationConfig,
    ResetConfig,
    SafetyBoxConfig,
    TaskSpec,
)
from robot_stack.config.schema.teleop_section import TeleopConfig
from robot_stack.config.schema.training_section import TrainingConfig


class TaskConfig(StrictModel):
    """A resolved task file: the robot, cameras, teleop device and session it names,
    with the task file's overrides applied.

    The env comes from one of two providers of the same contract (docs/environments.md): the
    project's Franka, simulated or real, which the ``robot`` section describes, or any gymnasium
    env, which the ``env`` section names (and then there is no robot section)."""

    robot: Optional[RobotConfig] = None
    env: Optional[GymnasiumEnvConfig] = None
    cameras: CamerasConfig = CamerasConfig()
    teleop: TeleopConfig = TeleopConfig()
    session: SessionConfig = SessionConfig()
    task: TaskSpec
    agent: AgentConfig = AgentConfig()
    training: TrainingConfig = TrainingConfig()
    actor: ActorConfig = ActorConfig()
    ros: RosConfig = RosConfig()

    @model_validator(mode="after")
    def _session_dirs_per_task(self) -> "TaskConfig":
        # Frozen model: the resolved section replaces the one validated, once, here.
        object.__setattr__(self, "session", self.session.for_task(self.task.name))
        return self

    @property
    def simulated(self) -> bool:
        """Whether the env runs faster than wall-clock time (a simulator), rather than at the
        robot's pace: the actor then free-runs, kept within reach of training."""
        if self.env is not None:
            return not self.env.real_time
        return self.robot.backend == "sim"

    def franka_only(self, what: str) -> Optional[str]:
        """Why ``what`` (a command, a node) cannot run this task, in one line; None when it can.
        Those that drive the project's Franka (its simulator, drivers, reward detectors, ROS cell,
        RLDG variants) cannot run a gymnasium env."""
        if self.env is None:
            return None
        source = f"factory {self.env.factory}" if self.env.factory is not None else f"id {self.env.id}"
        return (
            f"task '{self.task.name}' runs a gymnasium env ({source}), and {what} drives the project's Franka "
            "(a 'robot' section); a gymnasium task runs with `robot-stack session`, `learner`, `actor`, `evaluate` "
            "and `record-demos` (docs/environments.md)"
        )

    @model_validator(mode="after")
    def _consistent(self) -> "TaskConfig":
        if self.env is not None:
            self._gymnasium_consistent()
        elif self.robot is None:
            raise ValueError(
                "the task names no robot and no env: add a 'robot' section (the project's Franka, simulated or real) "
                "or an 'env' section (any gymnasium env)"
            )
        else:
            self._franka_consistent()
        if self.actor.sim_max_lead_env_steps <= self.training.min_online_transitions:
            raise ValueError(
                f"actor.sim_max_lead_env_steps ({self.actor.sim_max_lead_env_steps}) must exceed "
                f"training.min_online_transitions ({self.training.min_online_transitions}): a simulated actor "
                "would otherwise wait for training that waits for its data"
            )
        if self.training.stop_on == "deterministic_episodes" and self.actor.deterministic_every_episodes == 0:
            raise ValueError(
                "training.stop_on is 'deterministic_episodes' but actor.deterministic_every_episodes is 0: "
                "the actor would run no deterministic episodes to stop on"
            )
        return self

    def _gymnasium_consistent(self) -> None:
        """Refuse the Franka provider's settings in a gymnasium task: they would be silently ignored."""
        task, env = self.task, self.env
        franka_only = {
            "robot": self.robot is not None,
            "cameras": self.cameras != CamerasConfig(),
            "task.sim": task.sim is not None,
            "task.safety_box": task.safety_box != SafetyBoxConfig(),
            "task.reset": task.reset != ResetConfig(),
            "task.action_scale": task.action_scale != ActionScaleConfig(),
            "task.observation": task.observation != ObservationConfig(),
            "task.gripper_mode": task.gripper_mode != TaskSpec.model_fields["gripper_mode"].default,
            "task.policy_controls_rotation": task.policy_controls_rotation is not True,
            "task.reward.state_checks": bool(task.reward.state_checks),
        }
        given = [name for name, set_here in franka_only.items() if set_here]
        if given:
            raise ValueError(
                f"{', '.join(given)}: set for a gymnasium env (env.kind 'gymnasium'), but only the project's Franka "
                "uses it; declare the layout in env.observation and env.action, and remove it"
            )
        if task.reward.source != "sim_ground_truth":
            raise ValueError(
                f"task.reward.source is '{task.reward.source}'; a gymnasium env gives its own reward and "
                "info['success'], so leave the source at its default"
            )
        if self.teleop.kind == "spacemouse":
            raise ValueError(
                "teleop.kind 'spacemouse' drives the project's Franka; a gymnasium env takes its person's device "
                "through env.teleop (and teleop.kind 'none')"
            )
        if self.teleop.kind == "scripted" and env.expert is None:
            raise ValueError("teleop.kind 'scripted' needs env.expert: the scripted teleoperator is the env's expert")
        if self.teleop.kind == "scripted" and env.teleop is not None:
            raise ValueError(
                "teleop.kind 'scripted' and env.teleop both name who intervenes; keep one (teleop.kind 'none' with env.teleop)"
            )
        if env.action.gripper == "binary" and self.agent.gripper == "grasp_critic" and env.action.dim < 2:
            raise ValueError("env.action.dim must be at least 2 for a binary gripper with agent.gripper 'grasp_critic'")

    def _franka_consistent(self) -> None:
        missing = [c for c in self.task.observation.images if c not in self.cameras.cameras]
        if missing:
            raise ValueError(
                f"task.observation.images names camera(s) {missing} that the cameras file does not define "
                f"(defined: {sorted(self.cameras.cameras)})"
            )
        if self.robot.backend == "sim":
            if self.task.sim is None:
                raise ValueError("task.sim is missing: robot.backend 'sim' needs a simulated scene in task.sim")
            for name in self.task.observation.images:
                if self.cameras.cameras[name].kind != "sim":
                    raise ValueError(f"camera '{name}' is kind '{self.cameras.cameras[name].kind}'; a sim robot needs sim cameras")
        if self.robot.backend != "sim":
            used = dict.fromkeys(list(self.task.observation.images) + list(self.task.reward.classifier.cameras or ()))
            for name in used:
                if name in self.cameras.cameras and self.cameras.cameras[name].kind == "sim":
                    raise ValueError(
                        f"camera '{name}' is kind 'sim', which only the simulated robot renders; robot backend "
                        f"'{self.robot.backend}' needs realsense (or replay) cameras"
                    )
            if self.task.reward.source == "sim_ground_truth":
                raise ValueError(
                    "task.reward.source is 'sim_ground_truth', which only the simulator knows; a real robot needs "
                    "a learned success detector: source 'classifier' or 'vlm'"
                )
            if self.teleop.kind == "scripted":
                raise ValueError(
                    "teleop.kind 'scripted' drives the simulator's scripted expert; a real robot needs a person "
                    "with a device: kind 'spacemouse' (or 'none')"
                )
        if "object_position" in self.task.observation.state and self.robot.backend != "sim":
            raise ValueError(
                "task.observation.state lists 'object_position', which only the simulated robot provides; "
                "a real robot observes the object through its cameras"
            )
        if self.task.sim is not None and self.task.sim.scene.kind == "peg_insertion" and self.task.gripper_mode != "fixed_closed":
            raise ValueError("task.gripper_mode must be 'fixed_closed' for a peg_insertion scene (the peg is held)")


SECTION_MODELS: dict[str, type[StrictModel]] = {
    "robot": RobotConfig,
    "cameras": CamerasConfig,
    "teleop": TeleopConfig,
    "session": SessionConfig,
}
