"""robot-stack rldg: distil RL specialists into a generalist policy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from robot_stack.cli.common import load_config, positive_int, schema_flag, setup_logging


def _load_rldg(path: Path):
    from robot_stack.config.rldg import load_rldg_config

    return load_config(path, load_rldg_config)


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

    setup_logging("rldg")
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
    config = load_config(args.config, franka_command="rldg export-demos")
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
    from learner.rldg.evaluate_variants import EVAL_PLOT, EVAL_TABLE, evaluate

    setup_logging("rldg")
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
    specialists.add_argument("--max-env-steps", type=schema_flag(SpecialistTrainingConfig, "max_env_steps", int), default=None,
                             help="override specialists.max_env_steps")
    specialists.set_defaults(run=rldg_specialists_command)

    collect = commands.add_parser("collect", help="roll out specialists into a LeRobot v3 dataset", description=rldg_collect_command.__doc__)
    experiment(collect)
    collect.add_argument("--source", choices=("specialists", "human_like"), default="specialists",
                         help="the specialists' rollouts, or the scripted human-like demonstrator (the baseline)")
    collect.add_argument("--out", type=Path, default=None, help="dataset folder (default <run_dir>/data/<source>)")
    collect.add_argument("--variants", nargs="+", default=None, help="only these variants (default: the seen ones)")
    collect.add_argument("--episodes", type=positive_int, default=None, help="override collect.episodes_per_variant")
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
    finetune.add_argument("--steps", type=positive_int, default=None, help="override generalist.steps")
    finetune.add_argument("--init", type=Path, default=None, help="start from this local generalist checkpoint")
    finetune.set_defaults(run=rldg_finetune_command)

    evaluate = commands.add_parser("eval", help="success per variant, table and bar chart", description=rldg_eval_command.__doc__)
    experiment(evaluate)
    evaluate.add_argument("--generalist", nargs="*", default=[], metavar="[LABEL=]DIR", help="generalist checkpoint folders")
    evaluate.add_argument("--specialists", action="store_true", help="evaluate the specialists on their variants too")
    evaluate.add_argument("--variants", nargs="+", default=None, help="only these variants (default: all, held-out included)")
    evaluate.add_argument("--episodes", type=positive_int, default=None, help="override eval.episodes_per_variant")
    evaluate.add_argument("--out", type=Path, default=None, help="results folder (default <run_dir>/eval)")
    evaluate.set_defaults(run=rldg_eval_command)
