"""The session starts `robot-stack learner` and friends as processes; those commands find the
run's folders from the config alone, without importing the session that started them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Runs the learner command with the learner itself stubbed out, and reports the demo folder it
# was given and whether the session module was imported on the way.
LEARNER_COMMAND_PROBE = """
import sys
import learner.learner_loop
from robot_stack.cli import main

given = {}
learner.learner_loop.run_learner = lambda config, stop, demo_dir=None: given.update(demo_dir=demo_dir)
code = main(["learner", sys.argv[1]])
print(code, given["demo_dir"], "robot_stack.session" in sys.modules)
"""


def test_the_learner_command_finds_the_demo_folder_without_importing_the_session(pick_cube_state_yaml: Path) -> None:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}

    probe = subprocess.run([sys.executable, "-c", LEARNER_COMMAND_PROBE, str(pick_cube_state_yaml)], env=environment,
                           capture_output=True, text=True, timeout=60)

    assert probe.returncode == 0, probe.stderr
    code, demo_dir, session_imported = probe.stdout.split()
    assert code == "0"
    assert Path(demo_dir) == Path("runs/demos/sim_pick_cube_state")
    assert session_imported == "False"


def test_the_session_module_does_not_import_the_command_line() -> None:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}

    probe = subprocess.run(
        [sys.executable, "-c", "import sys, robot_stack.session; print(any(m.startswith('robot_stack.cli') for m in sys.modules))"],
        env=environment, capture_output=True, text=True, timeout=60,
    )

    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "False"
