"""Replay memory and sampling: our buffer (each observation stored once, images uint8), the
same buffer keeping a frozen trunk's features in place of the images (64-channel projected 4x4
maps in float16: one per frame, and two stored crops per frame as the shipped camera tasks
keep them), against
buffers that store observation and next observation in full, in uint8 and in float32
(LeRobot-style: images converted to float32 before they are stored).

The spec is the pixel pick-cube task's (hardware_configs/tasks/sim_pick_cube.yaml: front
and wrist cameras 128x128x3 uint8, 13-D state, 7-D action). Every figure is measured on
real, filled buffers in one run:

  bytes/transition  ``nbytes`` of a buffer of --capacity transitions divided by its capacity
                    (ours: frames with their 1/16 headroom plus transition rows), and the
                    resident memory the process gained while allocating and filling it;
                    the naive buffers at --naive-capacity (their size is linear in capacity)
  100k buffer       bytes/transition x 100,000
  fill              transitions/s through ``add`` (episodes of 100 steps, one batch each):
                    the first pass, which pays the kernel's first touch of every page, and
                    a second pass over the full ring (what a long run sees)
  sample            median ms of ``sample(256)`` into torch tensors (images stay uint8 in
                    ours and the uint8 baseline; features stay float16)
  cached features   filled at --cached-capacity transitions: every stored frame goes through
                    the trunk once, so the fill rate is the trunk's
  save / load       ours to a temporary directory and back (with --save-load)

    python benchmarks/bench_replay_memory.py [--capacity 20000] [--naive-capacity 2000] [--cached-capacity 2000] [--save-load]

Runs in about 30 s (one core). Targets: ours <= 0.55 x the uint8 obs+next_obs buffer per
transition; sample(256) < 10 ms; cached features at or below ours (uint8) per transition.
Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from learner.replay import ReplayBuffer, naive_bytes_per_transition  # noqa: E402
from robot_stack.config import load_task_config  # noqa: E402
from robot_stack.data.spec import env_action_dim, observation_spec  # noqa: E402

TASK = Path(__file__).resolve().parents[1] / "hardware_configs" / "tasks" / "sim_pick_cube.yaml"
EPISODE_STEPS = 100
BATCH = 256
SAMPLE_REPEATS = 30
REPORT_CAPACITY = 100_000
TARGET_VS_UINT8 = 0.55
TARGET_SAMPLE_MS = 10.0
GB = 1e9


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def episode_batch(spec: dict, action_dim: int, episode: int, pool: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One 100-step episode ending by truncation; images from a pool of random frames (their
    content does not change the memory or the copy cost), the state tells episodes apart."""
    state = np.random.default_rng(episode).standard_normal((EPISODE_STEPS + 1, spec["state"].shape[0])).astype(np.float32)
    arrays = {"observations/state": state[:-1], "next_observations/state": state[1:]}
    for key, frames in pool.items():
        arrays[f"observations/{key}"], arrays[f"next_observations/{key}"] = frames[:-1], frames[1:]
    arrays["actions"] = np.zeros((EPISODE_STEPS, action_dim), np.float32)
    arrays["rewards"] = np.zeros(EPISODE_STEPS, np.float32)
    for flag in ("terminated", "truncated", "interventions", "gripper_changed"):
        arrays[flag] = np.zeros(EPISODE_STEPS, bool)
    arrays["truncated"][-1] = True
    return arrays


class NaiveReplay:
    """The usual replay buffer: observation and next observation each stored in full, in
    `dtype` (float32 images as LeRobot's buffer keeps them), sampled by fancy indexing."""

    def __init__(self, spec: dict, action_dim: int, capacity: int, dtype) -> None:
        self.capacity, self.size, self.cursor = capacity, 0, 0
        self.arrays = {}
        for prefix in ("observations", "next_observations"):
            for key, item in spec.items():
                self.arrays[f"{prefix}/{key}"] = np.zeros((capacity, *item.shape), dtype or np.dtype(item.dtype))
        self.arrays["actions"] = np.zeros((capacity, action_dim), np.float32)
        self.arrays["rewards"] = np.zeros(capacity, np.float32)
        for flag in ("terminated", "truncated", "interventions", "gripper_changed"):
            self.arrays[flag] = np.zeros(capacity, bool)

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array in self.arrays.values())

    def add(self, batch: dict[str, np.ndarray]) -> None:
        count = batch["rewards"].shape[0]
        rows = (self.cursor + np.arange(count)) % self.capacity
        for name, array in self.arrays.items():
            array[rows] = batch[name]  # casts uint8 images to float32 in the float32 buffer
        self.cursor = (self.cursor + count) % self.capacity
        self.size = min(self.capacity, self.size + count)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        rows = rng.integers(0, self.size, size=batch_size)
        return {name: torch.from_numpy(array[rows]) for name, array in self.arrays.items()}


def fill(buffer, spec: dict, action_dim: int, capacity: int, pool: dict[str, np.ndarray], passes: int = 2,
         **add_kwargs) -> list[float]:
    """Add 100-step episodes until `capacity` transitions went in, ``passes`` times; transitions/s of each pass."""
    episodes = [episode_batch(spec, action_dim, e, pool) for e in range(2)]
    rates = []
    for _ in range(passes):
        start = time.perf_counter()
        for e in range(-(-capacity // EPISODE_STEPS)):
            buffer.add(episodes[e % 2], **add_kwargs)
        rates.append(capacity / (time.perf_counter() - start))
    return rates


def median_sample_ms(sample) -> float:
    rng = np.random.default_rng(0)
    sample(rng)  # warm-up: first-touch of the output memory
    times = []
    for _ in range(SAMPLE_REPEATS):
        start = time.perf_counter()
        sample(rng)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capacity", type=int, default=20_000, help="transitions in our buffer (~2.1 GB at 20k)")
    parser.add_argument("--naive-capacity", type=int, default=2_000,
                        help="transitions in each naive buffer (float32: ~1.6 GB at 2k)")
    parser.add_argument("--cached-capacity", type=int, default=2_000,
                        help="transitions in the cached-feature buffers (filled through the trunk)")
    parser.add_argument("--save-load", action="store_true", help="also time save() and load() of our buffer")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args()
    torch.set_num_threads(1)

    config = load_task_config(TASK)
    spec, action_dim = observation_spec(config), env_action_dim(config)
    print(f"spec ({TASK.name}): " + ", ".join(f"{key} {item.describe()}" for key, item in spec.items())
          + f"; action {action_dim}-D; batch {BATCH}; episodes of {EPISODE_STEPS} steps; torch {torch.__version__}")
    pool_rng = np.random.default_rng(0)
    pool = {key: pool_rng.integers(0, 256, (EPISODE_STEPS + 1, *item.shape), dtype=np.uint8)
            for key, item in spec.items() if key != "state"}

    rows = {}  # name -> (bytes per transition, resident bytes per transition, [fill/s, refill/s], sample ms, capacity)
    before = resident_bytes()
    ours = ReplayBuffer(spec, action_dim, args.capacity, name="bench")
    fill_rate = fill(ours, spec, action_dim, args.capacity, pool, stream="actor")
    resident = (resident_bytes() - before) / args.capacity
    rows["ours (obs once, uint8)"] = (ours.bytes_per_transition(), resident, fill_rate,
                                      median_sample_ms(lambda rng: ours.sample(BATCH, rng)), args.capacity)
    assert len(ours) == args.capacity, "the 100-step episodes should all fit"
    save_s = load_s = None
    if args.save_load:
        tmp = Path(tempfile.mkdtemp(prefix="bench_replay_"))
        try:
            start = time.perf_counter()
            ours.save(tmp / "replay")
            save_s = time.perf_counter() - start
            start = time.perf_counter()
            ours.load(tmp / "replay")
            load_s = time.perf_counter() - start
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    ours_nbytes = ours.nbytes
    del ours

    from learner.features import CachedTrunkFeatures
    from learner.sac import SACAgent
    from robot_stack.config import with_fields

    for name, update in (("cached features, 1 map", {"cached_augmentation": "feature_shift"}),
                         ("cached, 2 stored crops", {"cached_augmentation": "stored_crops", "stored_crops": 2})):
        cached_config = with_fields(config, "agent.encoder", pretrained_path=None, **update)
        agent = SACAgent.create(cached_config.agent, spec, action_dim, True, 0.97, device="cpu", seed=0)
        before = resident_bytes()
        cached = ReplayBuffer(spec, action_dim, args.cached_capacity, name="bench",
                              frame_encoder=CachedTrunkFeatures(agent.encoder, cached_config.agent.encoder))
        fill_rate = fill(cached, spec, action_dim, args.cached_capacity, pool, stream="actor", passes=1)
        resident = (resident_bytes() - before) / args.cached_capacity
        rows[name] = (cached.bytes_per_transition(), resident, fill_rate,
                      median_sample_ms(lambda rng: cached.sample(BATCH, rng)), args.cached_capacity)
        del cached, agent

    for name, dtype in (("obs+next_obs uint8", None), ("obs+next_obs float32", np.float32)):
        before = resident_bytes()
        naive = NaiveReplay(spec, action_dim, args.naive_capacity, dtype)
        fill_rate = fill(naive, spec, action_dim, args.naive_capacity, pool)
        resident = (resident_bytes() - before) / args.naive_capacity
        per_transition = naive.nbytes / args.naive_capacity
        assert per_transition == naive_bytes_per_transition(spec, action_dim, dtype), "the formula and the buffer disagree"
        rows[name] = (per_transition, resident, fill_rate, median_sample_ms(lambda rng: naive.sample(BATCH, rng)),
                      args.naive_capacity)
        del naive

    ours_row, cached_row, crops_row, uint8_row, float_row = rows.values()
    print()
    print(f"{'buffer':24s} {'bytes/trans':>11s} {'resident':>9s} {'vs uint8':>8s} {'vs f32':>7s} {'100k GB':>8s} "
          f"{'fill trans/s':>12s} {'refill':>8s} {'sample ms':>9s}  measured at")
    for name, (per, resident, (rate, *refill), sample_ms, capacity) in rows.items():
        refill = f"{refill[0]:8.0f}" if refill else f"{'-':>8s}"
        print(f"{name:24s} {per:11.0f} {resident:9.0f} {per / uint8_row[0]:8.3f} {per / float_row[0]:7.3f} "
              f"{per * REPORT_CAPACITY / GB:8.2f} {rate:12.0f} {refill} {sample_ms:9.2f}  {capacity} transitions")
    print("(bytes/trans = allocated nbytes / capacity; resident = RSS gained while allocating and filling, per transition;")
    print(" fill = first pass, paying the first touch of every page; refill = second pass over the full ring)")
    if save_s is not None:
        print(f"save {ours_nbytes / GB:.2f} GB: {save_s:.1f} s ({ours_nbytes / GB / save_s:.2f} GB/s); "
              f"load: {load_s:.1f} s ({ours_nbytes / GB / load_s:.2f} GB/s)")

    vs_uint8, sample_ms = ours_row[0] / uint8_row[0], ours_row[3]
    cached_vs_ours = cached_row[0] / ours_row[0]
    ok = vs_uint8 <= TARGET_VS_UINT8 and sample_ms < TARGET_SAMPLE_MS and crops_row[0] <= ours_row[0]
    print()
    print("TARGETS")
    print(f"  {'ours / uint8 obs+next_obs per transition':45s} {vs_uint8:10.3f}  "
          f"{'PASS' if vs_uint8 <= TARGET_VS_UINT8 else 'FAIL'} (<= {TARGET_VS_UINT8})")
    print(f"  {'sample(256) ms':45s} {sample_ms:10.2f}  "
          f"{'PASS' if sample_ms < TARGET_SAMPLE_MS else 'FAIL'} (< {TARGET_SAMPLE_MS:.0f})")
    print(f"  {'cached features (2 stored crops) / ours (uint8)':45s} {crops_row[0] / ours_row[0]:10.3f}  "
          f"{'PASS' if crops_row[0] <= ours_row[0] else 'FAIL'} (<= 1; one map a frame: {cached_vs_ours:.3f})")
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        print(f"  WARNING: load average {load:.1f} on {os.cpu_count()} CPUs: timings are inflated by other processes")
    print()
    print(f"bytes_per_transition_ours={ours_row[0]:.0f}")
    print(f"bytes_per_transition_uint8={uint8_row[0]:.0f}")
    print(f"bytes_per_transition_float32={float_row[0]:.0f}")
    print(f"sample_ms_b{BATCH}={sample_ms:.2f}")
    print(json.dumps({
        "benchmark": "replay_memory", "bytes_per_transition_ours": round(ours_row[0]),
        "bytes_per_transition_cached_features": round(cached_row[0]), "bytes_per_transition_cached_2_crops": round(crops_row[0]),
        "bytes_per_transition_uint8": round(uint8_row[0]), "bytes_per_transition_float32": round(float_row[0]),
        "sample_ms_ours": round(sample_ms, 2), "sample_ms_cached_features": round(cached_row[3], 2),
        "cached_fill_transitions_per_s": round(cached_row[2][0], 1),
    }))
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
