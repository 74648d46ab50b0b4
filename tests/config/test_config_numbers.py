"""Numbers in config files: every float is finite and no number field takes a boolean.

The walk below visits every model reachable from the task and RLDG schemas, and every float
and int position in them (scalar fields, items of vectors and tuples, fields of list items
and dict values), so a field added later with a plain ``float`` fails here.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Iterator, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from robot_stack.cli import main
from robot_stack.config import ConfigError, TaskConfig, config_to_yaml, load_section_config, load_task_config
from robot_stack.config.rldg import RldgConfig, load_rldg_config

Position = tuple[Any, ...]

# A task with every optional section filled in, so that every model of the schema appears.
TASK_WITH_EVERY_SECTION: dict[str, Any] = {
    "robot": {"backend": "sim"},
    "cameras": {"cameras": {"front": {"kind": "sim", "exposure_us": 1000, "crop_xywh": [0, 0, 320, 240]}}},
    "teleop": {"kind": "scripted"},
    "task": {
        "name": "numbers",
        "observation": {"images": ["front"]},
        "reward": {
            "state_checks": [{"quantity": "tcp_z_m", "op": ">", "value": 0.1}],
            "vlm": {"model_path": "clip", "success_prompts": ["done"], "failure_prompts": ["not done"]},
        },
        "sim": {"scene": {"kind": "pick_cube"}},
    },
    "agent": {"encoder": {"pretrained_path": "trunk.safetensors", "pretrain": {}}},
}
PEG_TASK: dict[str, Any] = {
    "robot": {"backend": "sim"},
    "task": {"name": "peg", "gripper_mode": "fixed_closed", "sim": {"scene": {"kind": "peg_insertion"}}},
}
GYMNASIUM_TASK: dict[str, Any] = {
    "env": {
        "kind": "gymnasium", "factory": "envs_module:make_env",
        "observation": {"state_dim": 4, "images": {"front": [64, 64]}}, "action": {"dim": 2},
    },
    "task": {"name": "gym"},
}
RLDG: dict[str, Any] = {
    "name": "numbers",
    "base_task": "task.yaml",
    "variants": [{"name": "a", "instruction": "do a"}, {"name": "b", "instruction": "do b"}],
}

BAD_FLOATS = {"nan": float("nan"), "inf": float("inf"), "minus_inf": float("-inf")}


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        members = [member for member in get_args(annotation) if member is not type(None)]
        if len(members) == 1:
            return _unwrap_optional(members[0])
    if hasattr(annotation, "__metadata__"):  # Annotated[...]
        return _unwrap_optional(get_args(annotation)[0])
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _holds_a_number(annotation: Any) -> bool:
    """A float or int in this annotation, not counting those inside models it names."""
    annotation = _unwrap_optional(annotation)
    if annotation in (float, int):
        return True
    return not _is_model(annotation) and any(_holds_a_number(argument) for argument in get_args(annotation))


def number_fields_in_schema(root: type[BaseModel]) -> set[tuple[str, str]]:
    """(model, field) for every field holding a number, in every model reachable from root."""
    found: set[tuple[str, str]] = set()
    visited: set[type[BaseModel]] = set()

    def visit(annotation: Any) -> None:
        if _is_model(annotation):
            if annotation in visited:
                return
            visited.add(annotation)
            for name, field in annotation.model_fields.items():
                if _holds_a_number(field.annotation):
                    found.add((annotation.__name__, name))
                visit(field.annotation)
            return
        for argument in get_args(annotation):
            visit(argument)

    visit(root)
    return found


def number_positions(value: Any, annotation: Any, position: Position, walked: set[tuple[str, str]]) -> Iterator[tuple[Position, type]]:
    """(position, float or int) for every number of a validated config, walked with its annotation;
    ``walked`` collects the (model, field) pairs that held at least one."""
    annotation = _unwrap_optional(annotation)
    if annotation in (float, int):
        yield position, annotation
    elif isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            found = list(number_positions(getattr(value, name), field.annotation, position + (name,), walked))
            if found:
                walked.add((type(value).__name__, name))
            yield from found
    elif get_origin(annotation) is tuple and value is not None:
        arguments = get_args(annotation)
        for index, item in enumerate(value):
            item_annotation = arguments[0] if arguments[-1] is Ellipsis else arguments[index]
            yield from number_positions(item, item_annotation, position + (index,), walked)
    elif get_origin(annotation) in (list, dict) and value is not None:
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            yield from number_positions(item, get_args(annotation)[-1], position + (key,), walked)


def with_value_at(data: Any, positions: list[Position], bad: Any) -> Any:
    for position in positions:
        node = data
        for part in position[:-1]:
            node = node[part]
        node[position[-1]] = bad
    return data


def plain_data(config: BaseModel) -> dict[str, Any]:
    """The config as a YAML file would hold it, every default written out."""
    return yaml.safe_load(config_to_yaml(config))


def issues_by_field(error: ConfigError) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for issue in error.issues:
        found.setdefault(issue.field, []).append(f"{issue.location.file}: {issue.message}")
    return found


SCHEMA_CASES = [
    ("task", TaskConfig, TASK_WITH_EVERY_SECTION), ("peg_task", TaskConfig, PEG_TASK),
    ("gymnasium_task", TaskConfig, GYMNASIUM_TASK), ("rldg", RldgConfig, RLDG),
]


def walk(root: type[BaseModel], written: dict[str, Any]) -> tuple[BaseModel, list[tuple[Position, type]], set[tuple[str, str]]]:
    config = root.model_validate(written)
    walked: set[tuple[str, str]] = set()
    return config, list(number_positions(config, root, (), walked)), walked


def load(kind: str, file: Path) -> None:
    if kind == "rldg":
        load_rldg_config(file)
    else:
        load_task_config(file)


def test_the_examples_hold_every_number_field_of_every_model_of_the_task_and_rldg_schemas() -> None:
    in_schema = number_fields_in_schema(TaskConfig) | number_fields_in_schema(RldgConfig)
    walked: set[tuple[str, str]] = set()
    for _, root, written in SCHEMA_CASES:
        walked |= walk(root, written)[2]

    # dict keys are not walked: the one numeric key (teleop button indices) is checked below.
    assert sorted(in_schema - walked) == [("TeleopConfig", "button_map")]
    assert len(in_schema) > 150


@pytest.mark.parametrize("bad_name", sorted(BAD_FLOATS))
@pytest.mark.parametrize("kind, root, written", SCHEMA_CASES, ids=[case[0] for case in SCHEMA_CASES])
def test_every_float_in_the_schema_refuses_nan_and_inf_naming_file_and_field(
    tmp_path: Path, kind: str, root: type[BaseModel], written: dict[str, Any], bad_name: str
) -> None:
    config, positions, _ = walk(root, written)
    floats = [position for position, number in positions if number is float]
    file = tmp_path / f"{kind}.yaml"
    file.write_text(yaml.safe_dump(with_value_at(plain_data(config), floats, BAD_FLOATS[bad_name]), sort_keys=False))

    with pytest.raises(ConfigError) as caught:
        load(kind, file)

    named = issues_by_field(caught.value)
    for position in floats:
        field = ".".join(str(part) for part in position)
        assert named.get(field) == [f"{file}: Input should be a finite number"], field


@pytest.mark.parametrize("kind, root, written", SCHEMA_CASES, ids=[case[0] for case in SCHEMA_CASES])
def test_every_number_in_the_schema_refuses_a_boolean_naming_file_and_field(
    tmp_path: Path, kind: str, root: type[BaseModel], written: dict[str, Any]
) -> None:
    config, positions, _ = walk(root, written)
    numbers = [position for position, _ in positions]
    assert any(number is int for _, number in positions)
    file = tmp_path / f"{kind}.yaml"
    file.write_text(yaml.safe_dump(with_value_at(plain_data(config), numbers, True), sort_keys=False))

    with pytest.raises(ConfigError) as caught:
        load(kind, file)

    named = issues_by_field(caught.value)
    for position in numbers:
        field = ".".join(str(part) for part in position)
        assert named.get(field) == [f"{file}: expected a number, got the boolean true"], field


def test_a_boolean_teleop_button_index_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "teleop" / "mouse.yaml"
    file.parent.mkdir()
    file.write_text("kind: spacemouse\nbutton_map: {true: gripper_close}\n")

    with pytest.raises(ConfigError) as caught:
        load_section_config(file, "teleop")

    assert "expected a number, got the boolean true" in str(caught.value)


def test_config_check_refuses_a_nan_in_the_safety_box_naming_file_line_and_field(tmp_path: Path, capsys) -> None:
    file = tmp_path / "task.yaml"
    file.write_text(
        "robot: {backend: sim}\n"
        "task:\n"
        "  name: boxed\n"
        "  sim: {scene: {kind: pick_cube}}\n"
        "  safety_box:\n"
        "    xyz_min_m: [0.3, .nan, 0.02]\n"
    )

    exit_code = main(["config", "check", str(file)])

    assert exit_code == 1
    assert f"{file}:6: task.safety_box.xyz_min_m.1 = nan: Input should be a finite number" in capsys.readouterr().err


def test_config_check_refuses_yes_for_the_tcp_offset(tmp_path: Path, capsys) -> None:
    file = tmp_path / "robots" / "arm.yaml"
    file.parent.mkdir()
    file.write_text("backend: sim\ntcp_offset_m: [0.0, 0.0, yes]\n")

    exit_code = main(["config", "check", "--quiet", str(file)])

    assert exit_code == 1
    assert f"{file}:2: tcp_offset_m.2 = True: expected a number, got the boolean true" in capsys.readouterr().err
