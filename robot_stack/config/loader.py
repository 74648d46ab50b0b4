"""Load hardware and task YAML files into the schema's models, with errors that point at the line.

A task file names the robot, cameras, teleop device and session it runs with. Each of those
four sections is written one of three ways::

    robot: ../robots/sim_fr3.yaml            # a file, relative to the task file's folder
    robot:                                   # a file plus overrides, deep-merged over it
      include: ../robots/sim_fr3.yaml
      impedance: {translational_error_clip_m: [0.008, 0.008, 0.008]}
    robot: {backend: sim, name: fr3}         # the fields inline

Overrides merge mappings key by key; lists and scalars replace. An included file holds its
section's fields at the top level and cannot include further: one level keeps "where does
this value come from" answerable by reading two files.

Every user mistake ends in a ``ConfigError``. Each of its issues names the file and line where
the offending key was written (an override's line wins over the included file's), the dotted
field path as written in the YAML, the bad value, and what is allowed.

Provenance: ``load_task_config`` returns a ``LoadedTaskConfig``, which *is* a ``TaskConfig``
(code that takes a TaskConfig takes it unchanged) and adds ``source_path``, the task file it
was loaded from, so a run can record which file started it.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import types
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Annotated, Any, Iterator, Literal, Optional, Sequence, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, PrivateAttr, ValidationError

from robot_stack.config.schema import SECTION_MODELS, StrictModel, TaskConfig

INCLUDE_KEY = "include"

# A position in a YAML document: mapping keys and list indices from the top level down.
KeyPath = tuple[Any, ...]

# Config files are a few kilobytes. These bounds only stop files built to exhaust the
# machine: a few hundred bytes of nested aliases ("billion laughs") expand past gigabytes.
MAX_YAML_FILE_BYTES = 1 << 20
MAX_YAML_EXPANDED_NODES = 100_000

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAPPING_TAG = "tag:yaml.org,2002:map"
_SEQUENCE_TAG = "tag:yaml.org,2002:seq"
_LONGEST_SHOWN_VALUE = 80


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class SourceLocation:
    """Where something was written. Line and column count from 1, as editors do."""

    file: Path
    line: Optional[int] = None
    column: Optional[int] = None

    def __str__(self) -> str:
        text = str(self.file)
        if self.line is not None:
            text += f":{self.line}"
            if self.column is not None:
                text += f":{self.column}"
        return text


class _NoValue:
    """Marks an issue that has no offending value to show (a missing key, an unreadable file)."""

    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE = _NoValue()


@dataclass(frozen=True)
class ConfigIssue:
    """One problem with a config: where, which field, the offending value, what is allowed."""

    location: SourceLocation
    message: str
    field: str = ""  # dotted path from the loaded file's top level; "" for the file as a whole
    value: Any = NO_VALUE

    def __str__(self) -> str:
        subject = self.field
        if self.value is not NO_VALUE:
            subject += f" = {_describe_value(self.value)}"
        return f"{self.location}: {subject}: {self.message}" if subject else f"{self.location}: {self.message}"


class ConfigError(ValueError):
    """A config file that cannot be used, with every problem found in it (``issues``)."""

    def __init__(self, issues: Sequence[ConfigIssue], source: Optional[Path] = None):
        self.issues = tuple(issues)
        self.source = source
        super().__init__(self._message())

    def _message(self) -> str:
        count = len(self.issues)
        problems = f"{count} problem" + ("" if count == 1 else "s")
        header = f"{self.source}: invalid config ({problems})" if self.source else f"invalid config ({problems})"
        return "\n".join([header + ":"] + [f"  {issue}" for issue in self.issues])


def _describe_value(value: Any) -> str:
    text = repr(value)
    if len(text) > _LONGEST_SHOWN_VALUE:
        text = text[: _LONGEST_SHOWN_VALUE - 3] + "..."
    return text


def _dotted(path: KeyPath) -> str:
    return ".".join(str(part) for part in path)


# --------------------------------------------------------------------------- reading YAML


@dataclass(frozen=True)
class _Document:
    """A YAML file's top-level mapping, and where each key and list item in it was written."""

    file: Path
    data: dict[Any, Any]
    locations: dict[KeyPath, SourceLocation]


def _read_document(file: Path) -> _Document:
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_YAML_FILE_BYTES + 1)
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise _single_issue(file, "file not found") from None
    except IsADirectoryError:
        raise _single_issue(file, "is a folder, not a YAML file") from None
    except UnicodeDecodeError:
        raise _single_issue(file, "is not UTF-8 text") from None
    except OSError as error:
        raise _single_issue(file, f"cannot be read: {error.strerror}") from None
    _check_size(file, raw)

    with _composed(file, text) as (loader, root):
        if root is None:
            raise _single_issue(file, "file is empty; expected a mapping of keys")
        if not isinstance(root, yaml.MappingNode):
            what = "a list" if isinstance(root, yaml.SequenceNode) else f"the value {root.value!r}"
            raise ConfigError(
                [ConfigIssue(_node_location(file, root), f"the top level must be a mapping of keys, not {what}")],
                source=file,
            )
        return _DocumentBuilder(file, loader).build(root)


def load_yaml_text(text: str, source: str | os.PathLike[str]) -> Any:
    """``yaml.safe_load`` of text from a user (a command-line value, a file's contents) under
    the same bounds as config files; ConfigError naming ``source`` if it breaks one."""
    source = Path(source)
    _check_size(source, text.encode("utf-8"))
    with _composed(source, text) as (loader, root):
        return None if root is None else loader.construct_document(root)


def _check_size(file: Path, raw: bytes) -> None:
    if len(raw) > MAX_YAML_FILE_BYTES:
        raise _single_issue(
            file, f"is larger than {MAX_YAML_FILE_BYTES:,} bytes, the most a YAML config may be; is it the right file?"
        )


@contextlib.contextmanager
def _composed(file: Path, text: str) -> Iterator[tuple[yaml.SafeLoader, Optional[yaml.Node]]]:
    """The document's node tree, its alias expansion checked, and the loader that composed it;
    YAML errors become ConfigErrors naming the file."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is not None:
            _check_expansion(file, root)
        yield loader, root
    except yaml.MarkedYAMLError as error:
        raise ConfigError([_syntax_issue(file, error)], source=file) from None
    except yaml.YAMLError as error:
        raise _single_issue(file, f"malformed YAML: {error}") from None
    except RecursionError:
        raise _single_issue(file, "is nested too deeply to be a config file") from None
    finally:
        loader.dispose()


def _check_expansion(file: Path, root: yaml.Node) -> None:
    """Refuse a node tree whose aliases expand past MAX_YAML_EXPANDED_NODES, before anything
    expands them. An alias shares its anchor's node, so composing is cheap; building values
    (and merging ``<<`` keys) copies it once per reference. Sizes are counted once per node."""
    sizes: dict[int, int] = {}
    counting: set[int] = set()

    def expanded(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in counting:
            raise ConfigError([ConfigIssue(_node_location(file, node), "an alias refers to itself")], source=file)
        counting.add(id(node))
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(expanded(key) + expanded(value) for key, value in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(expanded(item) for item in node.value)
        counting.discard(id(node))
        if total > MAX_YAML_EXPANDED_NODES:
            raise ConfigError(
                [
                    ConfigIssue(
                        _node_location(file, node),
                        f"aliases (*name) expand this YAML past {MAX_YAML_EXPANDED_NODES:,} nodes, "
                        "the most a config file may hold",
                    )
                ],
                source=file,
            )
        sizes[id(node)] = total
        return total

    expanded(root)


def _single_issue(file: Path, message: str) -> ConfigError:
    return ConfigError([ConfigIssue(SourceLocation(file), message)], source=file)


def _node_location(file: Path, node: yaml.Node) -> SourceLocation:
    return SourceLocation(file, node.start_mark.line + 1)


def _syntax_issue(file: Path, error: yaml.MarkedYAMLError) -> ConfigIssue:
    mark = error.problem_mark or error.context_mark
    location = SourceLocation(file, mark.line + 1, mark.column + 1) if mark else SourceLocation(file)
    message = f"malformed YAML: {error.problem or error.context}"
    if error.problem and error.context:
        message += f" ({error.context}"
        if error.context_mark is not None:
            message += f" on line {error.context_mark.line + 1}"
        message += ")"
    return ConfigIssue(location, message)


class _DocumentBuilder:
    """Turns a composed YAML node tree into plain Python values, recording for every key path
    the line it was written on (yaml.load keeps no marks) and refusing duplicate keys
    (yaml.load silently keeps the last one, so a second `stiffness:` would win unnoticed)."""

    def __init__(self, file: Path, loader: yaml.SafeLoader):
        self.file = file
        self.loader = loader
        self.locations: dict[KeyPath, SourceLocation] = {}
        self.issues: list[ConfigIssue] = []

    def build(self, root: yaml.MappingNode) -> _Document:
        self.locations[()] = _node_location(self.file, root)
        data = self._value(root, ())
        if self.issues:
            raise ConfigError(self.issues, source=self.file)
        return _Document(self.file, data, self.locations)

    def _value(self, node: yaml.Node, path: KeyPath) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self.loader.construct_object(node, deep=True)
        if node.tag not in (_MAPPING_TAG, _SEQUENCE_TAG):
            # Scalars with unknown tags fail in construct_object; collections are walked here,
            # so their tags (!!python/object, !!set, ...) must be refused here.
            raise ConfigError(
                [ConfigIssue(_node_location(self.file, node), f"unsupported YAML tag {node.tag}", _dotted(path))],
                source=self.file,
            )
        # No cycle can reach here: _check_expansion refused aliases that refer to themselves.
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.locations[path + (index,)] = _node_location(self.file, item)
                items.append(self._value(item, path + (index,)))
            return items
        return self._mapping(node, path)

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[Any, Any]:
        first_written: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node, path)
            if key in first_written:
                self.issues.append(
                    ConfigIssue(
                        _node_location(self.file, key_node),
                        f"duplicate key '{key}' (first written on line {first_written[key].start_mark.line + 1}); "
                        "each key may appear once per mapping",
                        _dotted(path + (key,)),
                    )
                )
            else:
                first_written[key] = key_node
        # `<<: *anchor` merge keys: the merged entries come first, so keys written here win.
        self.loader.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            self.locations[path + (key,)] = _node_location(self.file, key_node)
            mapping[key] = self._value(value_node, path + (key,))
        return mapping

    def _key(self, key_node: yaml.Node, path: KeyPath) -> Any:
        if not isinstance(key_node, yaml.ScalarNode):
            raise ConfigError(
                [ConfigIssue(_node_location(self.file, key_node), "keys must be names or numbers", _dotted(path))],
                source=self.file,
            )
        return self.loader.construct_object(key_node, deep=True)


# --------------------------------------------------------------------------- task files


def _resolve_task_sections(task: _Document) -> tuple[dict[Any, Any], dict[KeyPath, SourceLocation]]:
    """The task document with each section reference replaced by the section's fields."""
    data = dict(task.data)
    locations = dict(task.locations)
    issues: list[ConfigIssue] = []
    for section in SECTION_MODELS:
        if data.get(section) is None:
            continue  # absent, or null: a gymnasium task has no robot section
        try:
            section_data, section_locations = _resolve_section(task, section)
        except ConfigError as error:
            issues.extend(error.issues)
            continue
        data[section] = section_data
        locations = {path: where for path, where in locations.items() if path[:1] != (section,)}
        locations.update(section_locations)
    if issues:
        raise ConfigError(issues, source=task.file)
    return data, locations


def _resolve_section(task: _Document, section: str) -> tuple[Any, dict[KeyPath, SourceLocation]]:
    value = task.data[section]
    named_at = task.locations[(section,)]
    written_here = {path: where for path, where in task.locations.items() if path[:1] == (section,)}

    if isinstance(value, dict) and INCLUDE_KEY not in value:
        return value, written_here
    if isinstance(value, str):
        reference, reference_field, overrides = value, section, {}
    elif isinstance(value, dict):
        reference, reference_field = value[INCLUDE_KEY], f"{section}.{INCLUDE_KEY}"
        overrides = {key: item for key, item in value.items() if key != INCLUDE_KEY}
        named_at = task.locations[(section, INCLUDE_KEY)]
        if not isinstance(reference, str) or not reference:
            message = f"must be the path of a {section} file, relative to this file"
            raise ConfigError([ConfigIssue(named_at, message, reference_field, reference)])
    else:
        raise ConfigError(
            [
                ConfigIssue(
                    named_at,
                    f"must be the path of a {section} file (relative to this file) or a mapping of {section} fields",
                    section,
                    value,
                )
            ]
        )

    included_file = Path(os.path.normpath(task.file.parent / reference))
    if not included_file.is_file():
        raise ConfigError(
            [ConfigIssue(named_at, f"referenced file not found: {included_file}", reference_field, reference)]
        )
    included = _read_document(included_file)
    _refuse_include(included)

    merged = _deep_merge(included.data, overrides)
    override_locations = {
        path[1:]: where for path, where in written_here.items() if len(path) > 1 and path[1] != INCLUDE_KEY
    }
    merged_locations = {
        path: where
        for path, where in {**included.locations, **override_locations}.items()
        # An override that replaces a list or a mapping leaves the included file's deeper
        # entries behind; only positions that still exist may be blamed.
        if _value_at(merged, path) is not NO_VALUE
    }
    locations = {(section,) + path: where for path, where in merged_locations.items() if path}
    locations[(section,)] = task.locations[(section,)]
    return merged, locations


def _refuse_include(document: _Document) -> None:
    if INCLUDE_KEY in document.data:
        raise ConfigError(
            [
                ConfigIssue(
                    document.locations[(INCLUDE_KEY,)],
                    "only a task file's robot/cameras/teleop/session sections may include a file; "
                    "an included or section file cannot include further (one level only)",
                    INCLUDE_KEY,
                    document.data[INCLUDE_KEY],
                )
            ],
            source=document.file,
        )


def _deep_merge(base: dict[Any, Any], overrides: dict[Any, Any]) -> dict[Any, Any]:
    """Overrides win; mappings merge key by key, anything else (lists included) replaces."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _value_at(data: Any, path: KeyPath) -> Any:
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return NO_VALUE
    return data


# --------------------------------------------------------------------------- validation


def _validate(
    model: type[StrictModel], data: dict[Any, Any], locations: dict[KeyPath, SourceLocation], source: Path
) -> StrictModel:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        issues = [_issue_from_pydantic(detail, model, data, locations) for detail in error.errors()]
        raise ConfigError(issues, source=source) from None


def _issue_from_pydantic(
    detail: Any, root: type[BaseModel], data: dict[Any, Any], locations: dict[KeyPath, SourceLocation]
) -> ConfigIssue:
    loc = tuple(detail["loc"])
    error_type = detail["type"]
    path, expected = _written_path(root, loc)
    message = re.sub(r"^(Value error|Assertion failed), ", "", detail["msg"])
    value = detail.get("input", NO_VALUE)
    parent_path, parent_expected = _written_path(root, loc[:-1])
    expected_length = _fixed_tuple_length(expected)

    if error_type == "extra_forbidden":
        message = _unknown_key_message(path[-1], parent_expected)
        value = NO_VALUE
    elif error_type == "missing" and _fixed_tuple_length(parent_expected) is not None:
        # pydantic reports a short fixed-length tuple as its first missing item.
        path, value = parent_path, _value_at(data, parent_path)
        message = f"expected exactly {_fixed_tuple_length(parent_expected)} items, got {len(value)}"
    elif error_type == "missing":
        message = f"required key '{path[-1]}' is missing"
        value = NO_VALUE
    elif error_type == "too_long" and expected_length is not None:
        message = f"expected exactly {expected_length} items, got {detail['ctx']['actual_length']}"
    elif error_type == "literal_error":
        message += _suggestion(value, [str(allowed) for allowed in get_args(expected)])
    elif error_type in ("value_error", "assertion_error") and _is_model(expected):
        path = _field_blamed_by(message, path, expected, locations)
        value = _value_at(data, path)
        if isinstance(value, dict):
            value = NO_VALUE
    elif error_type == "union_tag_invalid":
        discriminator = detail["ctx"]["discriminator"].strip("'")
        path, value = path + (discriminator,), detail["ctx"]["tag"]
        message = f"Input should be one of {detail['ctx']['expected_tags']}"
        message += _suggestion(value, [tag.strip("'") for tag in detail["ctx"]["expected_tags"].split(", ")])
    elif error_type == "union_tag_not_found":
        discriminator = detail["ctx"]["discriminator"].strip("'")
        tags = [tag for member in get_args(expected) for tag in _literal_values(member, discriminator)]
        message = f"required key '{discriminator}' is missing; allowed: " + ", ".join(repr(tag) for tag in tags)
        value = NO_VALUE
    return ConfigIssue(_nearest_location(locations, path), message, _dotted(path), value)


def _unknown_key_message(key: Any, model: Any) -> str:
    if not _is_model(model):
        return f"unknown key '{key}'"
    allowed = list(model.model_fields)
    return f"unknown key '{key}'; allowed keys: {', '.join(allowed)}" + _suggestion(key, allowed)


def _suggestion(written: Any, allowed: Sequence[str]) -> str:
    closest = difflib.get_close_matches(str(written), allowed, n=1)
    if not closest:
        # Field names carry their units, so a typo is often of one word of a long name:
        # 'stifness' for translational_stiffness_n_per_m.
        closest = [
            name
            for name in allowed
            if difflib.get_close_matches(str(written), [w for w in name.split("_") if len(w) >= 4], n=1, cutoff=0.8)
        ][:3]
    if not closest:
        return ""
    return " (did you mean " + " or ".join(f"'{name}'" for name in closest) + "?)"


def _field_blamed_by(
    message: str, model_path: KeyPath, model: type[BaseModel], locations: dict[KeyPath, SourceLocation]
) -> KeyPath:
    """A rule over a whole model (a model_validator) fails with no field of its own. Point at
    the first field its message names that is written in the files: a dotted path from the top
    level ('task.observation.images') or one of the model's own fields ('backend'). Messages
    that name no written field stay on the model."""
    for word in re.findall(r"[A-Za-z_]\w*(?:\.\w+)*", message):
        parts = tuple(word.split("."))
        candidates = [parts, model_path + parts] if len(parts) > 1 else []
        if len(parts) == 1 and word in model.model_fields:
            candidates.append(model_path + parts)
        for candidate in candidates:
            if candidate in locations:
                return candidate
    return model_path


def _nearest_location(locations: dict[KeyPath, SourceLocation], path: KeyPath) -> SourceLocation:
    """Where path was written, or where its closest written parent was (a missing key has no line)."""
    for length in range(len(path), -1, -1):
        if path[:length] in locations:
            return locations[path[:length]]
    raise KeyError(f"no location recorded for {path}")  # a document always records its top level


# --------------------------------------------------------------------------- pydantic locations


def _written_path(root: type[BaseModel], loc: Sequence[Any]) -> tuple[KeyPath, Any]:
    """Translate a pydantic error location into the key path as written in the YAML, and the
    type the schema expects there. The two differ where pydantic adds entries of its own: a
    tagged union inserts the chosen tag ('task.sim.scene.peg_insertion.hole_clearance_m'), and
    a bad dict key ends in '[key]'."""
    path: list[Any] = []
    expected: Any = root
    for part in loc:
        expected = _unwrap(expected)
        if part == "[key]":
            expected = None
            continue
        if _is_union(expected):
            expected = _union_member_with_tag(expected, part)
            continue
        path.append(part)
        expected = _child_type(expected, part)
    return tuple(path), _unwrap(expected)


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] and Optional[...]: neither adds a position of its own."""
    if get_origin(annotation) is Annotated:
        return _unwrap(get_args(annotation)[0])
    if _is_union(annotation):
        members = [member for member in get_args(annotation) if member is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _union_member_with_tag(union: Any, tag: Any) -> Any:
    for member in get_args(union):
        if _is_model(member) and any(tag in _literal_values(member, name) for name in member.model_fields):
            return member
    return None


def _literal_values(model: Any, field_name: str) -> tuple[Any, ...]:
    field = model.model_fields.get(field_name) if _is_model(model) else None
    return get_args(field.annotation) if field is not None and get_origin(field.annotation) is Literal else ()


def _child_type(annotation: Any, part: Any) -> Any:
    if _is_model(annotation):
        field = annotation.model_fields.get(part)
        return field.annotation if field is not None else None
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        return args[part] if isinstance(part, int) and 0 <= part < len(args) else None
    if origin is dict:
        return args[1]
    if origin in (list, set, frozenset) and args:
        return args[0]
    return None


def _fixed_tuple_length(annotation: Any) -> Optional[int]:
    if get_origin(annotation) is not tuple:
        return None
    args = get_args(annotation)
    return None if len(args) == 2 and args[1] is Ellipsis else len(args)


# --------------------------------------------------------------------------- public API


class LoadedTaskConfig(TaskConfig):
    """A TaskConfig loaded from a file, remembering that file (``source_path``).

    It validates and dumps exactly like a TaskConfig; only equality differs (it compares
    the source too, and never equals a plain TaskConfig)."""

    _source_path: Path = PrivateAttr()

    @property
    def source_path(self) -> Path:
        """The task file this config was loaded from, as the caller named it."""
        return self._source_path


def load_task_config(path: str | os.PathLike[str]) -> LoadedTaskConfig:
    """Load a task file and the robot/cameras/teleop/session files it references.

    Raises ConfigError naming file, line, field, value and what is allowed for every problem.
    """
    task_file = Path(path)
    task = _read_document(task_file)
    data, locations = _resolve_task_sections(task)
    config = _validate(LoadedTaskConfig, data, locations, source=task_file)
    config._source_path = task_file
    return config


def load_model_file(path: str | os.PathLike[str], model: type[StrictModel]) -> StrictModel:
    """Load a YAML file that holds one model's fields at its top level (no include), with the
    same located errors as a task file's (file, line, field, value, what is allowed)."""
    file = Path(path)
    document = _read_document(file)
    _refuse_include(document)
    return _validate(model, document.data, document.locations, source=file)


class _ConfigDumper(yaml.SafeDumper):
    """Writes resolved configs: tuples as lists, vectors on one line, paths as strings, no &anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_sequence(dumper: yaml.SafeDumper, items: Sequence[Any]) -> yaml.Node:
    one_line = not any(isinstance(item, (dict, list, tuple)) for item in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=one_line)


_ConfigDumper.add_representer(tuple, _represent_sequence)
_ConfigDumper.add_representer(list, _represent_sequence)
_ConfigDumper.add_multi_representer(PurePath, lambda dumper, value: dumper.represent_str(str(value)))


def config_to_yaml(config: BaseModel) -> str:
    """The config with every default filled in, as YAML that loads back to the same config."""
    return yaml.dump(config.model_dump(), Dumper=_ConfigDumper, sort_keys=False, width=120)


def with_fields(model: BaseModel, path: str, **fields: Any) -> BaseModel:
    """A copy of a frozen config with the fields of the section at ``path`` (dotted) replaced."""
    if not path:
        return model.model_copy(update=fields)
    head, _, rest = path.partition(".")
    return model.model_copy(update={head: with_fields(getattr(model, head), rest, **fields)})
