"""The policy's actor: the tanh-squashed Gaussian over the continuous action, on top of the
observation encoder, and ``PolicyNetworks``, the encoder + actor (+ the grasp critic of
``robot_stack.policy.critics`` for a binary gripper) that a policy runs.

    a = tanh(u),  u ~ N(mu(z), sigma(z)^2),  log_std clamped to [log_std_min, log_std_max]
    log pi(a|z) = sum_i [ log N(u_i; mu_i, sigma_i) - log(1 - tanh(u_i)^2) ]

MLPs are HIL-SERL's: Linear -> LayerNorm -> tanh per hidden layer, Xavier-uniform weights. The
output heads compute in float32 under bfloat16 autocast (``robot_stack.policy.layers``).
``PolicyNetworks`` is one module with the parameter names both sides use: the learner's agent
trains one and exports its ``state_dict``; an actor's ``Policy`` loads it unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from robot_stack.config.schema import AgentConfig
from robot_stack.policy.critics import GraspCritic
from robot_stack.policy.encoders import ObservationEncoder
from robot_stack.policy.layers import layer_norm_mlp, tanh, xavier_linear

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class TanhGaussianActor(nn.Module):
    def __init__(self, feature_dim: int, action_dim: int, hidden_dims: Sequence[int], log_std_min: float, log_std_max: float):
        super().__init__()
        self.trunk = layer_norm_mlp(feature_dim, hidden_dims)
        self.mean = xavier_linear(hidden_dims[-1], action_dim, full_precision=True)
        self.log_std = xavier_linear(hidden_dims[-1], action_dim, full_precision=True)
        # A clamp, not a tanh rescale: as in SERL, an untrained actor starts at std ~ exp(0) = 1
        # and explores broadly, instead of at the middle of the range.
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of the pre-squash Gaussian."""
        h = self.trunk(features)
        return self.mean(h), self.log_std(h).clamp(self.log_std_min, self.log_std_max)

    def sample(self, features: torch.Tensor, generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action in (-1, 1)^A and its log-probability (B,)."""
        mean, log_std = self(features)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return squash(mean, log_std, noise)

    def mode(self, features: torch.Tensor) -> torch.Tensor:
        return tanh(self(features)[0])


def squash(mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """u = mean + std * noise, a = tanh(u), log pi(a) with the change of variables.

    log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)): exact, and finite where tanh(u)
    rounds to +-1 in float32 (|u| > ~9), where the textbook form gives log(0).
    """
    u = mean + log_std.exp() * noise
    gaussian_log_prob = -0.5 * noise.pow(2) - log_std - LOG_SQRT_2PI
    log_det_jacobian = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
    return tanh(u), (gaussian_log_prob - log_det_jacobian).sum(-1)


@dataclass(frozen=True)
class ActionLayout:
    """How the env action splits into what the actor outputs and what the grasp critic picks.

    binary gripper + grasp_critic: env (A,) = actor (A-1,) + gripper command from the grasp critic
    binary gripper + continuous:   env (A,) = actor (A,), the gripper dim included
    no gripper dim (fixed_closed): env (A,) = actor (A,)
    """

    env_action_dim: int
    continuous_dim: int
    grasp_critic: bool

    @classmethod
    def of(cls, agent: AgentConfig, env_action_dim: int, binary_gripper: bool) -> "ActionLayout":
        grasp = binary_gripper and agent.gripper == "grasp_critic"
        if env_action_dim < (2 if grasp else 1):
            raise ValueError(f"env action dim {env_action_dim} is too small for gripper mode '{agent.gripper}'")
        return cls(env_action_dim, env_action_dim - 1 if grasp else env_action_dim, grasp)

    def split(self, env_actions: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(B, A_env) -> continuous (B, A_cont) and, with a grasp critic, the gripper index (B,)
        in {0, 1, 2} from the executed command -1 / 0 / +1."""
        if not self.grasp_critic:
            return env_actions, None
        index = torch.round(env_actions[:, -1]).long().clamp_(-1, 1) + 1
        return env_actions[:, :-1], index


class PolicyNetworks(nn.Module):
    """encoder + actor (+ grasp critic): the trained weights of a policy, one name space."""

    def __init__(self, agent: AgentConfig, observation_spec: Mapping, layout: ActionLayout, load_pretrained: bool = True):
        super().__init__()
        self.encoder = ObservationEncoder(agent, observation_spec, load_pretrained)
        self.actor = TanhGaussianActor(
            self.encoder.output_dim, layout.continuous_dim, agent.hidden_dims, agent.log_std_min, agent.log_std_max
        )
        self.grasp_critic: Optional[GraspCritic] = (
            GraspCritic(self.encoder.output_dim, agent.hidden_dims) if layout.grasp_critic else None
        )
