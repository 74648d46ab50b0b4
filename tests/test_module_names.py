"""No two project modules share a file name unless they are the same concept.

A file name is what a reader searches for, what a traceback and an editor tab show, and
often a logger's last word: two ``loop.py`` (the transport's sockets, the controller's
real-time thread) make each of these ambiguous. A module's name says what it holds.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from test_import_graph import PROJECT_PACKAGES, REPO_ROOT

# Names every package has by Python's convention: the same role everywhere.
CONVENTIONAL_NAMES = {"__init__.py", "__main__.py"}

# File names that several project modules may share because they hold the same concept, each
# with the reason. Empty today; an entry that no longer names a shared file fails the test.
ALLOWED_SHARED_NAMES: dict[str, str] = {}


def modules_by_file_name() -> dict[str, list[Path]]:
    by_name: dict[str, list[Path]] = defaultdict(list)
    for root, package in PROJECT_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if path.name not in CONVENTIONAL_NAMES:
                by_name[path.name].append(path.relative_to(REPO_ROOT))
    return by_name


def test_no_two_project_modules_share_a_file_name():
    shared = {name: paths for name, paths in modules_by_file_name().items() if len(paths) > 1}
    unexpected = {name: paths for name, paths in shared.items() if name not in ALLOWED_SHARED_NAMES}
    stale = sorted(set(ALLOWED_SHARED_NAMES) - set(shared))
    assert not unexpected, "modules that share a file name (rename one so the name says what it holds): " + "; ".join(
        f"{name}: {', '.join(map(str, paths))}" for name, paths in sorted(unexpected.items())
    )
    assert not stale, f"ALLOWED_SHARED_NAMES lists names no two modules share any more: {stale}"
