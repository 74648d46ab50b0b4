"""The schema package: one module per section of a task file, every model importable from
``robot_stack.config.schema``, and the whole task file on top of the sections."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

from pydantic import BaseModel

import robot_stack.config.schema as schema

SCHEMA_DIR = Path(schema.__file__).parent


def models_reachable_from(root: type[BaseModel]) -> set[type[BaseModel]]:
    found: set[type[BaseModel]] = set()
    pending = [root]
    while pending:
        model = pending.pop()
        if model in found:
            continue
        found.add(model)
        for field in model.model_fields.values():
            annotations = [field.annotation]
            while annotations:
                annotation = annotations.pop()
                if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                    pending.append(annotation)
                annotations.extend(typing.get_args(annotation))
    return found


def project_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_every_model_of_the_task_file_is_exported_by_the_schema_package():
    exported = [getattr(schema, name) for name in schema.__all__]

    missing = sorted(m.__name__ for m in models_reachable_from(schema.TaskConfig) if m not in exported)

    assert missing == []


def test_no_section_module_imports_the_task_file_that_joins_them():
    sections = sorted(p for p in SCHEMA_DIR.glob("*.py") if p.stem not in ("__init__", "task_file"))

    importers = [p.name for p in sections if "robot_stack.config.schema.task_file" in project_imports(p)]

    assert len(sections) >= 10
    assert importers == []


def test_the_primitives_import_no_section():
    imports = project_imports(SCHEMA_DIR / "primitives.py")

    assert not [m for m in imports if m.startswith("robot_stack.")]
