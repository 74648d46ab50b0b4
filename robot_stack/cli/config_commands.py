"""robot-stack config: validate hardware and task YAML files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robot_stack.config import (
    CONFIG_KINDS,
    KIND_BY_DIRECTORY,
    ConfigError,
    config_to_yaml,
    infer_config_kind,
    load_section_config,
)


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
