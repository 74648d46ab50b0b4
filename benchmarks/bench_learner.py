"""Learner and actor speed on this machine: learner steps/s (state-based and pixel-based
batches), policy inference latency, and the actor loop's jitter at the 10 Hz control rate.

  learner    one learner step = critic_actor_ratio (2) critic updates on their own batches,
             one actor and temperature update, one grasp-critic update (as HIL-SERL).
             State: sim_pick_cube_state (16-D state, 3-D twist + gripper), batch 256.
             Pixels: sim_pick_cube as shipped (two 128x128 cameras + 13-D state, frozen
             ResNet-10, projection to 64 channels, flattened map into the head), batch 256:
               cached    the replay keeps the trunk's features (filled through the trunk
                         once), updates run only what follows the trunk
               uncached  the same networks with agent.encoder.cache_features off: the trunk
                         runs on every image of every update (the baseline, same run)
               HIL-SERL head  cached, all 512 channels and learned spatial embeddings
             bfloat16 compute where the hardware has it (agent.mixed_precision), and float32
             for the cached step as a second baseline.
             Batches are sampled from a filled replay buffer, as in the learner; random
             weights (the speed does not depend on them).
  inference  Policy.act (stochastic, as the actor runs it) on one observation, 1 thread.
  actor      the real actor loop (sim pick-cube, state-based, no learner) rate-locked at the
             task's 10 Hz for --actor-seconds: period jitter p50/p99 and overruns.

    python benchmarks/bench_learner.py [--quick] [--device cpu|cuda]

Prints a table and ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from robot_stack.config import load_task_config  # noqa: E402
from robot_stack.data.spec import env_action_dim, observation_spec  # noqa: E402
from robot_stack.policy.layers import bfloat16_native  # noqa: E402
from robot_stack.config import with_fields  # noqa: E402

STATE_TASK = REPO / "hardware_configs/tasks/sim_pick_cube_state.yaml"
PIXEL_TASK = REPO / "hardware_configs/tasks/sim_pick_cube.yaml"


def filled_replay(config, transitions: int, rng: np.random.Generator, frame_encoder=None):
    from learner.replay import ReplayBuffer

    spec = observation_spec(config)
    action_dim = env_action_dim(config)
    replay = ReplayBuffer(spec, action_dim, transitions, frame_encoder=frame_encoder)
    episode = 100
    for start in range(0, transitions, episode):
        n = min(episode, transitions - start)
        arrays = {}
        for prefix in ("observations/", "next_observations/"):
            for key, item in spec.items():
                shape = (n, *item.shape)
                arrays[prefix + key] = (rng.integers(0, 255, shape, dtype=np.uint8) if item.dtype == "|u1"
                                        else rng.normal(size=shape).astype(np.float32))
        actions = rng.uniform(-1, 1, (n, action_dim)).astype(np.float32)
        actions[:, -1] = rng.choice([-1.0, 0.0, 1.0], n)
        done = np.zeros(n, bool)
        done[-1] = True
        # One stream: each observation is the previous next observation (the frame is stored once).
        arrays["next_observations/state"][:-1] = arrays["observations/state"][1:]
        arrays.update(actions=actions, rewards=done.astype(np.float32), terminated=done, truncated=np.zeros(n, bool),
                      interventions=np.zeros(n, bool), gripper_changed=np.zeros(n, bool))
        replay.add(arrays, stream="bench")
    return replay


def learner_steps_per_s(config, batch_size: int, steps: int, warmup: int, device: str, threads: int | None) -> float:
    from learner.features import CachedTrunkFeatures
    from learner.sac import SACAgent

    if threads is not None:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    agent = SACAgent.create(config.agent, observation_spec(config), env_action_dim(config), True,
                            discount=config.task.discount, device=device, seed=0)
    features = CachedTrunkFeatures(agent.encoder, config.agent.encoder) if agent.encoder.cache_features else None
    replay = filled_replay(config, 2_000, rng, features)
    ratio = config.agent.critic_actor_ratio

    def step():
        agent.update([replay.sample(batch_size, rng).to(device) for _ in range(ratio)])

    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def inference_ms(config, repeats: int) -> tuple[float, float]:
    from robot_stack.envs import make_env
    from robot_stack.policy import Policy

    torch.set_num_threads(1)
    env = make_env(config)
    observation, _ = env.reset(seed=0)
    policy = Policy.build(config.agent, observation_spec(config), env.action_dim, env.binary_gripper)
    rng = np.random.default_rng(0)
    times = []
    for index in range(repeats + 5):
        start = time.perf_counter()
        policy.act(observation, deterministic=False, rng=rng)
        if index >= 5:
            times.append((time.perf_counter() - start) * 1e3)
    env.close()
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def actor_jitter(seconds: float):
    from actor.actor_loop import run_actor
    from robot_stack.config import with_fields
    import tempfile

    config = load_task_config(STATE_TASK)
    with tempfile.TemporaryDirectory() as tmp:
        config = with_fields(config, "actor", rate_locked=True, stats_every_s=seconds * 2)
        config = with_fields(config, "session", transitions_port=_free_port(), weights_port=_free_port())
        config = with_fields(config, "session.transport", outbox_dir=Path(tmp) / "outbox", durable_outbox=False)
        steps = int(seconds * config.task.control_rate_hz)
        summary = run_actor(config, "bench", threading.Event(), max_env_steps=steps, seed=0)
    return summary


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--actor-seconds", type=float, default=None)
    args = parser.parse_args()
    state = load_task_config(STATE_TASK)
    # Random weights: the speed does not depend on them, and the shipped file may not exist yet.
    pixel = with_fields(load_task_config(PIXEL_TASK), "agent.encoder", pretrained_path=None)
    steps = 20 if args.quick else 100
    default_threads = torch.get_num_threads()
    print(f"device {args.device}, torch {torch.__version__}, {default_threads} threads by default, "
          f"bfloat16 native: {bfloat16_native(args.device)}")

    rows, figures = [], {"device": args.device, "threads": default_threads}
    one = learner_steps_per_s(state, 256, steps, 3, args.device, 1)
    rows.append(("learner, state, batch 256, 1 thread", f"{one:.1f} steps/s"))
    full = learner_steps_per_s(state, 256, steps, 3, args.device, default_threads)
    rows.append((f"learner, state, batch 256, {default_threads} threads", f"{full:.1f} steps/s ({full / one:.2f}x one thread)"))
    figures.update(state_steps_per_s_1_thread=round(one, 2), state_steps_per_s=round(full, 2))

    label = "pixels (2 x 128x128, frozen ResNet-10), batch 256"
    cached_one = learner_steps_per_s(pixel, 256, steps, 3, args.device, 1)
    rows.append((f"learner, {label}, cached features, 1 thread", f"{cached_one:.1f} steps/s"))
    cached = learner_steps_per_s(pixel, 256, steps, 3, args.device, default_threads)
    rows.append((f"learner, {label}, cached features, {default_threads} threads", f"{cached:.1f} steps/s"))
    fp32 = learner_steps_per_s(with_fields(pixel, "agent", mixed_precision=False), 256, steps, 3, args.device, default_threads)
    rows.append((f"learner, {label}, cached features, float32", f"{fp32:.1f} steps/s (bfloat16: {cached / fp32:.2f}x)"))
    serl_head = with_fields(pixel, "agent.encoder", projection_channels=None, pooling="spatial_learned_embeddings")
    full_head = learner_steps_per_s(serl_head, 256, max(steps // 4, 5), 2, args.device, default_threads)
    rows.append((f"learner, {label}, cached, HIL-SERL head (512 channels, spatial embeddings)", f"{full_head:.1f} steps/s"))
    uncached_steps = 2 if args.device == "cpu" else 20
    uncached = learner_steps_per_s(with_fields(pixel, "agent.encoder", cache_features=False), 256, uncached_steps, 1,
                                   args.device, default_threads)
    rows.append((f"learner, {label}, uncached (trunk at every update)", f"{uncached:.3f} steps/s ({1 / uncached:.1f} s/step)"))
    rows.append(("  cached / uncached", f"{cached / uncached:.0f}x"))
    figures.update(pixel_cached_steps_per_s_1_thread=round(cached_one, 2), pixel_cached_steps_per_s=round(cached, 2),
                   pixel_cached_float32_steps_per_s=round(fp32, 2), pixel_cached_hil_serl_head_steps_per_s=round(full_head, 2),
                   pixel_uncached_steps_per_s=round(uncached, 4), cached_over_uncached=round(cached / uncached, 1))
    for name, config in (("state", state), ("pixels", pixel)):
        p50, p99 = inference_ms(config, 50 if args.quick else 200)
        rows.append((f"policy inference, {name}, 1 thread", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"))
        figures.update({f"inference_{name}_p50_ms": round(p50, 2), f"inference_{name}_p99_ms": round(p99, 2)})
    seconds = args.actor_seconds or (10.0 if args.quick else 30.0)
    summary = actor_jitter(seconds)
    timing = summary.timing
    rows.append((f"actor loop at 10 Hz, state pick-cube, {timing.steps} steps",
                 f"jitter p50 {timing.jitter_p50_ms:.2f} ms, p99 {timing.jitter_p99_ms:.2f} ms, max {timing.jitter_max_ms:.2f} ms, "
                 f"{timing.overruns} overruns, {timing.loop_hz:.2f} Hz"))
    figures.update(actor_jitter_p99_ms=round(timing.jitter_p99_ms, 2), actor_overruns=timing.overruns)
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps({"benchmark": "learner", **figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
