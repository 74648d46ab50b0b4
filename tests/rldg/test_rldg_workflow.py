"""RLDG end to end through the command line, on a small simulated setting: a specialist
session, collection from it and from the scripted human-like demonstrator, a demo-set export,
validation, fine-tuning a generalist with a camera, and evaluation with its table and plot."""

import json
import textwrap

import numpy as np
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("av")

from robot_stack.cli import main  # noqa: E402
from robot_stack.data.lerobot_v3 import read_dataset, validate_dataset  # noqa: E402


@pytest.fixture
def experiment(tmp_path, repo_root):
    base = repo_root / "hardware_configs" / "tasks" / "sim_pick_cube_state.yaml"
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(f"""
        name: tiny
        base_task: {base}
        run_dir: {tmp_path / "run"}
        variants:
          - name: small
            instruction: pick up the small cube
            overrides: {{task.sim.scene.cube_edge_m: 0.03, task.max_episode_steps: 25}}
          - name: other
            instruction: pick up the cube
            held_out: true
            overrides: {{task.sim.scene.cube_edge_m: 0.045, task.max_episode_steps: 25}}
        specialists: {{max_env_steps: 150, demo_episodes: 2, eval_episodes: 0}}
        collect: {{episodes_per_variant: 2, keep: all, cameras: [front], video_codec: libx264}}
        generalist: {{cameras: [front], image_size: 32, d_model: 32, layers: 1, heads: 2, feedforward: 64,
                      chunk: 4, steps: 10, batch_size: 16}}
        eval: {{episodes_per_variant: 2}}
    """))
    return path


@pytest.mark.timeout(600)
def test_specialists_collect_finetune_eval(experiment, tmp_path):
    run = tmp_path / "run"
    assert main(["rldg", "specialists", str(experiment), "--no-progress"]) == 0
    assert (run / "specialists" / "small" / "checkpoints").is_dir()
    assert json.loads((run / "specialists.json").read_text())["small"]["env_steps"] >= 150
    # A second call keeps the specialist it has.
    assert main(["rldg", "specialists", str(experiment), "--no-progress"]) == 0

    assert main(["rldg", "collect", str(experiment), "--source", "specialists", "--no-progress"]) == 0
    assert main(["rldg", "collect", str(experiment), "--source", "human_like", "--no-progress"]) == 0
    # An existing dataset is not overwritten by accident.
    assert main(["rldg", "collect", str(experiment), "--source", "human_like", "--no-progress"]) == 1
    demos = tmp_path / "demos_dataset"
    assert main(["rldg", "export-demos", str(run / "specialists" / "small" / "config.yaml"), str(run / "specialists" / "small" / "demos"),
                 "--instruction", "pick up the small cube", "--out", str(demos)]) == 0
    for source in ("specialists", "human_like"):
        root = run / "data" / source
        assert validate_dataset(root) == []
        dataset = read_dataset(root)
        assert dataset.info["total_episodes"] == 2 and dataset.tasks == {0: "pick up the small cube"}
        assert dataset.features["observation.images.front"]["dtype"] == "video"
        episode = next(dataset.iter_episodes())
        assert episode.frames["observation.images.front"].shape[1:] == (128, 128, 3)
        assert np.all(np.abs(episode.frames["action"]) <= 1.0)
        report = json.loads((root / "rldg_collect.json").read_text())
        assert report["variants"][0]["kept"] == 2 and report["source"] == source
    assert main(["rldg", "validate", str(run / "data" / "specialists"), str(demos)]) == 0
    assert read_dataset(demos).info["total_episodes"] == 2

    generalist = run / "generalists" / "specialists"
    assert main(["rldg", "finetune", str(experiment), "--data", str(run / "data" / "specialists"), "--no-progress"]) == 0
    saved = json.loads((generalist / "generalist.json").read_text())
    assert saved["features"]["cameras"] == ["front"] and saved["training"]["steps"] == 10
    assert (generalist / "finetune_loss.png").stat().st_size > 0
    # Initialised from the first, trained on both datasets.
    assert main(["rldg", "finetune", str(experiment), "--data", str(run / "data" / "specialists"), str(run / "data" / "human_like"),
                 "--init", str(generalist), "--steps", "3", "--out", str(run / "generalists" / "both"), "--no-progress"]) == 0

    assert main(["rldg", "eval", str(experiment), "--generalist", f"rl={generalist}", "--specialists", "--no-progress"]) == 0
    results = json.loads((run / "eval" / "rldg_eval.json").read_text())
    assert set(results["results"]) == {"rl", "specialists"}
    assert results["results"]["rl"]["other"]["episodes"] == 2 and "other" not in results["results"]["specialists"]
    table = (run / "eval" / "rldg_eval.md").read_text()
    assert "other (held out)" in table and "| rl |" in table
    assert (run / "eval" / "rldg_eval.png").stat().st_size > 0


def test_commands_refuse_bad_input_with_a_message(experiment, tmp_path, capsys):
    assert main(["rldg", "collect", str(experiment), "--source", "specialists", "--no-progress"]) == 1
    assert "no specialist checkpoint" in capsys.readouterr().err
    assert main(["rldg", "collect", str(experiment), "--source", "specialists", "--variants", "other", "--no-progress"]) == 1
    assert "held-out variants have no specialist" in capsys.readouterr().err
    assert main(["rldg", "finetune", str(experiment), "--data", str(tmp_path / "none"), "--no-progress"]) == 1
    assert "no meta/info.json" in capsys.readouterr().err
    assert main(["rldg", "eval", str(experiment), "--generalist", str(tmp_path / "none"), "--no-progress"]) == 1
    assert "holds no generalist" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nbase_task: nowhere.yaml\nvariants: []\n")
    assert main(["rldg", "collect", str(broken)]) == 1
    assert "broken.yaml" in capsys.readouterr().err
    assert main(["rldg", "validate", str(tmp_path)]) == 1
