"""A resolved task file: every section together, the rules that span sections, and the
models of the files a task file names."""

from __future__ import annotations

from pydantic import model_validator

from robot_stack.config.schema.actor_section import ActorConfig
from robot_stack.config.schema.agent_section import AgentConfig
from robot_stack.config.schema.cameras_section import CamerasConfig
from robot_stack.config.schema.primitives import StrictModel
from robot_stack.config.schema.robot_section import RobotConfig
from robot_stack.config.schema.ros_section import RosConfig
from robot_stack.config.schema.session_section import SessionConfig
from robot_stack.config.schema.task_section import TaskSpec
from robot_stack.config.schema.teleop_section import TeleopConfig
from robot_stack.config.schema.training_section import TrainingConfig


class TaskConfig(StrictModel):
    """A resolved task file: the robot, cameras, teleop device and session it names,
    with the task file's overrides applied."""

    robot: RobotConfig
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

    @model_validator(mode="after")
    def _consistent(self) -> "TaskConfig":
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
        if self.actor.sim_max_lead_env_steps <= self.training.min_online_transitions:
            raise ValueError(
                f"actor.sim_max_lead_env_steps ({self.actor.sim_max_lead_env_steps}) must exceed "
                f"training.min_online_transitions ({self.training.min_online_transitions}): a simulated actor "
                "would otherwise wait for training that waits for its data"
            )
        if self.task.sim is not None and self.task.sim.scene.kind == "peg_insertion" and self.task.gripper_mode != "fixed_closed":
            raise ValueError("task.gripper_mode must be 'fixed_closed' for a peg_insertion scene (the peg is held)")
        if self.training.stop_on == "deterministic_episodes" and self.actor.deterministic_every_episodes == 0:
            raise ValueError(
                "training.stop_on is 'deterministic_episodes' but actor.deterministic_every_episodes is 0: "
                "the actor would run no deterministic episodes to stop on"
            )
        return self


SECTION_MODELS: dict[str, type[StrictModel]] = {
    "robot": RobotConfig,
    "cameras": CamerasConfig,
    "teleop": TeleopConfig,
    "session": SessionConfig,
}
