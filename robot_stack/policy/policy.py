"""``Policy``: what an actor runs. One observation in (the env's numpy format), one env
action out, on the CPU, with weights the learner published.

    continuous = tanh(mu)                       deterministic
               = tanh(mu + sigma * eps), eps ~ N(0, I) from the caller's rng   otherwise
    gripper    = GRIPPER_COMMANDS[argmax Q_grasp]  (a uniform choice with prob. grasp_epsilon
                                                    when not deterministic)

All randomness comes from the ``rng`` argument, so an actor seeded once replays exactly.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from robot_stack.config.schema import AgentConfig
from robot_stack.data.spec import flatten_observation
from robot_stack.policy.actor import ActionLayout, PolicyNetworks
from robot_stack.policy.critics import GRIPPER_COMMANDS
from robot_stack.policy.layers import tanh
from robot_stack.policy.weights_io import cpu_weights, load_weights_strict


class Policy:
    def __init__(self, networks: PolicyNetworks, layout: ActionLayout, observation_spec: Mapping, grasp_epsilon: float):
        self.networks = networks.eval()
        self.layout = layout
        self.observation_spec = dict(observation_spec)
        self.grasp_epsilon = grasp_epsilon

    @classmethod
    def build(cls, agent: AgentConfig, observation_spec: Mapping, env_action_dim: int, binary_gripper: bool) -> "Policy":
        """Randomly initialised; ``load_weights`` fills it. The pretrained trunk file is not read:
        the learner's weights carry the trunk, and the actor's machine need not have the file."""
        layout = ActionLayout.of(agent, env_action_dim, binary_gripper)
        networks = PolicyNetworks(agent, observation_spec, layout, load_pretrained=False)
        return cls(networks, layout, observation_spec, agent.grasp_epsilon)

    def load_weights(self, tensors: Mapping[str, torch.Tensor]) -> None:
        load_weights_strict(self.networks, tensors, "policy weights")

    def weights(self) -> dict[str, torch.Tensor]:
        return cpu_weights(self.networks)

    def _batch(self, observation: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        flat = flatten_observation(observation)
        batch = {}
        for key, spec in self.observation_spec.items():
            if key not in flat:
                raise KeyError(f"observation has no '{key}' (has {sorted(flat)}); the policy was built for {sorted(self.observation_spec)}")
            value = np.asarray(flat[key])
            if value.shape != tuple(spec.shape):
                raise ValueError(f"observation '{key}' has shape {value.shape}; the policy expects {tuple(spec.shape)}")
            batch[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.dtype(spec.dtype)))[None]
        return batch

    def act(self, observation: Mapping[str, Any], deterministic: bool, rng: np.random.Generator) -> np.ndarray:
        """The env action (A_env,) float32 in [-1, 1]."""
        with torch.inference_mode():
            features = self.networks.encoder(self._batch(observation))
            mean, log_std = self.networks.actor(features)
            if not deterministic:
                noise = torch.from_numpy(rng.standard_normal(mean.shape).astype(np.float32))
                mean = mean + log_std.exp() * noise
            action = tanh(mean)[0].numpy()
            if self.layout.grasp_critic:
                if not deterministic and rng.random() < self.grasp_epsilon:
                    choice = int(rng.integers(len(GRIPPER_COMMANDS)))
                else:
                    choice = int(self.networks.grasp_critic(features)[0].argmax())
                action = np.append(action, GRIPPER_COMMANDS[choice])
        return np.clip(action, -1.0, 1.0).astype(np.float32)
