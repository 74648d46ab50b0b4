"""Code a YAML file names as 'package.module:attribute' (an env factory, an expert, a plugin)."""

from __future__ import annotations

import importlib
from typing import Any


def load_code_reference(reference: str, field: str) -> Any:
    """The attribute ``reference`` names; ValueError naming ``field`` when it cannot be had.
    The module is imported here, so the YAML that names it decides what code runs: only load
    task files you trust, as you would only run scripts you trust."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{field} {reference!r}: expected 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"{field} {reference!r}: cannot import {module_name} ({error})") from error
    if not hasattr(module, attribute):
        raise ValueError(f"{field} {reference!r}: module {module_name} has no attribute '{attribute}'")
    return getattr(module, attribute)
