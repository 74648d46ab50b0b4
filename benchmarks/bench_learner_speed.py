"""Learner speed on CPU for the state task, against stable-baselines3 SAC measured in the same run.

  ours    one learner step on sim_pick_cube_state (16-D state, 3-D twist + gripper), batch 256,
          as the session runs it (learner.learner_loop.update_once): critic_actor_ratio (2)
          critic updates of the 2-critic LayerNorm ensemble (256x256), each on its own batch and
          each followed by a grasp-critic update, then one actor and one temperature update.
  sb3     stable-baselines3 SAC on the same sizes: MLP 256x256, its default 2 critics, batch 256,
          automatic temperature, the task's discount, UTD 1; ``model.train(gradient_steps=N,
          batch_size=256)`` on a replay buffer filled with random transitions of the same
          dimensions (16-D observation, 4-D action). One gradient step = one critic update, one
          actor and one temperature update.
  per gradient step   ours makes critic_actor_ratio critic (and grasp-critic) updates per actor
          update, SB3 one: "critic updates/s" counts the critic updates of both (ours: learner
          steps/s x critic_actor_ratio), the figure comparable step for step; ours also trains a
          grasp critic in each, which SB3 has no counterpart for.
  threads each with 1 and 2 torch threads, alone and beside one busy process (a Python busy
          loop, standing in for the actor that shares the machine with the learner in a session).
  before  --before DIR measures the learner of another source tree the same way (e.g. the commit
          before a change: ``git archive <commit> | tar -x -C DIR``), so before and after come
          from the same run on the same load.

Each figure comes from its own process (threads and imported code do not leak between them):
the median steps/s over --rounds rounds of --round-s seconds after a warm-up.

    python benchmarks/bench_learner_speed.py [--quick] [--before DIR]

Prints a table and ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STATE_TASK = REPO / "hardware_configs/tasks/sim_pick_cube_state.yaml"
BATCH_SIZE = 256
REPLAY_TRANSITIONS = 2_000


def timed_rounds(step, rounds: int, round_s: float, warmup: int) -> float:
    """Median calls/s of ``step`` over ``rounds`` rounds of about ``round_s`` seconds each."""
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(rounds):
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < round_s:
            step()
            calls += 1
        rates.append(calls / elapsed)
    return statistics.median(rates)


def measure_ours(source: Path, rounds: int, round_s: float) -> float:
    """Learner steps/s of the learner in ``source`` (this tree or a --before tree)."""
    sys.path.insert(0, str(source))
    from learner.learner_loop import update_once
    from learner.replay import MixedReplay, ReplayBuffer
    from learner.sac import SACAgent
    from robot_stack.config import load_task_config, with_fields
    from robot_stack.data.spec import env_action_dim, observation_spec

    import learner.sac

    if not Path(learner.sac.__file__).resolve().is_relative_to(source):
        raise SystemExit(f"asked to measure the learner in {source}, but Python imported {learner.sac.__file__}")
    config = with_fields(load_task_config(STATE_TASK), "agent", batch_size=BATCH_SIZE)
    spec, action_dim = observation_spec(config), env_action_dim(config)
    rng = np.random.default_rng(0)
    agent = SACAgent.create(config.agent, spec, action_dim, True, discount=config.task.discount, device="cpu", seed=0)
    online, demo = (ReplayBuffer(spec, action_dim, REPLAY_TRANSITIONS, name=name) for name in ("online", "demo"))
    replay = MixedReplay(online, demo, config.training.demo_ratio)
    state_dim = spec["state"].shape[0]
    for buffer in (online, demo):
        buffer.add(random_transitions(rng, REPLAY_TRANSITIONS, state_dim, action_dim), stream="bench")
    return timed_rounds(lambda: update_once(agent, replay, config.agent, rng), rounds, round_s, warmup=5)


def random_transitions(rng, count: int, state_dim: int, action_dim: int) -> dict:
    """``count`` transitions of one stream (each observation the previous next observation),
    episodes of 100 steps, random values."""
    states = rng.normal(size=(count + 1, state_dim)).astype(np.float32)
    actions = rng.uniform(-1, 1, (count, action_dim)).astype(np.float32)
    actions[:, -1] = rng.choice([-1.0, 0.0, 1.0], count)  # the gripper command the grasp critic picks
    done = np.arange(1, count + 1) % 100 == 0
    flags = np.zeros(count, bool)
    return {"observations/state": states[:-1], "next_observations/state": states[1:], "actions": actions,
            "rewards": done.astype(np.float32), "terminated": done, "truncated": flags, "interventions": flags,
            "gripper_changed": flags}


def measure_sb3(rounds: int, round_s: float) -> float:
    """stable-baselines3 SAC gradient steps/s on the state task's dimensions."""
    import gymnasium as gym
    from stable_baselines3 import SAC
    from stable_baselines3.common.logger import Logger

    sys.path.insert(0, str(REPO))
    from robot_stack.config import load_task_config
    from robot_stack.data.spec import env_action_dim, observation_spec

    config = load_task_config(STATE_TASK)
    state_dim, action_dim = observation_spec(config)["state"].shape[0], env_action_dim(config)

    class SameDimensions(gym.Env):
        # Only the spaces matter: SB3 sizes its networks and buffer from them; no step is taken.
        observation_space = gym.spaces.Box(-np.inf, np.inf, (state_dim,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)

    model = SAC("MlpPolicy", SameDimensions(), gamma=config.task.discount, batch_size=BATCH_SIZE, buffer_size=REPLAY_TRANSITIONS,
                policy_kwargs={"net_arch": [256, 256]}, seed=0, device="cpu", verbose=0)
    model.set_logger(Logger(folder=None, output_formats=[]))
    rng = np.random.default_rng(0)
    for _ in range(REPLAY_TRANSITIONS):
        model.replay_buffer.add(rng.normal(size=(1, state_dim)).astype(np.float32), rng.normal(size=(1, state_dim)).astype(np.float32),
                                rng.uniform(-1, 1, (1, action_dim)).astype(np.float32), rng.normal(size=1).astype(np.float32),
                                np.zeros(1, bool), [{}])
    per_call = 10
    return per_call * timed_rounds(lambda: model.train(gradient_steps=per_call, batch_size=BATCH_SIZE), rounds, round_s, warmup=1)


def run_measurement(which: str, threads: int, busy: bool, args, source: Path = REPO) -> float:
    """One figure, measured in a fresh process, beside a busy process if ``busy``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", which, "--threads", str(threads),
               "--source", str(source), "--rounds", str(args.rounds), "--round-s", str(args.round_s)]
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    if result.returncode != 0:
        raise SystemExit(f"measuring {which} ({threads} threads, source {source}) failed:\n{result.stderr[-3000:]}")
    return float(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--before", type=Path, help="another source tree whose learner is measured the same way")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--round-s", type=float, default=None)
    parser.add_argument("--measure", choices=["ours", "sb3"], help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, default=REPO, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.round_s = args.round_s or (1.0 if args.quick else 2.0)

    if args.measure is not None:
        import torch

        torch.set_num_threads(args.threads)
        rate = measure_ours(args.source.resolve(), args.rounds, args.round_s) if args.measure == "ours" else measure_sb3(args.rounds, args.round_s)
        print(rate)
        return 0

    if args.before is not None and not (args.before / "learner/sac.py").is_file():
        raise SystemExit(f"--before {args.before}: no learner/sac.py there (give the root of a source tree)")
    sys.path.insert(0, str(REPO))
    import torch

    from robot_stack.config import load_task_config
    from robot_stack.config.schema.training_section import TrainingConfig

    ratio = load_task_config(STATE_TASK).agent.critic_actor_ratio
    default_threads = TrainingConfig().torch_threads
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads by torch's default, training.torch_threads "
          f"default {default_threads}; state pick-cube, batch {BATCH_SIZE}, critic_actor_ratio {ratio}")

    figures: dict[str, float] = {}
    sources = [("ours", REPO)] + ([("before", args.before.resolve())] if args.before is not None else [])
    for threads in (1, 2):
        for busy in (False, True):
            suffix = f"{threads}t" + ("_busy" if busy else "")
            for name, source in sources:
                figures[f"{name}_steps_per_s_{suffix}"] = run_measurement("ours", threads, busy, args, source)
            figures[f"sb3_steps_per_s_{suffix}"] = run_measurement("sb3", threads, busy, args)

    rows = []
    for threads in (1, 2):
        for busy in (False, True):
            suffix = f"{threads}t" + ("_busy" if busy else "")
            where = f"{threads} thread{'s' if threads > 1 else ''}, {'beside a busy process' if busy else 'alone'}"
            ours, sb3 = figures[f"ours_steps_per_s_{suffix}"], figures[f"sb3_steps_per_s_{suffix}"]
            line = (f"{ours:7.1f} learner steps/s = {ours * ratio:7.1f} critic updates/s | SB3 {sb3:7.1f} gradient steps/s | "
                    f"critic updates ours/SB3 {ours * ratio / sb3:.2f}x, actor updates {ours / sb3:.2f}x")
            if args.before is not None:
                before = figures[f"before_steps_per_s_{suffix}"]
                line += f" | before {before:7.1f} learner steps/s, now {ours / before:.2f}x"
            rows.append((where, line))
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    # The session beside its actor, before (torch's default threads) and with the learner's default.
    chosen = figures[f"ours_steps_per_s_{default_threads}t_busy"]
    torch_default = figures[f"ours_steps_per_s_{torch.get_num_threads()}t_busy"] if torch.get_num_threads() in (1, 2) else None
    if torch_default is not None:
        print(f"\nbeside a busy process: training.torch_threads default ({default_threads}) {chosen:.1f} learner steps/s, "
              f"torch's default ({torch.get_num_threads()}) {torch_default:.1f}: {chosen / torch_default:.1f}x")
    figures = {key: round(value, 2) for key, value in figures.items()}
    print(json.dumps({"benchmark": "learner_speed", "critic_actor_ratio": ratio, "batch_size": BATCH_SIZE,
                      "training_torch_threads_default": default_threads, **figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
