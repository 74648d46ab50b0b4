"""The task session and the processes it is made of: session, learner, actor, record-demos,
evaluate. Each also runs on its own (learner on the GPU PC, actor on the robot PC)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from robot_stack.cli.common import exit_with_supervisor, load_config, positive_int, schema_flag, stop_on_signals, supervised
from robot_stack.config import ConfigError, with_fields


def learner_command(args: argparse.Namespace) -> int:
    """The learner: trains from what the actors send, publishes weights, checkpoints."""
    stop = stop_on_signals("learner")
    exit_with_supervisor(args)
    config = load_config(args.config)
    if config is None:
        return 1
    from learner.learner_loop import run_learner
    from robot_stack.data.checkpoints import CheckpointMismatchError
    from robot_stack.data.demo_sets import DemoMismatchError
    from robot_stack.data.warm_start import WarmStartError, with_init_from
    from robot_stack.run_dir import demo_dir
    from robot_stack.transport import PortInUse
    from robot_stack.transport.security import KeyFileError

    if args.init_from is not None:
        config = with_init_from(config, args.init_from)
    try:
        run_learner(config, stop, demo_dir=args.demos or demo_dir(config))
    except KeyFileError as error:
        print(f"learner: {error}", file=sys.stderr)
        return 1
    except (CheckpointMismatchError, WarmStartError, DemoMismatchError) as error:
        print(f"robot-stack learner: {error}", file=sys.stderr)
        return 2
    except PortInUse as error:
        print(f"learner: {error}", file=sys.stderr)
        return PortInUse.exit_code
    return 0


def actor_command(args: argparse.Namespace) -> int:
    """The actor: runs the policy on the robot (simulated here), streams transitions."""
    stop = stop_on_signals("actor")
    exit_with_supervisor(args)
    config = load_config(args.config)
    if config is None:
        return 1
    from actor.actor_loop import run_actor
    from robot_stack.transport.actor_link import LinkRefused
    from robot_stack.transport.security import KeyFileError

    try:
        from robot_stack.data.status import actor_status_path

        log_dir = config.session.log_dir
        status = actor_status_path(log_dir, args.actor_id) if log_dir is not None else None
        from actor.actor_loop import dataset_path

        if args.live_page_port is not None:
            config = with_fields(config, "actor.console", web_port=args.live_page_port)
        run_actor(config, args.actor_id, stop, seed=args.seed, status_path=status,
                  dataset_dir=dataset_path(config, args.actor_id))
    except (LinkRefused, KeyFileError) as error:
        # Retrying cannot help (another task or spec, an unknown key): say why and stop.
        print(f"actor '{args.actor_id}': {error}", file=sys.stderr)
        return 1
    return 0


def record_demos_command(args: argparse.Namespace) -> int:
    """Demos from the teleop device (the scripted teleoperator in simulation), saved to disk."""
    exit_with_supervisor(args, signal.SIGINT)
    config = load_config(args.config)
    if config is None:
        return 1
    from actor.record_demos import record_demos
    from robot_stack.data.demo_sets import LEROBOT_COPY
    from robot_stack.run_dir import demo_dir

    out = args.out or demo_dir(config)
    try:
        report = record_demos(config, args.episodes, out, seed=args.seed, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"record-demos: interrupted before the first demo was finished; nothing kept in {out}", file=sys.stderr)
        return 130
    except RuntimeError as error:  # too few successes within the attempts allowed
        print(f"record-demos: {error}", file=sys.stderr)
        return 1
    if report.interrupted:
        kept = f"kept the {len(report.episodes)} finished demos" if report.episodes else "no demo was finished; nothing kept"
        print(f"record-demos: interrupted after {len(report.episodes)} of {report.requested} demos; {kept} in {report.directory}",
              file=sys.stderr)
        return 130
    print(f"wrote {len(report.episodes)} demos of {report.task} ({report.transitions} transitions, "
          f"{report.attempts} attempts) to {report.directory}, and as a LeRobot dataset to {report.directory / LEROBOT_COPY}")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    """Run the newest checkpoint's policy without interventions, its mean action (the figure to
    report) and then sampled actions from the same starts; write CSV and JSON."""
    exit_with_supervisor(args, signal.SIGINT)
    config = load_config(args.config)
    if config is None:
        return 1
    from actor.evaluate_policy import evaluate_checkpoint
    from robot_stack.data.checkpoints import CheckpointMismatchError
    from robot_stack.policy.weights_io import WeightsMismatchError

    try:
        report, sampled = evaluate_checkpoint(config, args.checkpoints or Path(config.session.checkpoint_dir), args.episodes,
                                              args.out, seed=args.seed, progress=not args.no_progress,
                                              sampled_episodes=args.sampled_episodes)
    except (FileNotFoundError, WeightsMismatchError, CheckpointMismatchError) as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 1
    from robot_stack.session import evaluation_text

    print(f"evaluation: {evaluation_text({**report.summary(), 'sampled': sampled and sampled.summary()})}; wrote {args.out}")
    return 0


def session_command(args: argparse.Namespace) -> int:
    """The simulated HIL-SERL task session: demos, learner and actors, evaluation."""
    from robot_stack.data.warm_start import WarmStartError
    from robot_stack.session import run_session

    try:
        run_session(
            args.config, args.run_dir, max_env_steps=args.max_env_steps, target_success_rate=args.target,
            eval_episodes=args.eval_episodes, demo_episodes=args.demo_episodes, max_wall_time_s=args.max_minutes * 60 if args.max_minutes else None,
            demos=args.demos, progress=not args.no_progress, interventions=not args.no_interventions,
            init_from=args.init_from, actors=args.actors,
        )
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    except WarmStartError as error:
        print(f"robot-stack session: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"session failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Outside the training phase (demos, evaluation): nothing of the session's is left running.
        print("session interrupted", file=sys.stderr)
        return 130
    return 0


def add_session_commands(groups: argparse._SubParsersAction) -> None:
    from robot_stack.config.schema import ConsoleConfig, SessionConfig, TrainingConfig

    def task(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("config", type=Path, metavar="CONFIG", help="task YAML")

    session = groups.add_parser("session", help="run a whole task session (demos, learner, actors, evaluation)",
                                description=session_command.__doc__)
    task(session)
    session.add_argument("--run-dir", type=Path, default=None, help="where checkpoints, logs and results go (default runs/<task>)")
    session.add_argument("--demos", type=Path, default=None, help="demo folder (default runs/demos/<task>; recorded if empty)")
    session.add_argument("--max-env-steps", type=schema_flag(TrainingConfig, "max_env_steps", int), default=None,
                         help="step budget (default training.max_env_steps)")
    session.add_argument("--target", type=schema_flag(TrainingConfig, "target_success_rate", float), default=None,
                         help="stop at this policy success rate, in (0, 1] (default training.target_success_rate)")
    session.add_argument("--eval-episodes", type=schema_flag(TrainingConfig, "eval_episodes", int), default=None,
                         help="evaluation episodes after training (default training.eval_episodes)")
    session.add_argument("--demo-episodes", type=schema_flag(TrainingConfig, "demo_episodes", int), default=None,
                         help="demos to record if none exist (default training.demo_episodes)")
    session.add_argument("--max-minutes", type=schema_flag(TrainingConfig, "max_wall_time_s", float, to_field_unit=60), default=None,
                         help="wall-clock limit")
    session.add_argument("--actors", type=schema_flag(SessionConfig, "actors", int), default=None,
                         help="simulated actors feeding the learner, actor0..actorN-1 (default session.actors, 1)")
    session.add_argument("--no-interventions", action="store_true", help="the scripted teleoperator never steps in (ablation)")
    session.add_argument("--init-from", type=Path, default=None, metavar="RUN_DIR",
                         help="warm-start from another run's networks (replaces training.init_from.run_dir)")
    session.add_argument("--no-progress", action="store_true")
    session.set_defaults(run=session_command)

    learner = groups.add_parser("learner", help="run the learner (GPU PC)", description=learner_command.__doc__)
    task(learner)
    learner.add_argument("--demos", type=Path, default=None, help="demo folder (default: training.demo_dir)")
    learner.add_argument("--init-from", type=Path, default=None, metavar="RUN_DIR",
                         help="warm-start from another run's networks (replaces training.init_from.run_dir)")
    supervised(learner)
    learner.set_defaults(run=learner_command)

    actor = groups.add_parser("actor", help="run an actor (robot PC)", description=actor_command.__doc__)
    task(actor)
    actor.add_argument("--actor-id", default="actor0", help="unique per robot; a restarted actor keeps its id")
    actor.add_argument("--seed", type=int, default=0)
    actor.add_argument("--live-page-port", type=schema_flag(ConsoleConfig, "web_port", int), default=None, metavar="PORT",
                       help="port of the live page (replaces actor.console.web_port; 0: any free port)")
    supervised(actor)
    actor.set_defaults(run=actor_command)

    demos = groups.add_parser("record-demos", help="record demos with the teleop device", description=record_demos_command.__doc__)
    task(demos)
    demos.add_argument("--episodes", type=positive_int, default=20)
    demos.add_argument("--out", type=Path, default=None, help="demo folder (default: training.demo_dir)")
    demos.add_argument("--seed", type=int, default=0)
    demos.add_argument("--no-progress", action="store_true")
    supervised(demos)
    demos.set_defaults(run=record_demos_command)

    evaluate = groups.add_parser("evaluate", help="evaluate a checkpoint's policy without interventions", description=evaluate_command.__doc__)
    task(evaluate)
    evaluate.add_argument("--checkpoints", type=Path, default=None, help="checkpoint dir (default: session.checkpoint_dir)")
    evaluate.add_argument("--episodes", type=positive_int, default=50)
    evaluate.add_argument("--out", type=Path, required=True)
    evaluate.add_argument("--seed", type=int, default=1_000_000, help="episode seeds start here (apart from training's)")
    evaluate.add_argument("--sampled-episodes", type=schema_flag(TrainingConfig, "eval_episodes", int), default=None,
                          help="episodes with sampled actions (as in training) after the deterministic ones, from the "
                               "same starts (default: as many; 0: none)")
    evaluate.add_argument("--no-progress", action="store_true")
    supervised(evaluate)
    evaluate.set_defaults(run=evaluate_command)
