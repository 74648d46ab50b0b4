"""SAC as HIL-SERL runs it (RLPD-style: LayerNorm critics, an ensemble, a high critic-to-actor
ratio), with its double-DQN grasp critic for a binary gripper.

One learner step (``update``), in order:

  critic_actor_ratio times, each on its own batch (s, a, r, s', terminated, gripper_changed):
    s, s' <- augment(s), augment(s')                                (images: random crop, pad 4;
                                                                    cached trunk features: a
                                                                    feature-map shift, or the
                                                                    replay picked a stored crop)
    a' ~ pi(.|s')
    y    = r + gamma (1 - terminated) min_{i in K} Q'_i(s', a')     (K: critic_subsample_size
                                                                    random critics, all if None;
                                                                    minus alpha log pi(a'|s')
                                                                    if backup_entropy)
    L_Q  = mean_{i, batch} (Q_i(s, a) - y)^2                         -> critics + encoder
    g'   = argmax_g Q_grasp(s', g);  y_g = r + penalty * gripper_changed
                                       + gamma (1 - terminated) Q'_grasp(s', g')
    L_g  = mean (Q_grasp(s, g) - y_g)^2                              -> grasp critic
    targets <- (1 - tau) targets + tau online
  then once, on the last batch:
    a ~ pi(.|s) (reparameterised)
    L_pi    = mean (alpha log pi(a|s) - mean_i Q_i(s, a))            -> actor
    L_alpha = mean -alpha (log pi(a|s) + H_target)                   -> log alpha

A truncated episode (time limit) still bootstraps: only ``terminated`` zeroes the mask.

Who trains what (DrQ/SERL): the encoder belongs to the critic. The critic loss trains its
trainable parts (with a frozen ResNet trunk: the spatial embeddings, bottleneck and state
layers); the actor and the grasp critic read its output detached. Target networks: a copy
of the encoder, the critics and the grasp critic, soft-updated with tau.

Cached features (``learner/features.py``): with a frozen trunk the replay holds the trunk's
feature maps in place of images, so an update runs only what follows the trunk; the batch's
"images/<camera>" entries are then those maps (float16), not pixels.

Precision and speed: with ``mixed_precision`` the update runs under bfloat16 autocast where the
hardware computes bfloat16 natively (CUDA, AVX-512 BF16 CPUs): matmuls and convolutions in
bfloat16, weights, Q-values, action heads and losses in float32 (``robot_stack.policy.layers``).
With ``compile`` the networks' forwards go through torch.compile on CUDA.
"""

from __future__ import annotations

import contextlib
import copy
import math
import types
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from robot_stack.config.schema import AgentConfig
from robot_stack.data.spec import IMAGE_PREFIX
from robot_stack.policy.actor import ActionLayout, PolicyNetworks, TanhGaussianActor
from robot_stack.policy.critics import CriticEnsemble, GraspCritic
from robot_stack.policy.encoders import (
    RESNET10_STRIDE,
    ImageHead,
    ResNet10,
    StateEncoder,
    random_crop_observation,
    random_feature_shift,
)
from robot_stack.policy.layers import compute_autocast
from robot_stack.policy.weights_io import cpu_weights, load_weights_strict

# What ``update`` reads from a batch (learner.replay.Batch has these and ``interventions``).
BATCH_FIELDS = ("observations", "next_observations", "actions", "rewards", "terminated", "gripper_changed")


class Temperature(nn.Module):
    """alpha = exp(log_alpha): learned in log space so it stays positive."""

    def __init__(self, initial: float):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(math.log(initial)))

    def forward(self) -> torch.Tensor:
        return self.log_alpha.exp()


@contextlib.contextmanager
def _no_parameter_grads(module: nn.Module) -> Iterator[None]:
    """Gradients flow through ``module`` to its inputs but skip its own weights (the actor
    loss needs dQ/da, not dQ/dtheta: computing the latter is wasted work)."""
    parameters = [p for p in module.parameters() if p.requires_grad]
    for p in parameters:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in parameters:
            p.requires_grad_(True)


def _step(optimizers: Sequence[torch.optim.Optimizer], losses: Sequence[torch.Tensor]) -> None:
    """Each optimiser minimises its loss. The losses reach disjoint parameters (the grasp critic
    and the actor read detached features, the temperature a detached log pi), so the gradient of
    their sum is each loss's own: one backward pass instead of one per loss."""
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    sum(losses).backward()
    for optimizer in optimizers:
        optimizer.step()


def resolve_device(device: Union[str, torch.device, None], agent: AgentConfig) -> torch.device:
    name = str(device) if device is not None else agent.device
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class SACAgent:
    """Build with ``create``; ``update(batch)`` trains; ``policy_weights()`` is what actors load."""

    def __init__(self, config: AgentConfig, layout: ActionLayout, discount: float, networks: PolicyNetworks, device: torch.device, generator: torch.Generator):
        self.config, self.layout, self.discount, self.device = config, layout, discount, device
        self.networks = networks  # encoder + actor + grasp critic: the Policy's parameter names
        self.encoder, self.actor, self.grasp_critic = networks.encoder, networks.actor, networks.grasp_critic
        self.critic = CriticEnsemble(self.encoder.output_dim, layout.continuous_dim, config.hidden_dims, config.critic_ensemble_size).to(device)
        self.temperature = Temperature(config.temperature_init).to(device)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False).eval()
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False).eval()
        self.target_grasp_critic = copy.deepcopy(self.grasp_critic).requires_grad_(False).eval() if layout.grasp_critic else None
        self.target_entropy = config.target_entropy if config.target_entropy is not None else -layout.continuous_dim / 2
        self.generator = generator

        trainable_encoder = [p for p in self.encoder.parameters() if p.requires_grad]
        self.optimizers = {
            "critic": torch.optim.Adam([*self.critic.parameters(), *trainable_encoder], lr=config.critic_lr, fused=True),
            "actor": torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr, fused=True),
            "temperature": torch.optim.Adam(self.temperature.parameters(), lr=config.temperature_lr, fused=True),
        }
        if layout.grasp_critic:
            self.optimizers["grasp_critic"] = torch.optim.Adam(self.grasp_critic.parameters(), lr=config.grasp_critic_lr, fused=True)
        self._online_params, self._target_params = self._target_pairs()
        self.networks.train()
        if config.compile and device.type == "cuda":
            self._compile()

    @classmethod
    def create(
        cls,
        agent_config: AgentConfig,
        observation_spec: Mapping,
        env_action_dim: int,
        binary_gripper: bool,
        discount: float,
        device: Union[str, torch.device, None] = None,
        seed: Optional[int] = None,
    ) -> "SACAgent":
        """``device`` None follows agent_config.device. ``seed`` None draws the initial weights
        and the agent's generator from torch's global RNG (seed that for a reproducible run)."""
        device = resolve_device(device, agent_config)
        layout = ActionLayout.of(agent_config, env_action_dim, binary_gripper)
        with torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext():
            if seed is not None:
                torch.manual_seed(seed)
            networks = PolicyNetworks(agent_config, observation_spec, layout).to(device)
            generator = torch.Generator(device).manual_seed(int(torch.randint(2**62, ())))
            return cls(agent_config, layout, discount, networks, device, generator)

    # ----------------------------------------------------------------- the learner step

    def update(self, batches: Union[Any, Sequence[Any]]) -> dict[str, float]:
        """One learner step. ``batches``: a list of critic_actor_ratio batches (HIL-SERL: a fresh
        batch per critic update; the actor uses the last), or one batch, then reused by every
        critic update with fresh crops. A batch is ``learner.replay.Batch`` or anything with
        its fields (observations, actions, rewards, terminated, next_observations,
        interventions, gripper_changed)."""
        if isinstance(batches, (list, tuple)):
            if len(batches) != self.config.critic_actor_ratio:
                raise ValueError(f"update got {len(batches)} batches; agent.critic_actor_ratio is {self.config.critic_actor_ratio}")
            batches = [self._on_device(batch) for batch in batches]
        else:
            batches = [self._on_device(batches)] * self.config.critic_actor_ratio
        self.networks.train()
        critic_metrics = [self._critic_step(batch) for batch in batches]
        actor_metrics = self._actor_step(*critic_metrics[-1][1])
        metrics = {key: torch.stack([m[key] for m, _ in critic_metrics]).mean() for key in critic_metrics[0][0]}
        metrics.update(actor_metrics)
        return dict(zip(metrics, torch.stack(list(metrics.values())).tolist()))  # one device sync

    def _critic_step(self, batch: Any) -> tuple[dict[str, torch.Tensor], tuple]:
        actions, grasp_actions = self.layout.split(batch.actions)
        r, gamma = batch.rewards, self.discount
        mask = 1.0 - batch.terminated  # a truncated episode still bootstraps

        # Critics: y = r + gamma * mask * min_K Q'(s', a'),  a' ~ pi(.|s')
        with self._autocast():
            if self.encoder.cache_features:
                obs, next_obs = self._augment_features(batch.observations), self._augment_features(batch.next_observations)
                obs_maps = obs
            else:
                obs, next_obs = self._augment(batch.observations), self._augment(batch.next_observations)
                obs_maps = self.encoder.trunk_features(obs)
            z = self.encoder.embed(obs_maps)  # the critic's loss is what trains the encoder
            with torch.no_grad():
                z_next, z_next_target = self._encode_next(next_obs)
                next_actions, next_log_prob = self.actor.sample(z_next, self.generator)
                q_next = self._subsample(self.target_critic(z_next_target, next_actions)).min(dim=0).values
                if self.config.backup_entropy:
                    q_next = q_next - self.temperature() * next_log_prob
                y = r + gamma * mask * q_next
            q = self.critic(z, actions)  # (E, B)
            critic_loss = (q - y).pow(2).mean()
        metrics = {"critic_loss": critic_loss.detach(), "q_mean": q.detach().mean(), "target_q_mean": y.mean(), "reward_mean": r.mean()}
        optimizers, losses = [self.optimizers["critic"]], [critic_loss]

        if self.layout.grasp_critic:
            # Grasp critic, double DQN: the online net picks g', the target net values it.
            with self._autocast():
                with torch.no_grad():
                    g_next = self.grasp_critic(z_next).argmax(dim=-1, keepdim=True)
                    q_grasp_next = self.target_grasp_critic(z_next_target).gather(-1, g_next).squeeze(-1)
                    y_grasp = r + self.config.grasp_penalty * batch.gripper_changed + gamma * mask * q_grasp_next
                q_grasp = self.grasp_critic(z.detach()).gather(-1, grasp_actions[:, None]).squeeze(-1)
                grasp_critic_loss = (q_grasp - y_grasp).pow(2).mean()
            metrics.update(grasp_critic_loss=grasp_critic_loss.detach(), grasp_q_mean=q_grasp.detach().mean())
            optimizers.append(self.optimizers["grasp_critic"])
            losses.append(grasp_critic_loss)

        _step(optimizers, losses)
        self._soft_update_targets()
        return metrics, (obs, obs_maps)

    def _actor_step(self, obs: Mapping[str, torch.Tensor], obs_maps: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with self._autocast():
            # The actor reads the critic's encoder (as the critic update left it), detached; a
            # frozen trunk's maps are reused.
            with torch.no_grad():
                z = self.encoder(obs) if self.encoder.trunk_trainable else self.encoder.embed(obs_maps)

            # Actor: min E[alpha log pi(a|s) - mean_i Q_i(s, a)],  a = tanh(mu + sigma eps)
            actions, log_prob = self.actor.sample(z, self.generator)
            alpha = self.temperature()
            with _no_parameter_grads(self.critic):
                q = self.critic(z, actions).mean(dim=0)
            actor_loss = (alpha.detach() * log_prob - q).mean()

        # Temperature: min E[-alpha (log pi(a|s) + H_target)]: alpha rises while the entropy
        # (-log pi) is below the target and falls while it is above.
        temperature_loss = -(alpha * (log_prob.detach() + self.target_entropy)).mean()
        _step([self.optimizers["actor"], self.optimizers["temperature"]], [actor_loss, temperature_loss])
        return {
            "actor_loss": actor_loss.detach(),
            "temperature": alpha.detach(),
            "temperature_loss": temperature_loss.detach(),
            "entropy": -log_prob.detach().mean(),
        }

    # ----------------------------------------------------------------- pieces of the step

    def _on_device(self, batch: Any) -> types.SimpleNamespace:
        """The fields the update reads, on the agent's device (moved once per batch)."""

        def move(value: Any) -> Any:
            if isinstance(value, Mapping):
                return {key: tensor.to(self.device, non_blocking=True) for key, tensor in value.items()}
            return value.to(self.device, non_blocking=True)

        return types.SimpleNamespace(**{name: move(getattr(batch, name)) for name in BATCH_FIELDS})

    def _autocast(self):
        """bfloat16 compute for one forward pass (see ``compute_autocast``: it must end before
        the optimiser steps the weights it read)."""
        return compute_autocast(self.device, self.config.mixed_precision)

    def _augment(self, observations: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return random_crop_observation(observations, self.config.encoder.random_crop_pad_px, self.generator)

    def _augment_features(self, observations: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Cached trunk features (float16 in the replay) as float32, shifted when so configured
        (with stored crops the replay already picked one per sample)."""
        encoder = self.config.encoder
        shift = encoder.random_crop_pad_px / RESNET10_STRIDE if encoder.cached_augmentation == "feature_shift" else 0.0
        return {
            key: random_feature_shift(value.float(), shift, self.generator) if key.startswith(IMAGE_PREFIX) else value
            for key, value in observations.items()
        }

    def _encode_next(self, next_obs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Online and target features of s'. A frozen trunk is the same function in both, so
        its maps (the bulk of the compute) are computed once, or were cached."""
        if self.encoder.trunk_trainable:
            return self.encoder(next_obs), self.target_encoder(next_obs)
        maps = next_obs if self.encoder.cache_features else self.encoder.trunk_features(next_obs)
        return self.encoder.embed(maps), self.target_encoder.embed(maps)

    def _subsample(self, q: torch.Tensor) -> torch.Tensor:
        k = self.config.critic_subsample_size
        if k is None or k >= q.shape[0]:
            return q
        return q[torch.randperm(q.shape[0], generator=self.generator, device=self.device)[:k]]

    def _target_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        pairs = [(self.encoder, self.target_encoder), (self.critic, self.target_critic)]
        if self.layout.grasp_critic:
            pairs.append((self.grasp_critic, self.target_grasp_critic))
        online, target = [], []
        for source, copy_ in pairs:
            for (name, p), (target_name, t) in zip(source.named_parameters(), copy_.named_parameters()):
                assert name == target_name
                if p.requires_grad:  # frozen parameters are equal in both and never move
                    online.append(p)
                    target.append(t)
        return online, target

    @torch.no_grad()
    def _soft_update_targets(self) -> None:
        torch._foreach_lerp_(self._target_params, self._online_params, self.config.tau)

    def _compile(self) -> None:
        # Module.compile keeps parameter names (state_dict and policy weights are unchanged).
        for root in (self.networks, self.critic, self.target_encoder, self.target_critic, self.target_grasp_critic):
            for module in root.modules() if root is not None else ():
                if isinstance(module, (ResNet10, ImageHead, StateEncoder, CriticEnsemble, TanhGaussianActor, GraspCritic)):
                    module.compile()

    # ----------------------------------------------------------------- weights and checkpoints

    def policy_weights(self) -> dict[str, torch.Tensor]:
        """CPU contiguous copies with ``Policy``'s names (``Policy.load_weights`` takes them)."""
        return cpu_weights(self.networks)

    def _modules(self) -> dict[str, nn.Module]:
        modules = {
            "networks": self.networks,
            "critic": self.critic,
            "temperature": self.temperature,
            "target_encoder": self.target_encoder,
            "target_critic": self.target_critic,
        }
        if self.layout.grasp_critic:
            modules["target_grasp_critic"] = self.target_grasp_critic
        return modules

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed learner needs (networks, targets, temperature, optimisers, RNG);
        tensors and plain containers only, so ``torch.load(weights_only=True)`` reads it."""
        return {
            **{name: module.state_dict() for name, module in self._modules().items()},
            "optimizers": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
            "generator": {"device": self.device.type, "state": self.generator.get_state()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.load_networks(state)
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])  # moves the moments to the params' device
        if state["generator"]["device"] == self.device.type:
            self.generator.set_state(state["generator"]["state"].cpu())

    def load_networks(self, state: Mapping[str, Any]) -> None:
        """The networks, their targets and the temperature of ``state`` (a ``state_dict``), in place;
        the optimisers and the RNG stay as they are (a warm start keeps its own)."""
        for name, module in self._modules().items():
            if name not in state:
                raise KeyError(f"agent checkpoint has no '{name}' (has {sorted(state)})")
            load_weights_strict(module, state[name], f"agent checkpoint '{name}'")

    def to(self, device: Union[str, torch.device]) -> "SACAgent":
        device = torch.device(device)
        for module in self._modules().values():
            module.to(device)
        for optimizer in self.optimizers.values():
            optimizer.load_state_dict(optimizer.state_dict())  # re-homes the Adam moments
        seed = int(torch.randint(2**62, (), generator=self.generator, device=self.device))
        self.generator = torch.Generator(device).manual_seed(seed)
        self.device = device
        self._online_params, self._target_params = self._target_pairs()
        return self
