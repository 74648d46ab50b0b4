"""Files written so a reader never sees half of one: write beside it, then rename over it.

The session orchestrator polls the actor's status file while the actor rewrites it, and a
demo set interrupted half-way must not look complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(temporary_path)`` makes the file; it then replaces ``path`` in one rename."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: Any) -> None:
    def write(temporary: Path) -> None:
        temporary.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")

    write_atomic(path, write)


def read_json_object(path: Path, error: type[Exception], missing: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``error`` names the file and what is wrong with it
    (absent: "<folder>: no <name>, so <missing>")."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path.parent}: no {path.name}, so {missing}")
    try:
        data = json.loads(path.read_text())
    except ValueError as problem:
        raise error(f"{path}: not valid JSON: {problem}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object")
    return data
