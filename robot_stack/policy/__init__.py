"""Policy networks (torch), shared by the actor and the learner: observation encoders,
the tanh-Gaussian actor, the critics and ``Policy``, what an actor runs."""

from robot_stack.policy.actor import ActionLayout, PolicyNetworks, TanhGaussianActor
from robot_stack.policy.critics import GRIPPER_COMMANDS, GraspCritic
from robot_stack.policy.encoders import (
    ImageEncoder,
    ObservationEncoder,
    ResNet10,
    StateEncoder,
    load_trunk_weights,
    random_crop,
    random_crop_observation,
    save_trunk_weights,
)
from robot_stack.policy.layers import layer_norm_mlp
from robot_stack.policy.policy import Policy
from robot_stack.policy.weights_io import WeightsMismatchError

__all__ = [
    "GRIPPER_COMMANDS",
    "ActionLayout",
    "GraspCritic",
    "ImageEncoder",
    "ObservationEncoder",
    "Policy",
    "PolicyNetworks",
    "ResNet10",
    "StateEncoder",
    "TanhGaussianActor",
    "WeightsMismatchError",
    "layer_norm_mlp",
    "load_trunk_weights",
    "random_crop",
    "random_crop_observation",
    "save_trunk_weights",
]
