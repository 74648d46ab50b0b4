"""The kinds of config file (robot, cameras, teleop, session, task, RLDG experiment), how to
tell which one a file is, and how to load any one of them (``robot-stack config check``).

It sits above both the task loader and the RLDG experiment file, which is built on the
loader, so neither has to know about the other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional, get_args

from robot_stack.config.loader import _read_document, load_model_file, load_task_config
from robot_stack.config.rldg import load_rldg_config
from robot_stack.config.schema import SECTION_MODELS, StrictModel

ConfigKind = Literal["robot", "cameras", "teleop", "session", "task", "rldg"]
CONFIG_KINDS: tuple[ConfigKind, ...] = get_args(ConfigKind)

# The folders of hardware_configs/ and the kind of file each holds.
KIND_BY_DIRECTORY: dict[str, ConfigKind] = {
    "robots": "robot",
    "cameras": "cameras",
    "teleop": "teleop",
    "sessions": "session",
    "rldg": "rldg",
    "tasks": "task",
}


def load_section_config(path: str | os.PathLike[str], kind: ConfigKind) -> StrictModel:
    """Load one file of the given kind: a robot/cameras/teleop/session file (fields at the
    top level, no include), a task file (``kind="task"``, same as load_task_config), or an
    RLDG experiment file (``kind="rldg"``, its variants resolved and checked too)."""
    if kind == "task":
        return load_task_config(path)
    if kind == "rldg":
        return load_rldg_config(path).spec
    if kind not in SECTION_MODELS:
        raise ValueError(f"unknown config kind {kind!r}; expected one of {', '.join(CONFIG_KINDS)}")
    return load_model_file(path, SECTION_MODELS[kind])


def infer_config_kind(path: str | os.PathLike[str]) -> Optional[ConfigKind]:
    """The kind of config a file holds: 'task' if it has a top-level ``task`` key, otherwise
    the kind its folder holds (robots/, cameras/, teleop/, sessions/, tasks/); None if neither
    tells. Raises ConfigError if the file cannot be read as a YAML mapping."""
    file = Path(path)
    if "task" in _read_document(file).data:
        return "task"
    return KIND_BY_DIRECTORY.get(Path(os.path.abspath(file)).parent.name)
