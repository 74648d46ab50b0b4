from pathlib import Path

import pytest

from robot_stack.config import config_to_yaml, load_task_config
from robot_stack.config import with_fields


@pytest.fixture
def quick_task(pick_cube_state_yaml, tmp_path) -> Path:
    """Small networks, no demos, no evaluation: the learner and the actor start in seconds."""
    config = load_task_config(pick_cube_state_yaml)
    config = with_fields(config, "agent", batch_size=32, hidden_dims=(64, 64))
    config = with_fields(config, "training", min_online_transitions=50, torch_threads=1, demo_episodes=0,
                         eval_episodes=0, checkpoint_every_s=2.0)
    # An orphaned actor waits this long for its learner to take what it sent, then stops.
    config = with_fields(config, "actor", stop_timeout_s=2.0)
    path = tmp_path / "quick_pick_cube.yaml"
    path.write_text(config_to_yaml(config))
    return path
