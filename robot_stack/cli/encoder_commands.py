"""robot-stack encoder: the image encoder's weights (pretrain on the lab's frames, convert
published ones)."""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
from pathlib import Path

from robot_stack.cli.common import exit_with_supervisor, load_config, positive_int, schema_flag, setup_logging, supervised


def encoder_pretrain_command(args: argparse.Namespace) -> int:
    """Pretrain the task's ResNet-10 trunk on recorded demo sets and frame sets (targets a real
    cell records: proprioception and the demos' own poses), fit its projection, and write the
    weights file the task's agent.encoder.pretrained_path names."""
    exit_with_supervisor(args, signal.SIGINT)
    config = load_config(args.config, franka_command="encoder pretrain")
    if config is None:
        return 1
    from robot_stack.config.schema import EncoderPretrainConfig
    from robot_stack.policy.weights_io import WeightsMismatchError
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
    setup_logging("encoder")
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
    pretrain.add_argument("--steps", type=schema_flag(EncoderPretrainConfig, "steps", int), default=None,
                          help="optimiser steps (0: only fit the projection)")
    pretrain.add_argument("--max-minutes", type=schema_flag(EncoderPretrainConfig, "max_minutes", float), default=None)
    pretrain.add_argument("--seed", type=schema_flag(EncoderPretrainConfig, "seed", int), default=None)
    pretrain.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: all)")
    pretrain.add_argument("--no-progress", action="store_true")
    supervised(pretrain)
    pretrain.set_defaults(run=encoder_pretrain_command)

    convert = commands.add_parser("convert", help="convert published ImageNet ResNet-10 weights",
                                  description=encoder_convert_command.__doc__)
    convert.add_argument("source", type=Path, metavar="SOURCE", help="resnet10_params.pkl (serl) or model.safetensors (lerobot)")
    convert.add_argument("--from", dest="format", choices=("serl", "lerobot"), required=True, help="the file's layout")
    convert.add_argument("--out", type=Path, required=True, help="weights file to write (safetensors)")
    convert.set_defaults(run=encoder_convert_command)
