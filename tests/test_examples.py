import os
import re
import subprocess
import sys
from pathlib import Path


def run_example(repo_root: Path, name: str, *args: str, timeout_s: float = 120.0) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(repo_root), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(repo_root / "examples" / name), *args],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=timeout_s,
    )
    assert result.returncode == 0, f"{name} exited with {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout.strip().splitlines()


def test_in_process_actor_learner_trains_then_ends_with_an_evaluation(repo_root):
    lines = run_example(repo_root, "actor_learner_in_process.py", "--env-steps", "300", "--demos", "5", "--eval-episodes", "2")

    trained = next(line for line in lines if line.startswith("trained:"))
    updates = int(re.search(r"(\d+) updates", trained).group(1))
    assert updates > 0, trained
    assert any(line.startswith("episode ") for line in lines), "no episode result was printed"
    assert re.fullmatch(r"evaluation: \d+% success over 2 deterministic episodes .*", lines[-1]), lines[-1]
