"""Learner checkpoints: the full rewrite of both replay buffers in the training thread (the
learner before incremental checkpoints, kept here as ``full_rewrite_checkpoint``) against
incremental segments written by the learner's checkpoint writer thread, in one run on the same
filled learner.

The learner is the pixel pick-cube task's (hardware_configs/tasks/sim_pick_cube.yaml: two
128x128 cameras, ResNet-10 encoders) with the replay keeping the images themselves
(``agent.encoder.cache_features: false``), the case of the ~26 GB checkpoints at default
capacities; online capacity --online-capacity, demo a quarter of it, both filled and wrapped
with 100-step episodes of random frames. Before each measured checkpoint the learner receives
--interval-fraction of the online capacity (default 1.5%: 3,000 transitions, 300 s at 10 Hz,
against the default 200,000).

  checkpoint time  full rewrite: torch.save of the agent, both buffers' arrays, fsync, rename;
                   incremental: the writer thread's time for the new segments, the agent and
                   the manifests, made durable the same way
  training stall   how long the training thread cannot train: the whole checkpoint for the
                   full rewrite; the snapshot (agent tensors, counters, positions) for
                   incremental ones
  loop slowdown    while the writer thread works, the training thread keeps sampling batches
                   of 256: their rate against the rate with no checkpoint running (both
                   cores are shared with the writer and the kernel's writeback)

    python benchmarks/bench_checkpoint.py [--online-capacity 10000] [--repeats 3] [--out DIR]

Runs in about 1 minute on 2 cores and writes a few GB under --out (removed at the end).
Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from learner.learner_loop import Learner, export_policy  # noqa: E402
from robot_stack.config import load_task_config  # noqa: E402
from robot_stack.data.checkpoints import CheckpointStore  # noqa: E402
from robot_stack.data.spec import env_action_dim, observation_spec  # noqa: E402
from robot_stack.config import with_fields  # noqa: E402

TASK = Path(__file__).resolve().parents[1] / "hardware_configs" / "tasks" / "sim_pick_cube.yaml"
EPISODE_STEPS = 100
BATCH = 256
DEFAULT_ONLINE, DEFAULT_DEMO, DEFAULT_INTERVAL = 200_000, 50_000, 3_000  # shipped capacities; 300 s at 10 Hz


def full_rewrite_checkpoint(learner: Learner, store: CheckpointStore) -> None:
    """The checkpoint as the learner wrote it before incremental segments: everything, in the
    calling (training) thread."""

    def write(directory: Path) -> None:
        torch.save(learner.agent.state_dict(), directory / "agent.pt")
        learner.replay.save(directory / "replay")
        (directory / "policy.safetensors").write_bytes(export_policy(learner.agent))

    store.save(write, {"counters": {}, "link_state": {}})


def episode(spec: dict, action_dim: int, rng: np.random.Generator, episode_id: int) -> dict[str, np.ndarray]:
    """A 100-step episode of random frames (nothing for a file system to deduplicate)."""
    n = EPISODE_STEPS
    arrays = {}
    for key, array_spec in spec.items():
        if array_spec.dtype.endswith("u1"):
            frames = rng.integers(0, 256, size=(n + 1, *array_spec.shape), dtype=np.uint8)
        else:
            frames = rng.normal(size=(n + 1, *array_spec.shape)).astype(np.float32)
            frames[:, 0] = episode_id
        arrays[f"observations/{key}"], arrays[f"next_observations/{key}"] = frames[:-1], frames[1:]
    arrays["actions"] = rng.uniform(-1, 1, (n, action_dim)).astype(np.float32)
    arrays["rewards"] = np.zeros(n, np.float32)
    for flag in ("terminated", "truncated", "interventions", "gripper_changed"):
        arrays[flag] = np.zeros(n, bool)
    arrays["truncated"][-1] = True
    return arrays


def feed(learner: Learner, transitions: int, spec, action_dim, rng, counter: list[int], demos: bool = False) -> None:
    for _ in range(max(1, transitions // EPISODE_STEPS)):
        arrays = episode(spec, action_dim, rng, counter[0])
        counter[0] += 1
        if demos:
            learner.replay.add_demos(arrays)
        else:
            learner.replay.add(arrays, stream="actor0")


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def sample_rate(learner: Learner, rng, seconds: float = 0.0, until=None) -> float:
    """Batches of 256 per second the training thread samples, for ``seconds`` or until ``until()``."""
    count, started = 0, time.perf_counter()
    while (until is not None and not until()) or (until is None and time.perf_counter() - started < seconds):
        learner.replay.sample(BATCH, rng)
        count += 1
    return count / max(time.perf_counter() - started, 1e-9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--online-capacity", type=int, default=10_000)
    parser.add_argument("--interval-fraction", type=float, default=DEFAULT_INTERVAL / DEFAULT_ONLINE)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_checkpoint"))
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints written")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    shutil.rmtree(args.out, ignore_errors=True)

    config = load_task_config(TASK)
    config = with_fields(config, "agent.encoder", cache_features=False, pretrained_path=None, pretrain=None)
    config = with_fields(config, "training", online_buffer_capacity=args.online_capacity,
                         demo_buffer_capacity=args.online_capacity // 4, torch_threads=1)
    config = with_fields(config, "session", checkpoint_dir=args.out / "incremental", log_dir=args.out / "logs")
    spec, action_dim = observation_spec(config), env_action_dim(config)
    learner = Learner(config)
    interval = max(EPISODE_STEPS, int(round(args.interval_fraction * args.online_capacity)))
    counter = [0]
    started = time.perf_counter()
    feed(learner, learner.replay.demo.capacity, spec, action_dim, rng, counter, demos=True)
    feed(learner, int(1.2 * args.online_capacity), spec, action_dim, rng, counter)  # wrapped once
    replay_bytes = learner.replay.online.nbytes + learner.replay.demo.nbytes
    print(f"learner: {args.online_capacity} online + {learner.replay.demo.capacity} demo transitions "
          f"({replay_bytes / 1e9:.2f} GB of replay, {learner.replay.online.bytes_per_transition() / 1e3:.1f} KB per "
          f"transition), filled in {time.perf_counter() - started:.0f} s; {interval} new transitions before each checkpoint")

    # Full rewrite (before): the training thread writes everything.
    old_store = CheckpointStore(args.out / "full_rewrite", keep=2)
    old_times, old_bytes = [], 0
    for _ in range(args.repeats):
        feed(learner, interval, spec, action_dim, rng, counter)
        t0 = time.perf_counter()
        full_rewrite_checkpoint(learner, old_store)
        old_times.append(time.perf_counter() - t0)
        old_bytes = directory_bytes(old_store.complete()[-1].path)
    shutil.rmtree(args.out / "full_rewrite", ignore_errors=True)

    # Incremental (after): the first checkpoint writes every live row; the next ones only new rows.
    t0 = time.perf_counter()
    learner.save_checkpoint(None)
    first_s = time.perf_counter() - t0
    stalls, writes, busy_rates, idle_rates, new_bytes = [], [], [], [], []
    for _ in range(args.repeats):
        feed(learner, interval, spec, action_dim, rng, counter)
        idle_rates.append(sample_rate(learner, rng, seconds=1.0))  # just before: same load from others
        before = set((args.out / "incremental").glob("segments-*/*/*"))
        t0 = time.perf_counter()
        pending = learner.save_checkpoint(None, wait=False)
        stalls.append(time.perf_counter() - t0)
        busy_rates.append(sample_rate(learner, rng, until=pending.done))
        info = pending.result()
        writes.append(learner.last_checkpoint_timing["write_s"])
        segments = set((args.out / "incremental").glob("segments-*/*/*")) - before
        new_bytes.append(sum(p.stat().st_size for p in segments) + directory_bytes(info.path))
        agent_bytes = (info.path / "agent.pt").stat().st_size
    resumed = Learner(config)
    t0 = time.perf_counter()
    resumed.resume_or_start()
    load_s = time.perf_counter() - t0
    exact = all(
        getattr(resumed.replay, name).counters() == getattr(learner.replay, name).counters()
        and all(np.array_equal(getattr(resumed.replay, name).frames[key], getattr(learner.replay, name).frames[key])
                for key in learner.replay.online.frames)
        and np.array_equal(getattr(resumed.replay, name).obs_frame, getattr(learner.replay, name).obs_frame)
        and np.array_equal(getattr(resumed.replay, name).actions, getattr(learner.replay, name).actions)
        for name in ("online", "demo")
    )

    old_s, new_s, stall_s = statistics.median(old_times), statistics.median(writes), statistics.median(stalls)
    written = statistics.median(new_bytes)
    busy, idle_rate = statistics.median(busy_rates), statistics.median(idle_rates)
    slowdown = statistics.median(b / i for b, i in zip(busy_rates, idle_rates))
    print()
    print(f"{'':34s} {'full rewrite':>14s} {'incremental':>14s} {'ratio':>8s}")
    print(f"{'checkpoint time (s)':34s} {old_s:14.2f} {new_s:14.2f} {old_s / new_s:7.1f}x")
    print(f"{'training stall (s)':34s} {old_s:14.2f} {stall_s:14.3f} {old_s / stall_s:7.0f}x")
    print(f"{'bytes written per checkpoint (MB)':34s} {old_bytes / 1e6:14.0f} {written / 1e6:14.0f} {old_bytes / written:7.1f}x")
    print(f"first incremental checkpoint (every live row, waited for): {first_s:.2f} s; resume (load) {load_s:.2f} s, "
          f"buffers identical: {exact}")
    print(f"sampling while the writer works: {busy:.0f} batches/s against {idle_rate:.0f} in the second before "
          f"(median ratio {slowdown:.0%})")

    # At the shipped capacities the full rewrite grows with the buffers; the increment does not.
    per_transition = learner.replay.online.bytes_per_transition()
    full_default = per_transition * (DEFAULT_ONLINE + DEFAULT_DEMO) + agent_bytes
    old_rate = old_bytes / old_s
    incremental_default = per_transition * DEFAULT_INTERVAL + (written - per_transition * interval)
    new_rate = written / new_s
    print(f"at default capacity ({DEFAULT_ONLINE:,} + {DEFAULT_DEMO:,}, {per_transition / 1e3:.1f} KB per transition, "
          f"{DEFAULT_INTERVAL:,} new transitions per checkpoint), at this run's write rates "
          f"({old_rate / 1e6:.0f} / {new_rate / 1e6:.0f} MB/s): full rewrite {full_default / 1e9:.1f} GB, "
          f"~{full_default / old_rate:.0f} s of training stalled; incremental {incremental_default / 1e9:.2f} GB, "
          f"~{incremental_default / new_rate:.1f} s in the writer thread, stall {1e3 * stall_s:.0f} ms (the snapshot "
          "does not grow with the buffers)")
    if hasattr(os, "getloadavg"):
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if not args.keep:
        shutil.rmtree(args.out, ignore_errors=True)
    print(json.dumps({
        "online_capacity": args.online_capacity, "demo_capacity": learner.replay.demo.capacity,
        "interval_transitions": interval, "replay_gb": round(replay_bytes / 1e9, 3),
        "full_rewrite_s": round(old_s, 3), "incremental_write_s": round(new_s, 3),
        "full_rewrite_stall_s": round(old_s, 3), "incremental_stall_s": round(stall_s, 4),
        "checkpoint_time_ratio": round(old_s / new_s, 2), "stall_ratio": round(old_s / stall_s, 1),
        "full_rewrite_mb": round(old_bytes / 1e6, 1), "incremental_mb": round(written / 1e6, 1),
        "first_incremental_s": round(first_s, 2), "load_s": round(load_s, 2), "load_exact": exact,
        "sample_rate_during_write_vs_idle": round(slowdown, 3),
        "default_capacity_full_rewrite_gb": round(full_default / 1e9, 2),
        "default_capacity_full_rewrite_s_est": round(full_default / old_rate, 1),
        "default_capacity_incremental_gb": round(incremental_default / 1e9, 3),
        "default_capacity_incremental_s_est": round(incremental_default / new_rate, 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
