"""The YAML schema: the single source of truth for every tunable of a task session.

One module per section of a task file (``robot_section``, ``cameras_section``,
``teleop_section``, ``session_section``, ``task_section`` with its ``reward_section`` and
``sim_section``, ``env_section`` (a gymnasium env instead of the robot), ``agent_section``
and the ``encoder_section`` it shares with the reward classifier, ``training_section``,
``actor_section``, ``ros_section``), the models they are built from (``primitives``) and the whole file with its cross-section rules (``task_file``).
Import the models from here.

Units live in the field names (``_m``, ``_rad``, ``_hz``, ``_n_per_m``...). Every default
is one that is safe on a real FR3; bounds are the ones we accept on real hardware.
Unknown keys are errors everywhere (``extra="forbid"``): a typo must never fall back to a
default silently.
"""

from robot_stack.config.schema.actor_section import ActorConfig, ConsoleConfig
from robot_stack.config.schema.agent_section import AgentConfig
from robot_stack.config.schema.cameras_section import CameraConfig, CamerasConfig
from robot_stack.config.schema.env_section import EnvActionLayout, EnvObservationLayout, GymnasiumEnvConfig
from robot_stack.config.schema.encoder_section import EncoderConfig, EncoderPretrainConfig
from robot_stack.config.schema.primitives import Float, Int, StrictModel, Vec2, Vec3, Vec6, Vec7
from robot_stack.config.schema.reward_section import (
    ClassifierConfig,
    ClassifierTrainingConfig,
    RewardConfig,
    StateCheckConfig,
    StateQuantity,
    VlmConfig,
)
from robot_stack.config.schema.robot_section import (
    FR3_HOME_RAD,
    FR3_JOINT_LOWER_RAD,
    FR3_JOINT_UPPER_RAD,
    FR3_TORQUE_LIMITS_NM,
    CollisionConfig,
    GripperConfig,
    ImpedanceConfig,
    LoadConfig,
    RobotConfig,
)
from robot_stack.config.schema.ros_section import RosConfig
from robot_stack.config.schema.session_section import SessionConfig, TransportConfig
from robot_stack.config.schema.sim_section import PegInsertionScene, PickCubeScene, SimConfig, SimScene
from robot_stack.config.schema.task_file import SECTION_MODELS, TaskConfig
from robot_stack.config.schema.task_section import (
    ActionScaleConfig,
    ObservationConfig,
    ResetConfig,
    SafetyBoxConfig,
    StateKey,
    TaskSpec,
)
from robot_stack.config.schema.teleop_section import ScriptedInterventionConfig, TeleopButtonAction, TeleopConfig
from robot_stack.config.schema.training_section import InitFromConfig, TrainingConfig

__all__ = [
    "FR3_HOME_RAD",
    "FR3_JOINT_LOWER_RAD",
    "FR3_JOINT_UPPER_RAD",
    "FR3_TORQUE_LIMITS_NM",
    "SECTION_MODELS",
    "ActionScaleConfig",
    "ActorConfig",
    "ConsoleConfig",
    "AgentConfig",
    "CameraConfig",
    "CamerasConfig",
    "ClassifierConfig",
    "ClassifierTrainingConfig",
    "CollisionConfig",
    "EncoderConfig",
    "EnvActionLayout",
    "EnvObservationLayout",
    "EncoderPretrainConfig",
    "Float",
    "GripperConfig",
    "GymnasiumEnvConfig",
    "ImpedanceConfig",
    "InitFromConfig",
    "Int",
    "LoadConfig",
    "ObservationConfig",
    "PegInsertionScene",
    "PickCubeScene",
    "ResetConfig",
    "RewardConfig",
    "RobotConfig",
    "RosConfig",
    "SafetyBoxConfig",
    "ScriptedInterventionConfig",
    "SessionConfig",
    "SimConfig",
    "SimScene",
    "StateCheckConfig",
    "StateKey",
    "StateQuantity",
    "StrictModel",
    "TaskConfig",
    "TaskSpec",
    "TeleopButtonAction",
    "TeleopConfig",
    "TrainingConfig",
    "TransportConfig",
    "Vec2",
    "Vec3",
    "Vec6",
    "Vec7",
    "VlmConfig",
]
