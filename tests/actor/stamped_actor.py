"""The real actor loop in a process of its own, for restart tests: the simulated env with
every observation stamped (``StampedEnv``, numbers from --first-stamp on), a zero-action
policy, a status file. SIGINT stops it cleanly.

    python stamped_actor.py CONFIG --status PATH --first-stamp N
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

import numpy as np

from actor.actor_loop import ActorEnvironment, run_actor
from actor_fakes import FakePolicy, StampedEnv
from robot_stack.config import load_task_config
from robot_stack.envs.factory import make_sim_env


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(process)d %(name)s: %(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--first-stamp", type=int, default=0)
    args = parser.parse_args()
    config = load_task_config(args.config)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def environment(config, rng: np.random.Generator) -> ActorEnvironment:
        env = StampedEnv(make_sim_env(config).env)
        env.stamped = args.first_stamp
        return ActorEnvironment(env, intervention=None)

    run_actor(config, "robot1", stop, policy_factory=lambda *spec: FakePolicy(), env_factory=environment,
              status_path=args.status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
