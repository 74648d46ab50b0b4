"""`robot-stack sim expert` and `robot-stack sim demo`."""

from PIL import Image

from robot_stack.cli import main


def test_sim_demo_saves_camera_frames_gifs_and_a_summary(tmp_path, pick_cube_yaml, capsys):
    code = main(["sim", "demo", "--task", str(pick_cube_yaml), "--episodes", "1", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    episode = tmp_path / "frames" / "episode_000"
    fronts = sorted(episode.glob("front_*.png"))
    wrists = sorted(episode.glob("wrist_*.png"))
    assert len(fronts) == len(wrists) >= 5
    assert Image.open(fronts[0]).size == (128, 128)
    assert (episode / "front.gif").exists() and (episode / "wrist.gif").exists()
    rows = (tmp_path / "episodes.csv").read_text().splitlines()
    assert rows[0].startswith("episode,seed,success,steps") and len(rows) == 2
    assert (tmp_path / "success.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "success rate" in out and "camera frames" in out


def test_sim_expert_prints_the_success_rate(pick_cube_state_yaml, capsys):
    assert main(["sim", "expert", "--task", str(pick_cube_state_yaml), "--episodes", "2", "--no-progress"]) == 0
    assert "task sim_pick_cube_state: success rate 100.0% (2/2 episodes)" in capsys.readouterr().out


def test_sim_commands_refuse_a_real_robot_task(repo_root, capsys):
    task = repo_root / "hardware_configs" / "tasks" / "fr3_lab_insertion.yaml"
    assert main(["sim", "expert", "--task", str(task), "--episodes", "1"]) == 1
    assert "robot backend 'franka'" in capsys.readouterr().err


def test_sim_commands_report_a_broken_task_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: {name: x, max_episode_steps: -3}\nrobot: {backend: sim}\n")
    assert main(["sim", "demo", "--task", str(bad), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "task.max_episode_steps" in err and "-3" in err
