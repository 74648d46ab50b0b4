"""No import cycles between the project's modules.

A cycle says a concept lives in the wrong place: two modules that need each other are one
concept split in two, or a third concept both should import from. The graph is read from
the source with ``ast`` (nothing is imported), so a new cycle fails here with its path.

What counts as an edge:
- every ``import``/``from ... import`` of a project module, at module level AND inside
  functions. A lazy import only defers the cycle to the first call; it still says the
  two modules depend on each other.
- ``importlib.import_module("a.b")`` with a literal name, for the same reason.
- not imports under ``if TYPE_CHECKING:``: they never run.

How packages are treated:
- ``import a.b.c`` is an edge to ``a.b.c`` only, not to ``a`` and ``a.b``: Python runs the
  package ``__init__`` files too, but counting that would tie every module to its
  package's re-exports.
- a package ``__init__`` importing its own submodules (re-exporting them) is no edge.
- ``from a import name`` where ``a/__init__.py`` re-exports ``name`` from ``a.sub`` is an
  edge to ``a.sub``, the module that defines it; ``from a import sub`` (a submodule) is an
  edge to ``a.sub``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# (folder that holds the top-level package, top-level package name)
PROJECT_PACKAGES = [
    (REPO_ROOT, "robot_stack"),
    (REPO_ROOT, "actor"),
    (REPO_ROOT, "learner"),
    (REPO_ROOT / "ros_ws" / "src" / "robot_stack_ros", "robot_stack_ros"),
]


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    # (imported module or "from" base, imported names or None for a plain import, line)
    imports: list[tuple[str, tuple[str, ...] | None, int]] = field(default_factory=list)
    # name -> module it is re-exported from (package __init__ only)
    reexports: dict[str, str] = field(default_factory=dict)


def _module_name(root: Path, path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve_relative(module: Module, level: int, base: str | None) -> str:
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{base}" if base else package


def _collect(module: Module, tree: ast.AST) -> None:
    def visit(node: ast.AST, top_level: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, top_level)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                module.imports.append((alias.name, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = _resolve_relative(module, node.level, node.module)
            names = tuple(alias.name for alias in node.names)
            module.imports.append((base, names, node.lineno))
            if module.is_package and top_level:
                for alias in node.names:
                    module.reexports[alias.asname or alias.name] = base
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            module.imports.append((node.args[0].value, None, node.lineno))
        nested = top_level and not isinstance(
            node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
        )
        for child in ast.iter_child_nodes(node):
            visit(child, nested)

    for statement in tree.body:  # type: ignore[attr-defined]
        visit(statement, True)


def project_modules() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for root, package in PROJECT_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            name, is_package = _module_name(root, path)
            module = Module(name, path, is_package)
            _collect(module, ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
            modules[name] = module
    return modules


def _target(modules: dict[str, Module], base: str, name: str | None) -> str | None:
    """The project module that an import of ``name`` from ``base`` depends on."""
    if name is not None and f"{base}.{name}" in modules:
        return f"{base}.{name}"
    seen = set()
    while base in modules and name is not None and name in modules[base].reexports and base not in seen:
        seen.add(base)
        source = modules[base].reexports[name]
        if f"{source}.{name}" in modules:
            return f"{source}.{name}"
        base = source
    return base if base in modules else None


def import_graph(modules: dict[str, Module]) -> dict[str, dict[str, int]]:
    """module -> {imported project module: first line of the import}."""
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for module in modules.values():
        for base, names, line in module.imports:
            for name in names or (None,):
                target = _target(modules, base, name)
                if target is None or target == module.name:
                    continue
                if module.is_package and target.startswith(module.name + "."):
                    continue
                graph[module.name].setdefault(target, line)
    return graph


def strongly_connected_components(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph is a few hundred nodes, but no recursion limit
    to think about)."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = lowlink[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = lowlink[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    advanced = True
                    break
                if successor in on_stack:
                    lowlink[node] = min(lowlink[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                lowlink[work[-1][0]] = min(lowlink[work[-1][0]], lowlink[node])
            if lowlink[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _describe(component: list[str], graph: dict[str, dict[str, int]], modules: dict[str, Module]) -> str:
    members = set(component)
    lines = [" <-> ".join(component)]
    for name in component:
        for target, line in sorted(graph[name].items()):
            if target in members:
                path = modules[name].path.relative_to(REPO_ROOT)
                lines.append(f"    {name} -> {target}  ({path}:{line})")
    return "\n".join(lines)


def test_project_modules_import_each_other_without_cycles():
    modules = project_modules()
    graph = import_graph(modules)
    cycles = [c for c in strongly_connected_components(graph) if len(c) > 1]
    assert not cycles, "import cycles between project modules:\n" + "\n".join(
        _describe(c, graph, modules) for c in cycles
    )


def _reachable(graph: dict[str, dict[str, int]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_real_arm_drivers_do_not_import_the_simulator():
    # The gains and the safety box come from robot_stack.control, where the simulator takes
    # them too: a real driver that reached into sim/ would load MuJoCo on the robot PC.
    graph = import_graph(project_modules())
    for driver in ("robot_stack.hardware.franka", "robot_stack.hardware.libfranka_torque"):
        simulator = sorted(m for m in _reachable(graph, driver) if m.startswith("robot_stack.sim"))
        assert not simulator, f"{driver} imports {simulator}"


def test_import_graph_sees_lazy_imports_and_reexports(tmp_path):
    # The checker itself: a cycle closed by an import inside a function, through a name a
    # package re-exports, is found; a package importing its own submodules is not a cycle.
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from pkg.a import thing\nfrom pkg.b import other\n")
    (package / "a.py").write_text("def thing():\n    from pkg import other\n    return other\n")
    (package / "b.py").write_text("from pkg.a import thing\n\ndef other():\n    return thing\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.d import x\n")
    (package / "d.py").write_text("from pkg import c\n")
    modules = {}
    for path in sorted(package.rglob("*.py")):
        name, is_package = _module_name(tmp_path, path)
        module = Module(name, path, is_package)
        _collect(module, ast.parse(path.read_text()))
        modules[name] = module
    graph = import_graph(modules)
    cycles = [c for c in strongly_connected_components(graph) if len(c) > 1]
    assert cycles == [["pkg.a", "pkg.b"]]
    assert graph["pkg.d"] == {"pkg.c": 1}
    assert graph["pkg.c"] == {}
