"""The launch files and Dockerfiles, checked without ROS or Docker: the launch files are read
with `ast` (the executables, node names and parameters they use exist in robot_stack_ros,
every launch argument they read is declared), the Dockerfiles as text (every repository path
they name exists, torch is installed before the project)."""

from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch"
DOCKER = REPO / "docker"
ROS_PKG = REPO / "ros_ws" / "src" / "robot_stack_ros"
NODE_MODULES = ROS_PKG / "robot_stack_ros"
PACKAGE = "robot_stack_ros"

LAUNCH_FILES = sorted(LAUNCH.glob("*.launch.py"))
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))


# --- helpers -------------------------------------------------------------------------------


def _call_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _call_name(n) == name]


def _literal(node: ast.AST):
    return node.value if isinstance(node, ast.Constant) else None


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _declared_arguments(tree: ast.AST) -> set[str]:
    names = set()
    for call in _calls(tree, "DeclareLaunchArgument"):
        node = call.args[0] if call.args else _keyword(call, "name")
        assert isinstance(_literal(node), str), f"DeclareLaunchArgument without a literal name (line {call.lineno})"
        names.add(node.value)
    return names


def _used_arguments(tree: ast.AST) -> set[str]:
    names = set()
    for call in _calls(tree, "LaunchConfiguration"):
        node = call.args[0] if call.args else _keyword(call, "variable_name")
        assert isinstance(_literal(node), str), f"LaunchConfiguration without a literal name (line {call.lineno})"
        names.add(node.value)
    return names


def _console_scripts() -> tuple[str, ...]:
    """The NODES tuple of the package's setup.py: one console script per name."""
    tree = _tree(ROS_PKG / "setup.py")
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "NODES" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no NODES tuple")


def _node_calls() -> list[tuple[Path, ast.Call]]:
    return [(path, call) for path in LAUNCH_FILES for call in _calls(_tree(path), "Node")]


def _node_source(executable: str) -> str:
    return (NODE_MODULES / f"{executable}_node.py").read_text()


def _declares(executable: str, parameter: str) -> bool:
    source = _node_source(executable)
    if parameter == "config":
        # Every node reads the task file through node_common.load_config, which declares "config".
        common = (NODE_MODULES / "node_common.py").read_text()
        return "load_config(self)" in source and 'declare_parameter("config"' in common
    return f'declare_parameter("{parameter}"' in source or f'"{parameter}"' in source


def _included(call: ast.Call) -> list[str]:
    return [
        n.value for n in ast.walk(call)
        if isinstance(_literal(n), str) and n.value.endswith(".launch.py")
    ]


def _include_arguments(call: ast.Call) -> set[str]:
    node = _keyword(call, "launch_arguments")
    if node is None:
        return set()
    if isinstance(node, ast.Call) and _call_name(node) == "items":
        node = node.func.value
    assert isinstance(node, ast.Dict), f"launch_arguments is not a dict literal (line {call.lineno})"
    keys = [_literal(k) for k in node.keys]
    assert all(isinstance(k, str) for k in keys)
    return set(keys)


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, f"{path.name} ends inside a continued line"
    return out


def _words(arguments: str) -> list[str]:
    if arguments.startswith("["):
        return json.loads(arguments)
    return shlex.split(arguments)


REPO_PATH = re.compile(r"(?<![\w./$-])((?:scripts|hardware_configs|launch|docker|ros_ws)/[\w./-]*[\w-]|ros_ws)(?![\w/])")


# --- launch files --------------------------------------------------------------------------


def test_launch_files_are_there():
    names = {p.name for p in LAUNCH_FILES}
    assert {"robot.launch.py", "learner.launch.py", "sim_session.launch.py"} <= names
    # The package installs launch/ through its symlink (setup.py: glob("launch/*.launch.py")).
    link = ROS_PKG / "launch"
    assert link.resolve() == LAUNCH.resolve()
    assert {p.name for p in link.glob("*.launch.py")} == names


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_defines_generate_launch_description(path):
    tree = _tree(path)
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)


def test_nodes_use_the_package_console_scripts():
    scripts = _console_scripts()
    calls = _node_calls()
    assert calls
    for path, call in calls:
        where = f"{path.name}:{call.lineno}"
        assert _literal(_keyword(call, "package")) == PACKAGE, where
        executable = _literal(_keyword(call, "executable"))
        assert executable in scripts, f"{where}: executable {executable!r} is not one of {scripts}"


def test_robot_launch_starts_every_node_once():
    executables = [_literal(_keyword(c, "executable")) for c in _calls(_tree(LAUNCH / "robot.launch.py"), "Node")]
    assert sorted(executables) == sorted(_console_scripts())


def test_node_names_match_the_nodes():
    for path, call in _node_calls():
        executable = _literal(_keyword(call, "executable"))
        name = _literal(_keyword(call, "name"))
        assert name is not None, f"{path.name}:{call.lineno}: no name"
        assert f'super().__init__("{name}")' in _node_source(executable), (
            f"{path.name}:{call.lineno}: node {executable!r} does not call itself {name!r}"
        )


def test_node_parameters_are_declared_by_the_node():
    for path, call in _node_calls():
        executable = _literal(_keyword(call, "executable"))
        parameters = _keyword(call, "parameters")
        assert isinstance(parameters, ast.List), f"{path.name}:{call.lineno}: parameters is not a list"
        for item in parameters.elts:
            assert isinstance(item, ast.Dict), f"{path.name}:{call.lineno}: parameters holds a non-dict"
            for key in item.keys:
                name = _literal(key)
                assert isinstance(name, str)
                assert _declares(executable, name), f"{path.name}: node {executable!r} declares no parameter {name!r}"


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_arguments_are_declared(path):
    tree = _tree(path)
    declared = _declared_arguments(tree)
    missing = _used_arguments(tree) - declared
    assert not missing, f"{path.name} reads undeclared launch arguments {sorted(missing)}"


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_included_launch_files_exist_and_take_the_arguments(path):
    for call in _calls(_tree(path), "IncludeLaunchDescription"):
        files = _included(call)
        assert len(files) == 1, f"{path.name}:{call.lineno}: include names {files}"
        target = LAUNCH / files[0]
        assert target.is_file(), f"{path.name} includes {files[0]}, which is not in launch/"
        unknown = _include_arguments(call) - _declared_arguments(_tree(target))
        assert not unknown, f"{path.name} passes {sorted(unknown)} to {files[0]}, which does not declare them"


def test_sim_session_includes_learner_and_robot():
    included = [f for c in _calls(_tree(LAUNCH / "sim_session.launch.py"), "IncludeLaunchDescription") for f in _included(c)]
    assert sorted(included) == ["learner.launch.py", "robot.launch.py"]


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_default_task_files_exist(path):
    for call in _calls(_tree(path), "DeclareLaunchArgument"):
        if _literal(call.args[0]) == "config":
            default = _literal(_keyword(call, "default_value"))
            assert default and (REPO / default).is_file(), f"{path.name}: default config {default!r} does not exist"


def test_learner_launch_runs_the_learner_command():
    scripts = re.search(r"^\[project\.scripts\]\n(.*?)(?:^\[|\Z)", (REPO / "pyproject.toml").read_text(), re.S | re.M)
    assert scripts and re.search(r'^robot-stack\s*=', scripts.group(1), re.M)
    cli = (REPO / "robot_stack" / "cli" / "session_commands.py").read_text()
    commands = [
        node for node in ast.walk(_tree(LAUNCH / "learner.launch.py"))
        if isinstance(node, ast.List) and node.elts and _literal(node.elts[0]) == "robot-stack"
    ]
    assert commands, "learner.launch.py runs no robot-stack command"
    for command in commands:
        sub = _literal(command.elts[1])
        assert sub == "learner"
        assert f'add_parser("{sub}"' in cli
    assert '"--demos"' in cli and "'--demos'" in (LAUNCH / "learner.launch.py").read_text()


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_boolean_launch_arguments_declare_their_choices(path):
    # Without choices a typo (use_cameras:=no) fails only when the condition is evaluated, after
    # earlier processes have started.
    for call in _calls(_tree(path), "DeclareLaunchArgument"):
        if _literal(_keyword(call, "default_value")) in ("true", "false"):
            choices = _keyword(call, "choices")
            assert isinstance(choices, ast.Name) and choices.id == "BOOLEAN_CHOICES", (
                f"{path.name}:{call.lineno}: boolean argument {_literal(call.args[0])!r} declares no choices=BOOLEAN_CHOICES"
            )


@pytest.mark.parametrize("path, process", [("learner.launch.py", "learner"), ("robot.launch.py", "controller")])
def test_the_cell_ends_when_the_learner_or_the_controller_exits(path, process):
    calls = _calls(_tree(LAUNCH / path), "end_the_cell_when_it_exits")
    watched = [call.args[0].id for call in calls if call.args and isinstance(call.args[0], ast.Name)]
    assert watched == [process], f"{path}: end_the_cell_when_it_exits is called for {watched}"


# --- Dockerfiles ---------------------------------------------------------------------------


def test_dockerfiles_are_there():
    assert {p.name for p in DOCKERFILES} >= {"sim.Dockerfile", "robot.Dockerfile", "learner.Dockerfile"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copy_sources_exist(path):
    copies = [(k, a) for k, a in _instructions(path) if k in ("COPY", "ADD")]
    assert copies, f"{path.name} copies nothing"
    for keyword, arguments in copies:
        words = [w for w in _words(arguments) if not w.startswith("--")]
        assert len(words) >= 2, f"{path.name}: {keyword} {arguments}"
        for source in words[:-1]:
            assert (REPO / source).exists(), f"{path.name}: {keyword} source {source!r} is not in the repository"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_repository_paths_exist(path):
    for keyword, arguments in _instructions(path):
        if keyword not in ("RUN", "CMD", "ENTRYPOINT"):
            continue
        for match in REPO_PATH.finditer(arguments):
            assert (REPO / match.group(1)).exists(), f"{path.name}: {keyword} names {match.group(1)!r}, not in the repository"
        for name in re.findall(r"[\w-]+\.launch\.py", arguments):
            assert (LAUNCH / name).is_file(), f"{path.name}: {keyword} launches {name!r}, not in launch/"


def _project_dependencies() -> list[str]:
    text = (REPO / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:  # Python 3.10
        block = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", text, re.S | re.M)
        assert block
        return re.findall(r'^\s*"([^"]+)"', block.group(1), re.M)
    return tomllib.loads(text)["project"]["dependencies"]


def _pip_installs(path: Path) -> list[str]:
    runs = " && ".join(a for k, a in _instructions(path) if k == "RUN")
    return [part.strip() for part in re.split(r"&&|;", runs) if re.search(r"\bpip install\b", part)]


def test_robot_image_installs_torch_before_the_project():
    installs = _pip_installs(DOCKER / "robot.Dockerfile")
    torch = [i for i, cmd in enumerate(installs) if re.search(r"\btorch==2\.13\.0\b", cmd)]
    project = [i for i, cmd in enumerate(installs) if re.search(r"\s-e\s", cmd)]
    assert torch and project, installs
    assert max(torch) < min(project), "torch must be installed before the project"
    extras = re.search(r"-e\s+[\"']?\.\[([\w,]+)\]", installs[project[0]])
    assert extras, installs[project[0]]
    # ROS comes from apt in this image: not the PyPI build of the "ros" extra. The reward
    # node runs here, so a vision-language reward model needs "vlm"; the actor node serves the
    # operator's live page ("console").
    assert set(extras.group(1).split(",")) == {"console", "franka", "realsense", "spacemouse", "vlm"}


def test_robot_image_builds_the_workspace_and_launches_robot_launch():
    text = " ".join(a for k, a in _instructions(DOCKER / "robot.Dockerfile") if k == "RUN")
    assert "/opt/ros/jazzy/setup.sh" in text and "colcon build" in text and "--system-site-packages" in text
    cmd = dict(_instructions(DOCKER / "robot.Dockerfile"))["CMD"]
    words = _words(cmd)
    assert words[:4] == ["ros2", "launch", PACKAGE, "robot.launch.py"]
    configs = [w.split(":=", 1)[1] for w in words if w.startswith("config:=")]
    assert configs and all((REPO / c).is_file() for c in configs)


def test_learner_image_keeps_the_base_torch():
    instructions = _instructions(DOCKER / "learner.Dockerfile")
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("pytorch/pytorch:")
    for cmd in _pip_installs(DOCKER / "learner.Dockerfile"):
        assert not re.search(r"\btorch\b", cmd), f"the learner image reinstalls torch: {cmd}"
    names = [re.split(r"[<>=!~;\[ ]", d)[0].strip().lower() for d in _project_dependencies()]
    assert "torch" not in names, "a torch requirement would replace the base image's CUDA build"
    words = _words(dict(instructions)["CMD"])
    assert words[:2] == ["robot-stack", "learner"] and (REPO / words[2]).is_file()
