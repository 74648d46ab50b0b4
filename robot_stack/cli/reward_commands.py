"""robot-stack reward: record labelled frames, train and evaluate the reward model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robot_stack.cli.common import load_config, positive_int, setup_logging, single_keys_from_terminal


def reward_record_command(args: argparse.Namespace) -> int:
    """Episodes with every camera's frames stored and labelled success/failure."""
    config = load_config(args.config, franka_command="reward record")
    if config is None:
        return 1
    from robot_stack.reward.record import record_frames

    mixture = None
    if args.mixture:
        try:
            mixture = {k: float(v) for k, v in (item.split("=", 1) for item in args.mixture.split(","))}
        except ValueError:
            print(f"--mixture must look like expert=0.4,near_miss=0.4,wander=0.2, got '{args.mixture}'", file=sys.stderr)
            return 2
    with single_keys_from_terminal(args.labels == "operator") as key_fd:
        if key_fd is not None:
            print("label keys: s = success from now on, f = failure from now on (or hold the teleop 'success' button)")
        try:
            report = record_frames(config, args.episodes, args.out, labels=args.labels, seed=args.seed, stride=args.stride,
                                   mixture=mixture, key_fd=key_fd, progress=not args.no_progress)
        except ValueError as error:
            print(f"reward record: {error}", file=sys.stderr)
            return 1
    print(report)
    return 0


def reward_train_command(args: argparse.Namespace) -> int:
    """Train the task's reward model on labelled frames; calibrate its threshold for precision."""
    config = load_config(args.config, franka_command="reward train")
    if config is None:
        return 1
    from robot_stack.reward.base import RewardModelError
    from robot_stack.reward.frame_sets import FrameSetError
    from robot_stack.reward.workflow import train_reward_model

    setup_logging("reward")
    try:
        report = train_reward_model(config, args.frames, args.out, progress=not args.no_progress)
    except (ValueError, FrameSetError, RewardModelError) as error:
        print(f"reward train: {error}", file=sys.stderr)
        return 1
    print(report)
    return 0


def reward_eval_command(args: argparse.Namespace) -> int:
    """Precision, recall, confusion matrix and PR curve of the reward model on held-out frames."""
    config = load_config(args.config, franka_command="reward eval")
    if config is None:
        return 1
    from robot_stack.reward.base import RewardModelError
    from robot_stack.reward.frame_sets import FrameSetError
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


def add_reward_commands(groups: argparse._SubParsersAction) -> None:
    reward = groups.add_parser("reward", help="record labelled frames, train and check a reward model",
                               description="The learned success detector: record, train, eval.")
    commands = reward.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)

    record = commands.add_parser("record", help=reward_record_command.__doc__, description=reward_record_command.__doc__)
    record.add_argument("config", type=Path, metavar="CONFIG", help="task YAML")
    record.add_argument("--episodes", type=positive_int, default=20)
    record.add_argument("--out", type=Path, required=True, help="frame set directory")
    record.add_argument("--labels", choices=("ground_truth", "operator"), default="ground_truth",
                        help="ground_truth (simulation) or operator (teleop 'success' button, s/f keys)")
    record.add_argument("--stride", type=positive_int, default=1, help="keep every N-th step's frames")
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
