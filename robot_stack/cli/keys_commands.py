"""robot-stack keys: CurveZMQ key pairs for the actor-learner links."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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
