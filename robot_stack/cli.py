"""The `robot-stack` command.

Commands come in groups: ``robot-stack <group> <command> ...`` (``robot-stack config check``).
A group is one ``add_<group>_commands(groups)`` function, listed in ``COMMAND_GROUPS``; a
command is one function that takes the parsed arguments and returns the exit code, set as
the parser's ``run`` default. Commands import heavy dependencies (MuJoCo, torch) inside
their function, so ``robot-stack --help`` and ``config check`` stay fast.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from robot_stack import __version__
from robot_stack.config import (
    CONFIG_KINDS,
    KIND_BY_DIRECTORY,
    ConfigError,
    config_to_yaml,
    infer_config_kind,
    load_section_config,
)

# --------------------------------------------------------------------------- config


def config_check(args: argparse.Namespace) -> int:
    """Validate each file; print its resolved config, or every problem in it."""
    all_valid = True
    configs_printed = 0
    for file in args.files:
        try:
            kind = args.kind or infer_config_kind(file)
            if kind is None:
                print(_unknown_kind_message(file), file=sys.stderr)
                all_valid = False
                continue
            config = load_section_config(file, kind)
        except ConfigError as error:
            print(error, file=sys.stderr)
            all_valid = False
            continue
        if args.quiet:
            continue
        if configs_printed:
            print("---")
        print(f"# {file}: valid {kind} config, defaults filled in")
        print(config_to_yaml(config), end="")
        configs_printed += 1
    return 0 if all_valid else 1


def _unknown_kind_message(file: Path) -> str:
    folders = ", ".join(f"{folder}/" for folder in KIND_BY_DIRECTORY)
    return (
        f"{file}: cannot tell what kind of config this is: it has no top-level 'task' key and "
        f"its folder is not one of {folders}; pass --kind {{{','.join(CONFIG_KINDS)}}}"
    )


def add_config_commands(groups: argparse._SubParsersAction) -> None:
    config = groups.add_parser(
        "config",
        help="check hardware and task YAML files",
        description="Work with the YAML files under hardware_configs/.",
    )
    commands = config.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)

    check = commands.add_parser(
        "check",
        help="validate config files and print them fully resolved",
        description=(
            "Validate each FILE against the schema and print it fully resolved (includes and "
            "overrides applied, defaults filled in) as YAML. Problems go to stderr, naming file, "
            "line, field, the bad value and what is allowed. Exit code 1 if any file is invalid."
        ),
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML files to check")
    check.add_argument(
        "--kind",
        choices=CONFIG_KINDS,
        help=(
            "what the files hold; by default a file with a top-level 'task' key is a task file, "
            "otherwise its folder decides (robots/, cameras/, teleop/, sessions/, tasks/)"
        ),
    )
    check.add_argument("--quiet", action="store_true", help="print nothing for valid files, only problems")
    check.set_defaults(run=config_check)


# --------------------------------------------------------------------------- sim


def _load_sim_task(path: Path):
    """The task config, or None after printing why it cannot run in simulation."""
    from robot_stack.config import load_task_config

    try:
        config = load_task_config(path)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return None
    if config.robot.backend != "sim" or config.task.sim is None:
        print(
            f"{path}: task '{config.task.name}' runs on robot backend '{config.robot.backend}'; "
            "sim commands need a task whose robot backend is 'sim' and which has a 'sim' scene",
            file=sys.stderr,
        )
        return None
    return config


def _print_report(report) -> None:
    lengths = [e.steps for e in report.episodes]
    print(
        f"task {report.task}: success rate {report.success_rate:.1%} "
        f"({sum(e.success for e in report.episodes)}/{len(report.episodes)} episodes), "
        f"mean length {sum(lengths) / len(lengths):.1f} steps, "
        f"{report.env_steps} env steps in {report.wall_time_s:.1f} s ({report.steps_per_second:.1f} steps/s)"
    )
    clamped = sum(e.safety_clamped_steps for e in report.episodes)
    if clamped:
        print(f"safety box clamped the target on {clamped} steps")


def sim_expert(args: argparse.Namespace) -> int:
    """Roll out the scripted expert and print its success rate."""
    from robot_stack.sim.expert_runs import run_scripted_episodes, write_report

    config = _load_sim_task(args.task)
    if config is None:
        return 1
    noise = args.noise if args.noise is not None else 0.0
    report = run_scripted_episodes(config, args.episodes, seed=args.seed, noise_std=noise, progress=not args.no_progress)
    _print_report(report)
    if args.out is not None:
        for path in write_report(report, args.out):
            print(f"wrote {path}")
    return 0


def sim_demo(args: argparse.Namespace) -> int:
    """The simulated episode demo: the scripted teleoperator runs the task; frames are saved."""
    from robot_stack.sim.expert_runs import run_scripted_episodes, write_report

    config = _load_sim_task(args.task)
    if config is None:
        return 1
    frames_dir = args.out / "frames"
    report = run_scripted_episodes(
        config, args.episodes, seed=args.seed, noise_std=args.noise, frames_dir=frames_dir, progress=not args.no_progress
    )
    _print_report(report)
    for path in write_report(report, args.out):
        print(f"wrote {path}")
    print(f"wrote {report.frames_written} camera frames (PNG per frame, GIF per camera) under {frames_dir}")
    return 0


def add_sim_commands(groups: argparse._SubParsersAction) -> None:
    from robot_stack.config.schema import TeleopConfig

    sim = groups.add_parser(
        "sim",
        help="run tasks on the simulated FR3",
        description="Run a task YAML on the simulated FR3 (MuJoCo, 1 kHz impedance control, 10 Hz policy).",
    )
    commands = sim.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)

    def common(parser: argparse.ArgumentParser, episodes: int) -> None:
        parser.add_argument("--task", type=Path, required=True, metavar="TASK_YAML", help="task file (robot backend 'sim')")
        parser.add_argument("--episodes", type=_positive_int, default=episodes, help=f"episodes to run (default {episodes})")
        parser.add_argument("--seed", type=int, default=0, help="seed of the first episode; episode i uses seed+i")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    expert = commands.add_parser(
        "expert",
        help="print the scripted expert's success rate on a task",
        description="Roll out the noise-free scripted expert (or a noisy one with --noise) and print its success rate.",
    )
    common(expert, 50)
    noise = _schema_flag(TeleopConfig, "expert_noise_std", float)
    expert.add_argument("--noise", type=noise, default=None, help="Gaussian action noise std (action units; default 0)")
    expert.add_argument("--out", type=Path, default=None, help="also write episodes.csv and success.png here")
    expert.set_defaults(run=sim_expert)

    demo = commands.add_parser(
        "demo",
        help="run simulated episodes with the scripted teleoperator and save camera frames",
        description=(
            "The simulated task session demo: the scripted teleoperator (the task's teleop config, "
            "noise included) runs episodes; every camera frame is saved as PNG, each camera's episode "
            "as a GIF, with episodes.csv and success.png."
        ),
    )
    common(demo, 3)
    demo.add_argument("--noise", type=noise, default=None, help="override the teleop config's expert noise std")
    demo.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output directory (default outputs/demo)")
    demo.set_defaults(run=sim_demo)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _schema_flag(model: type, field: str, parse: Callable[[str], float], to_field_unit: float = 1) -> Callable[[str], float]:
    """An argparse type for a flag that overrides ``model``'s ``field``: the value is refused at
    parse time, naming the flag, unless the schema's field accepts it. Checked any later, the
    error would come from deeper down (for a session, from a child process citing the config
    file it generated)."""
    import math

    from pydantic import ValidationError

    allowed = _allowed_range(model.model_fields[field].metadata)

    def convert(text: str) -> float:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if parse is int else 'a number'}, got {text!r}"
            ) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number {allowed}, got {text}")
        try:
            model.model_validate({field: value * to_field_unit})
        except ValidationError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}") from None
        return value

    return convert


def _allowed_range(constraints: Sequence[object]) -> str:
    """'in (0, 1]', 'at least 1', 'greater than 0'... from a schema field's bounds."""
    bounds = {name: getattr(c, name) for c in constraints for name in ("gt", "ge", "lt", "le") if hasattr(c, name)}
    low = ("(", bounds["gt"]) if "gt" in bounds else ("[", bounds["ge"]) if "ge" in bounds else None
    high = (")", bounds["lt"]) if "lt" in bounds else ("]", bounds["le"]) if "le" in bounds else None

    def number(bound: float) -> str:
        return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"

    if low and high:
        return f"in {low[0]}{number(low[1])}, {number(high[1])}{high[0]}"
    if low:
        return f"{'greater than' if low[0] == '(' else 'at least'} {number(low[1])}"
    if high:
        return f"{'less than' if high[0] == ')' else 'at most'} {number(high[1])}"
    return "a valid value"


# --------------------------------------------------------------------------- keys


def keys_generate(args: argparse.Namespace) -> int:
    """Write a CurveZMQ key pair for the learner or an actor."""
    from robot_stack.transport.security import generate_keys

    try:
        public, secret = generate_keys(args.directory, args.name, overwrite=args.overwrite)
    except ValueError as error:
        print(f"robot-stack keys generate: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        # errno is None for generate_keys' own refusal to overwrite; set when the OS refused.
        reason = str(error) if error.errno is None else f"cannot write key files into {args.directory}: {error.strerror}"
        if error.errno is not None and error.filename and Path(error.filename) != Path(args.directory):
            reason += f" ({error.filename})"
        print(f"robot-stack keys generate: {reason}", file=sys.stderr)
        return 1
    print(f"wrote {public} (public key: copy it to the other machine)")
    print(f"wrote {secret} (secret key, mode 0600: keep it on this machine)")
    return 0


def add_keys_commands(groups: argparse._SubParsersAction) -> None:
    keys = groups.add_parser(
        "keys",
        help="CurveZMQ keys for authenticated, encrypted actor-learner links",
        description="Make the key files the session config names (server_*_key_file, client_secret_key_file, "
        "authorized_client_keys_dir).",
    )
    commands = keys.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    generate = commands.add_parser(
        "generate",
        help="write NAME.key (public) and NAME.key_secret (secret) into DIR",
        description="Write a CurveZMQ key pair: DIR/NAME.key (public) and DIR/NAME.key_secret (public + secret, "
        "mode 0600). Make one for the learner and one per actor; put each actor's .key file in the learner's "
        "authorized_client_keys_dir and the learner's .key file on every actor.",
    )
    generate.add_argument("directory", type=Path, metavar="DIR")
    generate.add_argument("--name", default="learner", help="file name stem (default 'learner'; use e.g. robot1 for an actor)")
    generate.add_argument("--overwrite", action="store_true", help="replace existing key files")
    generate.set_defaults(run=keys_generate)


# --------------------------------------------------------------------------- task session


def _load_task(path: Path):
    from robot_stack.config import load_task_config

    try:
        return load_task_config(path)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return None


def _stop_on_signals(name: str):
    """A threading.Event set by SIGINT/SIGTERM: the process finishes cleanly (final checkpoint)."""
    import logging
    import threading

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def handler(signum, frame):
        if stop.is_set():
            logging.getLogger(name).warning("already stopping; waiting for the final checkpoint")
        else:
            logging.getLogger(name).info("%s received: stopping cleanly", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _exit_with_supervisor(args: argparse.Namespace, signum: Optional[int] = None) -> None:
    """``signum`` (default SIGTERM) when the supervisor is gone: the signal this command stops
    cleanly on (the foreground steps stop on SIGINT, as on a Ctrl-C, keeping what they finished)."""
    # Before the slow imports and the config: an orphan should find out as early as it can.
    if args.parent_pid is not None:
        from robot_stack.lifetime import exit_with_parent

        exit_with_parent(args.parent_pid, signum=signal.SIGTERM if signum is None else signum)


def learner_command(args: argparse.Namespace) -> int:
    """The learner: trains from what the actors send, publishes weights, checkpoints."""
    stop = _stop_on_signals("learner")
    _exit_with_supervisor(args)
    config = _load_task(args.config)
    if config is None:
        return 1
    from learner.process import run_learner
    from robot_stack.data.checkpoints import CheckpointMismatchError
    from robot_stack.session import demo_dir
    from robot_stack.transport import PortInUse
    from robot_stack.transport.security import KeyFileError

    try:
        run_learner(config, stop, demo_dir=args.demos or demo_dir(config))
    except KeyFileError as error:
        print(f"learner: {error}", file=sys.stderr)
        return 1
    except CheckpointMismatchError as error:
        print(f"robot-stack learner: {error}", file=sys.stderr)
        return 2
    except PortInUse as error:
        print(f"learner: {error}", file=sys.stderr)
        return PortInUse.exit_code
    return 0


def actor_command(args: argparse.Namespace) -> int:
    """The actor: runs the policy on the robot (simulated here), streams transitions."""
    stop = _stop_on_signals("actor")
    _exit_with_supervisor(args)
    config = _load_task(args.config)
    if config is None:
        return 1
    from actor.process import run_actor
    from robot_stack.transport.actor_link import LinkRefused
    from robot_stack.transport.security import KeyFileError

    try:
        run_actor(config, args.actor_id, stop, seed=args.seed)
    except (LinkRefused, KeyFileError) as error:
        # Retrying cannot help (another task or spec, an unknown key): say why and stop.
        print(f"actor '{args.actor_id}': {error}", file=sys.stderr)
        return 1
    return 0


def record_demos_command(args: argparse.Namespace) -> int:
    """Demos from the teleop device (the scripted teleoperator in simulation), saved to disk."""
    _exit_with_supervisor(args, signal.SIGINT)
    config = _load_task(args.config)
    if config is None:
        return 1
    from actor.demos import record_demos
    from robot_stack.session import demo_dir

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
          f"{report.attempts} attempts) to {report.directory}")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    """Run the newest checkpoint's policy without interventions; write CSV and JSON."""
    _exit_with_supervisor(args, signal.SIGINT)
    config = _load_task(args.config)
    if config is None:
        return 1
    from actor.evaluate import evaluate_checkpoint
    from robot_stack.data.checkpoints import CheckpointMismatchError
    from robot_stack.policy.weights import WeightsMismatchError

    try:
        report = evaluate_checkpoint(config, args.checkpoints or Path(config.session.checkpoint_dir), args.episodes, args.out,
                                     seed=args.seed, progress=not args.no_progress, deterministic=not args.stochastic)
    except (FileNotFoundError, WeightsMismatchError, CheckpointMismatchError) as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 1
    actions = "sampled" if args.stochastic else "deterministic"
    print(f"evaluation ({actions} actions): success rate {report.success_rate:.1%} over {len(report.episodes)} episodes; "
          f"wrote {args.out}")
    return 0


def session_command(args: argparse.Namespace) -> int:
    """The simulated HIL-SERL task session: demos, learner and actor, evaluation."""
    from robot_stack.session import run_session

    try:
        run_session(
            args.config, args.run_dir, max_env_steps=args.max_env_steps, target_success_rate=args.target,
            eval_episodes=args.eval_episodes, demo_episodes=args.demo_episodes, max_wall_time_s=args.max_minutes * 60 if args.max_minutes else None,
            demos=args.demos, progress=not args.no_progress, interventions=not args.no_interventions,
        )
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    except RuntimeError as error:
        print(f"session failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Outside the training phase (demos, evaluation): nothing of the session's is left running.
        print("session interrupted", file=sys.stderr)
        return 130
    return 0


def supervised(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parent-pid", type=int, default=None, metavar="PID",
        help="stop cleanly when process PID (the session or ros2 launch that started this one) is no longer "
        "the parent: no process outlives its supervisor",
    )


def add_session_commands(groups: argparse._SubParsersAction) -> None:
    from robot_stack.config.schema import TrainingConfig

    def task(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("config", type=Path, metavar="CONFIG", help="task YAML")

    session = groups.add_parser("session", help="run a whole task session (demos, learner, actor, evaluation)",
                                description=session_command.__doc__)
    task(session)
    session.add_argument("--run-dir", type=Path, default=None, help="where checkpoints, logs and results go (default runs/<task>)")
    session.add_argument("--demos", type=Path, default=None, help="demo folder (default runs/demos/<task>; recorded if empty)")
    session.add_argument("--max-env-steps", type=_schema_flag(TrainingConfig, "max_env_steps", int), default=None,
                         help="step budget (default training.max_env_steps)")
    session.add_argument("--target", type=_schema_flag(TrainingConfig, "target_success_rate", float), default=None,
                         help="stop at this policy success rate, in (0, 1] (default training.target_success_rate)")
    session.add_argument("--eval-episodes", type=_schema_flag(TrainingConfig, "eval_episodes", int), default=None,
                         help="evaluation episodes after training (default training.eval_episodes)")
    session.add_argument("--demo-episodes", type=_schema_flag(TrainingConfig, "demo_episodes", int), default=None,
                         help="demos to record if none exist (default training.demo_episodes)")
    session.add_argument("--max-minutes", type=_schema_flag(TrainingConfig, "max_wall_time_s", float, to_field_unit=60), default=None,
                         help="wall-clock limit")
    session.add_argument("--no-interventions", action="store_true", help="the scripted teleoperator never steps in (ablation)")
    session.add_argument("--no-progress", action="store_true")
    session.set_defaults(run=session_command)

    learner = groups.add_parser("learner", help="run the learner (GPU PC)", description=learner_command.__doc__)
    task(learner)
    learner.add_argument("--demos", type=Path, default=None, help="demo folder (default: training.demo_dir)")
    supervised(learner)
    learner.set_defaults(run=learner_command)

    actor = groups.add_parser("actor", help="run an actor (robot PC)", description=actor_command.__doc__)
    task(actor)
    actor.add_argument("--actor-id", default="actor0", help="unique per robot; a restarted actor keeps its id")
    actor.add_argument("--seed", type=int, default=0)
    supervised(actor)
    actor.set_defaults(run=actor_command)

    demos = groups.add_parser("record-demos", help="record demos with the teleop device", description=record_demos_command.__doc__)
    task(demos)
    demos.add_argument("--episodes", type=_positive_int, default=20)
    demos.add_argument("--out", type=Path, default=None, help="demo folder (default: training.demo_dir)")
    demos.add_argument("--seed", type=int, default=0)
    demos.add_argument("--no-progress", action="store_true")
    supervised(demos)
    demos.set_defaults(run=record_demos_command)

    evaluate = groups.add_parser("evaluate", help="evaluate a checkpoint's policy without interventions", description=evaluate_command.__doc__)
    task(evaluate)
    evaluate.add_argument("--checkpoints", type=Path, default=None, help="checkpoint dir (default: session.checkpoint_dir)")
    evaluate.add_argument("--episodes", type=_positive_int, default=50)
    evaluate.add_argument("--out", type=Path, required=True)
    evaluate.add_argument("--seed", type=int, default=1_000_000, help="episode seeds start here (apart from training's)")
    evaluate.add_argument("--stochastic", action="store_true",
                          help="sample actions from the policy (as in training) instead of taking its mean")
    evaluate.add_argument("--no-progress", action="store_true")
    supervised(evaluate)
    evaluate.set_defaults(run=evaluate_command)


# --------------------------------------------------------------------------- reward


def reward_record_command(args: argparse.Namespace) -> int:
    """Episodes with every camera's frames stored and labelled success/failure."""
    config = _load_task(args.config)
    if config is None:
        return 1
    import os

    from robot_stack.reward.record import record_frames

    mixture = None
    if args.mixture:
        try:
            mixture = {k: float(v) for k, v in (item.split("=", 1) for item in args.mixture.split(","))}
        except ValueError:
            print(f"--mixture must look like expert=0.4,near_miss=0.4,wander=0.2, got '{args.mixture}'", file=sys.stderr)
            return 2
    key_fd = None
    if args.labels == "operator" and sys.stdin.isatty():
        import termios
        import tty

        key_fd = sys.stdin.fileno()
        saved = termios.tcgetattr(key_fd)
        tty.setcbreak(key_fd)
        print("label keys: s = success from now on, f = failure from now on (or hold the teleop 'success' button)")
    try:
        report = record_frames(config, args.episodes, args.out, labels=args.labels, seed=args.seed, stride=args.stride,
                               mixture=mixture, key_fd=key_fd, progress=not args.no_progress)
    except ValueError as error:
        print(f"reward record: {error}", file=sys.stderr)
        return 1
    finally:
        if key_fd is not None:
            termios.tcsetattr(key_fd, termios.TCSADRAIN, saved)
    print(report)
    return 0


def reward_train_command(args: argparse.Namespace) -> int:
    """Train the task's reward model on labelled frames; calibrate its threshold for precision."""
    config = _load_task(args.config)
    if config is None:
        return 1
    from robot_stack.reward.base import RewardModelError
    from robot_stack.reward.frames import FrameSetError
    from robot_stack.reward.workflow import train_reward_model

    _setup_logging("reward")
    try:
        report = train_reward_model(config, args.frames, args.out, progress=not args.no_progress)
    except (ValueError, FrameSetError, RewardModelError) as error:
        print(f"reward train: {error}", file=sys.stderr)
        return 1
    print(report)
    return 0


def reward_eval_command(args: argparse.Namespace) -> int:
    """Precision, recall, confusion matrix and PR curve of the reward model on held-out frames."""
    config = _load_task(args.config)
    if config is None:
        return 1
    from robot_stack.reward.base import RewardModelError
    from robot_stack.reward.frames import FrameSetError
    from robot_stack.reward.workflow import evaluate_reward_model

    try:
        report = evaluate_reward_model(config, args.frames, args.out, args.model)
    except (ValueError, FrameSetError, RewardModelError) as error:
        print(f"reward eval: {error}", file=sys.stderr)
        return 1
    print(report.summary())
    print(f"wrote {args.out / 'eval.json'} and {args.out / 'pr_curve.png'}")
    if args.min_precision is not None and report.precision < args.min_precision:
        print(f"precision {report.precision:.1%} is below --min-precision {args.min_precision:.1%}", file=sys.stderr)
        return 3
    return 0


def _setup_logging(name: str) -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")


def add_reward_commands(groups: argparse._SubParsersAction) -> None:
    reward = groups.add_parser("reward", help="record labelled frames, train and check a reward model",
                               description="The learned success detector: record, train, eval.")
    commands = reward.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)

    record = commands.add_parser("record", help=reward_record_command.__doc__, description=reward_record_command.__doc__)
    record.add_argument("config", type=Path, metavar="CONFIG", help="task YAML")
    record.add_argument("--episodes", type=_positive_int, default=20)
    record.add_argument("--out", type=Path, required=True, help="frame set directory")
    record.add_argument("--labels", choices=("ground_truth", "operator"), default="ground_truth",
                        help="ground_truth (simulation) or operator (teleop 'success' button, s/f keys)")
    record.add_argument("--stride", type=_positive_int, default=1, help="keep every N-th step's frames")
    record.add_argument("--mixture", default=None,
                        help="simulation: behaviour weights, e.g. expert=0.35,near_miss=0.4,wander=0.25")
    record.add_argument("--seed", type=int, default=0)
    record.add_argument("--no-progress", action="store_true")
    record.set_defaults(run=reward_record_command)

    train = commands.add_parser("train", help=reward_train_command.__doc__, description=reward_train_command.__doc__)
    train.add_argument("config", type=Path, metavar="CONFIG", help="task YAML (task.reward says which model)")
    train.add_argument("--frames", type=Path, nargs="+", required=True, help="frame set directories")
    train.add_argument("--out", type=Path, default=None, help="model directory (default: task.reward.classifier_path)")
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(run=reward_train_command)

    evaluate = commands.add_parser("eval", help=reward_eval_command.__doc__, description=reward_eval_command.__doc__)
    evaluate.add_argument("config", type=Path, metavar="CONFIG", help="task YAML")
    evaluate.add_argument("--frames", type=Path, nargs="+", required=True, help="held-out frame set directories")
    evaluate.add_argument("--model", type=Path, default=None, help="model directory (default: task.reward.classifier_path)")
    evaluate.add_argument("--out", type=Path, required=True, help="where eval.json and pr_curve.png go")
    evaluate.add_argument("--min-precision", type=float, default=None, help="exit 3 if the precision is below this")
    evaluate.set_defaults(run=reward_eval_command)


def encoder_pretrain_command(args: argparse.Namespace) -> int:
    """Pretrain the task's ResNet-10 trunk on recorded demo sets and frame sets (targets a real
    cell records: proprioception and the demos' own poses), fit its projection, and write the
    weights file the task's agent.encoder.pretrained_path names."""
    _exit_with_supervisor(args, signal.SIGINT)
    config = _load_task(args.config)
    if config is None:
        return 1
    from robot_stack.config.schema import EncoderPretrainConfig
    from robot_stack.policy.weights import WeightsMismatchError
    from learner.encoder_pretrain import PretrainError, pretrain_encoder

    out = args.out or config.agent.encoder.pretrained_path
    if out is None:
        print("encoder pretrain: give --out, or name the file in the task's agent.encoder.pretrained_path", file=sys.stderr)
        return 1
    settings = config.agent.encoder.pretrain or EncoderPretrainConfig()
    overrides = {key: value for key, value in (("objective", args.objective), ("steps", args.steps),
                                                ("max_minutes", args.max_minutes), ("seed", args.seed)) if value is not None}
    try:
        settings = EncoderPretrainConfig(**{**settings.model_dump(), **overrides})
    except ValueError as error:
        print(f"encoder pretrain: {error}", file=sys.stderr)
        return 1
    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    _setup_logging("encoder")
    try:
        report = pretrain_encoder(config, args.frames, out, settings=settings, init=args.init, progress=not args.no_progress)
    except (PretrainError, WeightsMismatchError) as error:
        print(f"encoder pretrain: {error}", file=sys.stderr)
        return 1
    print(pretrain_summary(report))
    print(f"wrote {out} ({report['seconds']:.0f} s); report {out}.json")
    return 0


def pretrain_summary(report: dict) -> str:
    """One line of an encoder pretraining report (the whole report is in WEIGHTS.json)."""
    # A target that does not vary in the held-out frames (the peg task's gripper) has no R^2.
    r2 = [value for camera in (report.get("validation_r2") or {}).values() for value in camera.values() if value is not None]
    projection = report.get("projection") or {}
    kept = (f", projection to {projection['channels']} channels keeps {projection['variance_kept']:.0%} of the variance"
            if projection.get("channels") else "")
    trained = f"loss {report['loss_start']} -> {report['loss_end']}" if report.get("loss_start") is not None else "no training"
    held_out = f", held-out R^2 median {statistics.median(r2):.2f} over {len(r2)} targets x cameras" if r2 else ""
    return f"encoder pretrain ({report['objective']}, {report['steps']} steps on {report['frames']} frames): {trained}{held_out}{kept}"


def encoder_convert_command(args: argparse.Namespace) -> int:
    """Convert published ImageNet ResNet-10 weights (SERL/HIL-SERL's resnet10_params.pkl, or the
    model.safetensors of LeRobot's resnet10) to a weights file agent.encoder.pretrained_path takes.
    The pickle is read by a reader that builds nothing but dicts and numeric arrays."""
    from robot_stack.policy.published_weights import PublishedWeightsError, convert_published

    try:
        report = convert_published(args.source, args.format, args.out)
    except PublishedWeightsError as error:
        print(f"encoder convert: {error}", file=sys.stderr)
        return 1
    unused = f"; left out: {', '.join(report['unused'])}" if report["unused"] else ""
    print(f"wrote {report['out']}: {report['tensors']} tensors, {report['parameters']:,} parameters from {report['source']} "
          f"({report['format']} layout){unused}")
    return 0


def add_encoder_commands(groups: argparse._SubParsersAction) -> None:
    from robot_stack.config.schema import EncoderPretrainConfig

    encoder = groups.add_parser("encoder", help="image encoder weights: pretrain on the lab's frames, convert published ones",
                                description="The ResNet-10 trunk's weights.")
    commands = encoder.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)

    pretrain = commands.add_parser("pretrain", help=encoder_pretrain_command.__doc__.split(";")[0],
                                   description=encoder_pretrain_command.__doc__)
    pretrain.add_argument("config", type=Path, metavar="CONFIG", help="task YAML (its cameras, agent.encoder settings)")
    pretrain.add_argument("--frames", type=Path, nargs="+", required=True, help="demo set and frame set directories")
    pretrain.add_argument("--out", type=Path, default=None, help="weights file (default: agent.encoder.pretrained_path)")
    pretrain.add_argument("--init", type=Path, default=None, help="start from these trunk weights (e.g. converted ImageNet ones)")
    pretrain.add_argument("--objective", choices=("keypoints", "proprioception", "contrastive"), default=None)
    pretrain.add_argument("--steps", type=_schema_flag(EncoderPretrainConfig, "steps", int), default=None,
                          help="optimiser steps (0: only fit the projection)")
    pretrain.add_argument("--max-minutes", type=_schema_flag(EncoderPretrainConfig, "max_minutes", float), default=None)
    pretrain.add_argument("--seed", type=_schema_flag(EncoderPretrainConfig, "seed", int), default=None)
    pretrain.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads (default: all)")
    pretrain.add_argument("--no-progress", action="store_true")
    supervised(pretrain)
    pretrain.set_defaults(run=encoder_pretrain_command)

    convert = commands.add_parser("convert", help="convert published ImageNet ResNet-10 weights",
                                  description=encoder_convert_command.__doc__)
    convert.add_argument("source", type=Path, metavar="SOURCE", help="resnet10_params.pkl (serl) or model.safetensors (lerobot)")
    convert.add_argument("--from", dest="format", choices=("serl", "lerobot"), required=True, help="the file's layout")
    convert.add_argument("--out", type=Path, required=True, help="weights file to write (safetensors)")
    convert.set_defaults(run=encoder_convert_command)


def hw_check_command(args: argparse.Namespace) -> int:
    """Connect to every device the task config names (arm, cameras, SpaceMouse) and report
    what is reachable, measured rates, and one frame per camera as PNG. Exit 1 if any fails."""
    config = _load_task(args.config)
    if config is None:
        return 1
    from robot_stack.hardware.check import run_check

    report = run_check(config, args.out, seconds=args.seconds)
    print(report.table())
    print(f"results: {args.out / 'hw_check.json'}")
    return 0 if report.ok else 1


def add_hw_commands(groups: argparse._SubParsersAction) -> None:
    hw = groups.add_parser("hw", help="bring-up checks of the real devices", description="Hardware bring-up.")
    commands = hw.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    check = commands.add_parser("check", help=hw_check_command.__doc__, description=hw_check_command.__doc__)
    check.add_argument("config", type=Path, metavar="CONFIG", help="task YAML")
    check.add_argument("--out", type=Path, default=Path("runs/hw_check"), help="where the PNGs and hw_check.json go")
    check.add_argument("--seconds", type=float, default=2.0, help="how long each device is measured")
    check.set_defaults(run=hw_check_command)


# --------------------------------------------------------------------------- rldg


def _load_rldg(path: Path):
    from robot_stack.config.rldg import load_rldg_config

    try:
        return load_rldg_config(path)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return None


def _labelled_paths(items: Sequence[str]) -> dict[str, Path]:
    """LABEL=PATH (or PATH, labelled by its folder name)."""
    labelled = {}
    for item in items:
        label, _, path = item.rpartition("=")
        labelled[label or Path(path).name] = Path(path)
    return labelled


def rldg_specialists_command(args: argparse.Namespace) -> int:
    """Train one HIL-SERL specialist per seen variant (a task session each); variants that
    already have a specialist keep it."""
    experiment = _load_rldg(args.config)
    if experiment is None:
        return 1
    from learner.rldg.specialists import train_specialists

    try:
        summaries = train_specialists(experiment, args.variants, retrain=args.retrain, progress=not args.no_progress,
                                      max_env_steps=args.max_env_steps)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"rldg specialists: {error}", file=sys.stderr)
        return 1
    for name, summary in summaries.items():
        evaluation = summary.get("evaluation") or {}
        rate = evaluation.get("success_rate")
        print(f"  {name}: {summary.get('checkpoints')}" + (f", evaluation success {rate:.0%}" if rate is not None else ""))
    return 0


def rldg_collect_command(args: argparse.Namespace) -> int:
    """Roll out the specialists (or the scripted human-like demonstrator) in their variants and
    write a LeRobotDataset v3 dataset with each variant's instruction."""
    experiment = _load_rldg(args.config)
    if experiment is None:
        return 1
    from learner.rldg.collect import collect

    _setup_logging("rldg")
    out = args.out or experiment.run_dir / "data" / args.source
    try:
        summary = collect(experiment, args.source, out, variants=args.variants, episodes_per_variant=args.episodes,
                          overwrite=args.overwrite, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError, ImportError) as error:
        print(f"rldg collect: {error}", file=sys.stderr)
        return 1
    for variant in summary["variants"]:
        print(f"  {variant['variant']}: kept {variant['kept']} of {variant['attempts']} episodes "
              f"({variant['success_rate']:.0%} succeeded), {variant['frames']} frames")
    print(f"wrote {summary['total_episodes']} episodes, {summary['total_frames']} frames to {out}")
    return 0


def rldg_export_demos_command(args: argparse.Namespace) -> int:
    """Export a demo set recorded by record-demos as a LeRobotDataset v3 dataset."""
    config = _load_task(args.config)
    if config is None:
        return 1
    from learner.rldg.collect import export_demos

    try:
        summary = export_demos(config, args.demos, args.instruction, args.out, image_storage=args.image_storage,
                               overwrite=args.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, ImportError) as error:
        print(f"rldg export-demos: {error}", file=sys.stderr)
        return 1
    print(f"wrote {summary['total_episodes']} episodes, {summary['total_frames']} frames to {args.out}")
    return 0


def rldg_validate_command(args: argparse.Namespace) -> int:
    """Check dataset folders against the LeRobotDataset v3 layout; exit 1 if any does not validate."""
    from robot_stack.data.lerobot_v3 import validate_dataset

    failed = 0
    for root in args.datasets:
        problems = validate_dataset(root, decode_videos=not args.no_video)
        if problems:
            failed += 1
            print(f"{root}: {len(problems)} problem(s)")
            for problem in problems:
                print(f"  {problem}")
        else:
            print(f"{root}: valid LeRobotDataset v3.0")
    return 1 if failed else 0


def rldg_finetune_command(args: argparse.Namespace) -> int:
    """Train the generalist on one or more LeRobot v3 datasets."""
    experiment = _load_rldg(args.config)
    if experiment is None:
        return 1
    from learner.rldg.finetune import finetune

    config = experiment.spec.generalist
    overrides = {key: value for key, value in (("steps", args.steps), ("init", args.init)) if value is not None}
    if overrides:
        config = config.model_copy(update=overrides)
    out = args.out or experiment.run_dir / "generalists" / Path(args.data[0]).name
    try:
        summary = finetune(config, args.data, out, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"rldg finetune: {error}", file=sys.stderr)
        return 1
    print(f"trained {summary['steps']} steps on {summary['frames']} frames in {summary['wall_time_s']:.0f} s "
          f"(final loss {summary['final_loss']:.4f}); saved to {out}")
    return 0


def rldg_eval_command(args: argparse.Namespace) -> int:
    """Success rate per variant (seen and held out) of generalists and, with --specialists,
    of the specialists: a table (Markdown, JSON) and a bar chart PNG."""
    experiment = _load_rldg(args.config)
    if experiment is None:
        return 1
    from learner.rldg.evaluate import EVAL_PLOT, EVAL_TABLE, evaluate

    _setup_logging("rldg")
    out = args.out or experiment.run_dir / "eval"
    try:
        evaluate(experiment, _labelled_paths(args.generalist), out, variants=args.variants,
                           episodes=args.episodes, include_specialists=args.specialists, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, KeyError) as error:
        print(f"rldg eval: {error}", file=sys.stderr)
        return 1
    print((out / EVAL_TABLE).read_text())
    print(f"wrote {out / EVAL_TABLE}, {out / EVAL_PLOT} and the JSON beside them")
    return 0


def add_rldg_commands(groups: argparse._SubParsersAction) -> None:
    from robot_stack.config.rldg import SpecialistTrainingConfig

    rldg = groups.add_parser("rldg", help="distil RL specialists into a generalist policy",
                             description="RLDG: specialists, collect, finetune, eval (and export-demos, validate).")
    commands = rldg.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)

    def experiment(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("config", type=Path, metavar="RLDG_YAML", help="RLDG experiment file (hardware_configs/rldg/)")
        parser.add_argument("--no-progress", action="store_true")

    specialists = commands.add_parser("specialists", help=rldg_specialists_command.__doc__.split(";")[0],
                                      description=rldg_specialists_command.__doc__)
    experiment(specialists)
    specialists.add_argument("--variants", nargs="+", default=None, help="only these variants")
    specialists.add_argument("--retrain", action="store_true", help="train again where a specialist exists")
    specialists.add_argument("--max-env-steps", type=_schema_flag(SpecialistTrainingConfig, "max_env_steps", int), default=None,
                             help="override specialists.max_env_steps")
    specialists.set_defaults(run=rldg_specialists_command)

    collect = commands.add_parser("collect", help="roll out specialists into a LeRobot v3 dataset", description=rldg_collect_command.__doc__)
    experiment(collect)
    collect.add_argument("--source", choices=("specialists", "human_like"), default="specialists",
                         help="the specialists' rollouts, or the scripted human-like demonstrator (the baseline)")
    collect.add_argument("--out", type=Path, default=None, help="dataset folder (default <run_dir>/data/<source>)")
    collect.add_argument("--variants", nargs="+", default=None, help="only these variants (default: the seen ones)")
    collect.add_argument("--episodes", type=_positive_int, default=None, help="override collect.episodes_per_variant")
    collect.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    collect.set_defaults(run=rldg_collect_command)

    export = commands.add_parser("export-demos", help=rldg_export_demos_command.__doc__, description=rldg_export_demos_command.__doc__)
    export.add_argument("config", type=Path, metavar="CONFIG", help="the task YAML the demos were recorded with")
    export.add_argument("demos", type=Path, metavar="DEMO_DIR", help="demo set folder (demos.json)")
    export.add_argument("--instruction", required=True, help="the language instruction of these demos")
    export.add_argument("--out", type=Path, required=True, help="dataset folder")
    export.add_argument("--image-storage", choices=("video", "image"), default="video")
    export.add_argument("--overwrite", action="store_true")
    export.set_defaults(run=rldg_export_demos_command)

    validate = commands.add_parser("validate", help=rldg_validate_command.__doc__, description=rldg_validate_command.__doc__)
    validate.add_argument("datasets", type=Path, nargs="+", metavar="DATASET")
    validate.add_argument("--no-video", action="store_true", help="do not decode the video files")
    validate.set_defaults(run=rldg_validate_command)

    finetune = commands.add_parser("finetune", help=rldg_finetune_command.__doc__, description=rldg_finetune_command.__doc__)
    experiment(finetune)
    finetune.add_argument("--data", type=Path, nargs="+", required=True, help="LeRobot v3 dataset folders")
    finetune.add_argument("--out", type=Path, default=None, help="checkpoint folder (default <run_dir>/generalists/<first dataset's name>)")
    finetune.add_argument("--steps", type=_positive_int, default=None, help="override generalist.steps")
    finetune.add_argument("--init", type=Path, default=None, help="start from this local generalist checkpoint")
    finetune.set_defaults(run=rldg_finetune_command)

    evaluate = commands.add_parser("eval", help="success per variant, table and bar chart", description=rldg_eval_command.__doc__)
    experiment(evaluate)
    evaluate.add_argument("--generalist", nargs="*", default=[], metavar="[LABEL=]DIR", help="generalist checkpoint folders")
    evaluate.add_argument("--specialists", action="store_true", help="evaluate the specialists on their variants too")
    evaluate.add_argument("--variants", nargs="+", default=None, help="only these variants (default: all, held-out included)")
    evaluate.add_argument("--episodes", type=_positive_int, default=None, help="override eval.episodes_per_variant")
    evaluate.add_argument("--out", type=Path, default=None, help="results folder (default <run_dir>/eval)")
    evaluate.set_defaults(run=rldg_eval_command)


# --------------------------------------------------------------------------- the parser

COMMAND_GROUPS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    add_config_commands,
    add_sim_commands,
    add_keys_commands,
    add_session_commands,
    add_reward_commands,
    add_encoder_commands,
    add_hw_commands,
    add_rldg_commands,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot-stack",
        description="HIL-SERL robot learning for Franka arms: configs, simulation and task sessions.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    groups = parser.add_subparsers(title="command groups", dest="group", metavar="GROUP", required=True)
    for add_commands in COMMAND_GROUPS:
        add_commands(groups)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command in argv (default: sys.argv[1:]); return its exit code.

    Usage errors and --help exit through argparse (SystemExit), as with any command line tool.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        # Commands that keep partial work (record-demos) or stop cleanly (learner, actor, session)
        # say so themselves; any other is only cut short.
        words = list(sys.argv[1:] if argv is None else argv)
        print(f"robot-stack {words[0] if words else ''}: interrupted", file=sys.stderr)
        return 130
