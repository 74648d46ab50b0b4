"""A minimal learner and actor, run as separate processes by the restart tests.

    python peer_processes.py learner --transitions-port P --weights-port Q --checkpoint DIR
    python peer_processes.py actor --transitions-port P --weights-port Q --outbox DIR --steps N

The learner keeps every received step id in a "buffer" and checkpoints it with the link's
delivered state (atomically), then commits; on start it resumes from the checkpoint. The
actor sends one transition per control step (its step id is the batch sequence number), at
a fixed rate, writes how many steps it has taken to a file, and at the end waits until the
learner has committed everything. Both log to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from robot_stack.config import SessionConfig
from robot_stack.data.spec import ArraySpec
from robot_stack.transport import ActorLink, LearnerLink

OBSERVATION_SPEC = {"image": ArraySpec("|u1", (16, 16, 3))}
ACTION_SPEC = {"action": ArraySpec("<f4", (7,))}


def session(args: argparse.Namespace, outbox: Path | None = None) -> SessionConfig:
    transport = {"heartbeat_interval_s": 0.2, "peer_timeout_s": 1.0, "handshake_timeout_s": 1.0}
    if outbox is not None:
        transport["outbox_dir"] = str(outbox)
    return SessionConfig(
        learner_host="127.0.0.1",
        transitions_port=args.transitions_port,
        weights_port=args.weights_port,
        transport=transport,
    )


def save_checkpoint(directory: Path, steps: list[int], delivered: dict[str, int]) -> None:
    temporary = directory / "checkpoint.tmp.npz"
    np.savez(temporary, steps=np.asarray(steps, dtype=np.int64), delivered=np.frombuffer(json.dumps(delivered).encode(), np.uint8))
    os.replace(temporary, directory / "checkpoint.npz")


def load_checkpoint(directory: Path) -> tuple[list[int], dict[str, int]]:
    path = directory / "checkpoint.npz"
    if not path.exists():
        return [], {}
    with np.load(path, allow_pickle=False) as data:
        return data["steps"].tolist(), json.loads(data["delivered"].tobytes().decode())


def run_learner(args: argparse.Namespace) -> int:
    directory = Path(args.checkpoint)
    directory.mkdir(parents=True, exist_ok=True)
    steps, delivered = load_checkpoint(directory)
    link = LearnerLink(session(args), task_id="restart-test", observation_spec=OBSERVATION_SPEC, action_spec=ACTION_SPEC)
    link.restore(delivered)
    link.start()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    last_checkpoint = time.monotonic()
    while not stopping:
        for batch in link.receive(timeout_s=0.05):
            steps.extend(int(step) for step in batch.arrays["step"])
        if time.monotonic() - last_checkpoint >= args.checkpoint_every_s:
            state = link.delivered_state()
            save_checkpoint(directory, steps, state)
            link.commit(state)
            last_checkpoint = time.monotonic()
    state = link.delivered_state()
    save_checkpoint(directory, steps, state)
    link.close()
    return 0


def run_actor(args: argparse.Namespace) -> int:
    link = ActorLink(
        session(args, Path(args.outbox)), "actor-0", "restart-test", OBSERVATION_SPEC, ACTION_SPEC, outbox_dir=Path(args.outbox)
    )
    link.start()
    progress = Path(args.outbox).parent / "actor_steps.txt"
    period = 1.0 / args.rate_hz
    next_tick = time.monotonic()
    seq = link.outbox.next_seq - 1
    while link.outbox.next_seq < args.steps:
        step = link.outbox.next_seq
        seq = link.send(
            {
                "step": np.array([step], dtype=np.int64),
                "image": np.full((1, 16, 16, 3), step % 256, dtype=np.uint8),
                "action": np.zeros((1, 7), dtype=np.float32),
            }
        )
        # Replaced in one rename: the test reads it meanwhile and must never see it empty.
        partial = progress.with_suffix(".tmp")
        partial.write_text(str(step + 1))
        partial.replace(progress)
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    committed = link.wait_committed(seq, timeout_s=args.commit_timeout_s)
    link.close()
    return 0 if committed else 3


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(process)d %(name)s: %(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("learner", "actor"))
    parser.add_argument("--transitions-port", type=int, required=True)
    parser.add_argument("--weights-port", type=int, required=True)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--checkpoint-every-s", type=float, default=0.3)
    parser.add_argument("--outbox", default=None)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rate-hz", type=float, default=50.0)
    parser.add_argument("--commit-timeout-s", type=float, default=60.0)
    args = parser.parse_args()
    return run_learner(args) if args.role == "learner" else run_actor(args)


if __name__ == "__main__":
    sys.exit(main())
