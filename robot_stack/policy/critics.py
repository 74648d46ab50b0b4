"""The critics: the ensemble of Q(z, a) the learner trains for the continuous action, and the
grasp critic, a Q-head over {open, stay, close} that picks a binary gripper's command.

    Q_i(z, a),  i = 1..E          (the learner's update: learner/sac.py)
    gripper = argmax_g Q_grasp(z, g),  g in {open: -1, stay: 0, close: +1}

Both are HIL-SERL's LayerNorm MLPs (Linear -> LayerNorm -> tanh per hidden layer, Xavier-uniform
weights) with their Q heads in float32 under bfloat16 autocast (``robot_stack.policy.layers``).
The grasp critic is part of the policy an actor runs (``PolicyNetworks``); the ensemble stays
on the learner.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from robot_stack.policy.layers import affine_tanh, layer_norm_mlp, xavier_linear

# The grasp critic's action index -> the env's gripper command.
GRIPPER_COMMANDS = (-1.0, 0.0, 1.0)  # open, stay, close


class CriticEnsemble(nn.Module):
    """E independently initialised critics Q_i(z, a), each a LayerNorm MLP on concat(features,
    action) (Linear -> LayerNorm -> tanh per hidden layer, then a float32 Q head):
    (B, F), (B, A) -> (E, B).

    The members' weights are stacked, so one matmul per layer computes all of them (the first
    layer as one wide matmul, the others batched): with E = 2 this halves the critic's kernel
    calls, which at batch 256 on a CPU cost more than their arithmetic."""

    def __init__(self, feature_dim: int, action_dim: int, hidden_dims: Sequence[int], size: int):
        super().__init__()
        self.size = size
        widths = [feature_dim + action_dim, *hidden_dims]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.norm_weights = nn.ParameterList()
        self.norm_biases = nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            self.weights.append(nn.Parameter(torch.stack([self._xavier(fan_in, fan_out) for _ in range(size)])))
            self.biases.append(nn.Parameter(torch.zeros(size, 1, fan_out)))
            self.norm_weights.append(nn.Parameter(torch.ones(size, 1, fan_out)))
            self.norm_biases.append(nn.Parameter(torch.zeros(size, 1, fan_out)))
        self.q_weight = nn.Parameter(torch.stack([self._xavier(widths[-1], 1) for _ in range(size)]))
        self.q_bias = nn.Parameter(torch.zeros(size, 1, 1))

    @staticmethod
    def _xavier(fan_in: int, fan_out: int) -> torch.Tensor:
        # flax/SERL default_init, as xavier_linear: variance scaling, fan_avg, uniform.
        return nn.init.xavier_uniform_(torch.empty(fan_out, fan_in)).t()

    def forward(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        x = torch.cat([features, actions.to(features.dtype)], dim=-1)
        size, batch = self.size, x.shape[0]
        for index, (weight, bias, norm_weight, norm_bias) in enumerate(
            zip(self.weights, self.biases, self.norm_weights, self.norm_biases)
        ):
            if index == 0:  # one input for every member: one (B, in) x (in, E * out) matmul
                x = (x @ weight.permute(1, 0, 2).reshape(weight.shape[1], -1)).view(batch, size, -1).transpose(0, 1) + bias
            else:
                x = torch.baddbmm(bias, x, weight)
            x = affine_tanh(F.layer_norm(x, x.shape[-1:]), norm_weight, norm_bias)
        with torch.autocast(x.device.type, enabled=False):  # Q-values in float32
            return torch.baddbmm(self.q_bias, x.to(self.q_weight.dtype), self.q_weight).squeeze(-1)


class GraspCritic(nn.Module):
    """Q(z, g) for the 3 gripper choices: (B, feature_dim) -> (B, 3)."""

    def __init__(self, feature_dim: int, hidden_dims: Sequence[int]):
        super().__init__()
        self.trunk = layer_norm_mlp(feature_dim, hidden_dims)
        self.q = xavier_linear(hidden_dims[-1], len(GRIPPER_COMMANDS), full_precision=True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.q(self.trunk(features))


