"""The gymnasium env built from a task YAML, over injected hardware or the simulator."""

from robot_stack.envs.factory import SimEnv, make_env, make_sim_env
from robot_stack.envs.franka_env import FrankaEnv, NonFiniteActionError, action_from_teleop

__all__ = ["FrankaEnv", "NonFiniteActionError", "SimEnv", "action_from_teleop", "make_env", "make_sim_env"]
