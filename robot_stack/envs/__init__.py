"""The task's env, from either provider of the env contract (contract.py, docs/environments.md):
the Franka built from a task YAML, over injected hardware or the simulator, or a gymnasium env
the task names."""

from robot_stack.envs.contract import EnvContractError, check_env
from robot_stack.envs.factory import SimEnv, make_env, make_sim_env
from robot_stack.envs.franka_env import FrankaEnv, NonFiniteActionError, action_from_reading, action_from_teleop

__all__ = [
    "EnvContractError",
    "FrankaEnv",
    "NonFiniteActionError",
    "SimEnv",
    "action_from_reading",
    "action_from_teleop",
    "check_env",
    "make_env",
    "make_sim_env",
]
