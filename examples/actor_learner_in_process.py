"""HIL-SERL in one process: the actor and the learner side by side, no ZeroMQ, no subprocesses.

A real session runs them as two processes (actor/actor_loop.py, learner/learner_loop.py) that talk over
the transport. Here the same pieces run in one loop, so the whole method fits on a screen:

    scripted demos -> demo buffer
    repeat: policy acts -> the scripted teleoperator may take over -> env.step -> transition
            -> replay (online buffer; interventions also to the demo buffer)
            -> learner updates at the update-to-data ratio -> every N updates, weights to the policy
    finally: a deterministic evaluation without interventions

    python examples/actor_learner_in_process.py [--env-steps 3000] [--seed 0] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout without installing

import numpy as np  # noqa: E402
import torch  # noqa: E402

from actor.record_demos import record_demos  # noqa: E402
from actor.evaluate_policy import evaluate_policy  # noqa: E402
from actor.actor_loop import ActorStepper, build_policy, sim_actor_environment  # noqa: E402
from learner.learner_loop import build_agent_and_replay, load_demos_into, update_once, updates_due  # noqa: E402
from robot_stack.config import load_task_config, with_fields  # noqa: E402
from robot_stack.data.transitions import stack_transitions  # noqa: E402
from robot_stack.data.spec import observation_spec as observation_spec_of  # noqa: E402

TASK = REPO / "hardware_configs/tasks/sim_pick_cube_state.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-steps", type=int, default=3000, help="env steps to collect and learn from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--demos", type=int, default=None,
                        help="scripted demos recorded first (default: the task's training.demo_episodes)")
    parser.add_argument("--eval-episodes", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    # --- the task: the shipped state pick-cube as a session runs it, only the seed is ours ------
    config = with_fields(load_task_config(TASK), "training", seed=args.seed)
    training, agent_config = config.training, config.agent
    demos = training.demo_episodes if args.demos is None else args.demos

    # --- the actor's side: the simulated env and the scripted teleoperator watching it -------
    # The same factory the actor process uses: with teleop kind "scripted" it brings a
    # ScriptedIntervention that steps in when the policy strays (less often as steps go by).
    environment = sim_actor_environment(config, np.random.default_rng([args.seed, 1]))
    env, teleoperator = environment.env, environment.intervention
    observation_spec = observation_spec_of(config)  # what the learner derives too; the env announces the same
    policy = build_policy(agent_config, observation_spec, env.action_dim, env.binary_gripper)

    # --- the learner's side: SAC/RLPD agent and the online + demo buffers, as the learner builds them
    agent, replay = build_agent_and_replay(config, observation_spec, env.action_dim, env.binary_gripper)
    policy.load_weights(agent.policy_weights())  # the actor starts from the learner's initial weights

    # --- demos: the recorder writes a demo set; the learner loads it into the demo buffer -----
    with tempfile.TemporaryDirectory() as demo_dir:
        started = time.perf_counter()
        record_demos(config, demos, Path(demo_dir), seed=args.seed, progress=False)
        demo_transitions = load_demos_into(replay, Path(demo_dir), observation_spec, env.action_dim)
    print(f"{demos} demos, {demo_transitions} transitions in the demo buffer ({time.perf_counter() - started:.1f} s)")

    # --- the loop: one env step, then whatever learner updates that step made due ------------
    actor = ActorStepper(env, teleoperator, policy, np.random.default_rng(args.seed))  # rng: exploration noise
    update_rng = np.random.default_rng([args.seed, 2])  # replay sampling
    updates, episodes, successes, recent = 0, 0, 0, []
    actor.reset(seed=args.seed)  # seeded once; later episodes continue the env's stream
    started = time.perf_counter()
    for env_step in range(1, args.env_steps + 1):
        # The actor: the policy proposes, the teleoperator may override (that transition is then
        # an intervention, which RLPD also keeps in the demo buffer). A NaN action is held, as on a robot.
        step = actor.step()
        # What the actor would send and the learner receive: a batch with a leading axis (here of 1).
        replay.add(stack_transitions([step.transition()]), stream="actor")

        # The learner: train up to updates_per_env_step x env steps once there is enough online
        # data; each update takes critic_actor_ratio fresh batches (half demo, half online).
        while updates < updates_due(training, env_step):
            update_once(agent, replay, agent_config, update_rng)
            updates += 1
            # Weights go to the actor every N updates, as the learner publishes them; in-process
            # a copy of the tensors stands in for the safetensors message.
            if updates % training.publish_every_updates == 0:
                policy.load_weights(agent.policy_weights())

        if step.episode_over:
            success = bool(step.info.get("success", False))
            episodes += 1
            successes += success
            recent = (recent + [success])[-10:]
            elapsed = time.perf_counter() - started
            print(f"episode {episodes:3d}: {'success' if success else 'failure'} in {actor.episode_length:3d} steps, "
                  f"{actor.episode_interventions:3d} intervened, return {actor.episode_return:5.2f} | env steps {env_step}, "
                  f"updates {updates}, success over last {len(recent)} {sum(recent) / len(recent):.0%} | "
                  f"{env_step / elapsed:.0f} env steps/s, {updates / elapsed:.0f} updates/s", flush=True)
            actor.reset()
    env.close()
    policy.load_weights(agent.policy_weights())  # the final weights, not the last published ones
    elapsed = time.perf_counter() - started
    print(f"trained: {args.env_steps} env steps, {episodes} episodes ({successes} successes), {updates} updates "
          f"in {elapsed:.0f} s")

    # --- evaluation: the policy's mean action, nobody intervening, seeds unseen in training ----
    report = evaluate_policy(config, policy, args.eval_episodes, seed=1_000_000 + args.seed, progress=False)
    print(f"evaluation: {report.success_rate:.0%} success over {len(report.episodes)} deterministic episodes "
          f"(mean length {report.mean_length:.0f} steps)")


if __name__ == "__main__":
    main()
