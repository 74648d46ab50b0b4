import csv

from robot_stack.data.curves import (
    plot_learning_curve,
    steps_to_success,
    stop_rule_rate,
    window_deterministic_success_rate,
    window_intervention_rate,
    window_success_rate,
)


def episode(success, intervened=0, length=10, intervention_steps=0, step=0, deterministic=0):
    return {"success": success, "intervened": intervened, "length": length, "intervention_steps": intervention_steps,
            "step": step, "episode": 0, "wall_time_s": step / 100, "return": float(success), "deterministic": deterministic}


def test_deterministic_episodes_have_their_own_window_and_stay_out_of_the_policys():
    episodes = [episode(1)] * 6 + [episode(0, deterministic=1)] * 3 + [episode(1, deterministic=1)]
    assert window_success_rate(episodes, window=6, min_policy_only=2) == 1.0  # the last 6 exploring episodes
    assert window_deterministic_success_rate(episodes, window=2) == 0.5
    assert window_deterministic_success_rate(episodes, window=5) is None  # only 4 so far
    assert stop_rule_rate(episodes, "deterministic_episodes", 4, 4) == 0.25
    assert stop_rule_rate(episodes, "policy_episodes", 4, 4) == 1.0


def test_success_rate_counts_only_episodes_without_intervention():
    episodes = [episode(1, intervened=1)] * 5 + [episode(0)] * 2 + [episode(1)] * 2
    assert window_success_rate(episodes, window=20, min_policy_only=2) == 0.5


def test_no_success_rate_until_enough_policy_only_episodes():
    assert window_success_rate([episode(1)] * 3, window=20, min_policy_only=4) is None


def test_success_rate_looks_only_at_the_window():
    episodes = [episode(0)] * 10 + [episode(1)] * 4
    assert window_success_rate(episodes, window=4, min_policy_only=1) == 1.0


def test_intervention_rate_is_the_share_of_steps():
    episodes = [episode(1, intervened=1, length=10, intervention_steps=5), episode(1, length=30)]
    assert window_intervention_rate(episodes, window=20) == 5 / 40


def write_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_steps_to_success_is_the_first_episode_at_the_target(tmp_path):
    rows = [dict(episode(0, step=100 * i), episode=i) for i in range(5)]
    rows += [dict(episode(1, step=100 * i), episode=i) for i in range(5, 12)]
    path = tmp_path / "episodes.csv"
    write_csv(path, rows)
    reached = steps_to_success(path, target=0.5, window=10, min_policy_only=5)
    assert reached["env_steps"] == 900 and reached["episode"] == 9


def test_learning_curve_png_is_written(tmp_path):
    rows = [dict(episode(i % 2, step=100 * i), episode=i) for i in range(30)]
    write_csv(tmp_path / "episodes.csv", rows)
    png = plot_learning_curve(tmp_path / "episodes.csv", tmp_path / "curve.png", title="t",
                              evaluation={"success_rate": 0.5, "episodes": 10})
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_steps_to_success_reads_the_deterministic_episodes_when_asked(tmp_path):
    rows = [episode(1, step=100 * i) for i in range(5)] + [episode(1, step=600, deterministic=1), episode(1, step=700, deterministic=1)]
    path = tmp_path / "episodes.csv"
    write_csv(path, rows)
    assert steps_to_success(path, 0.9, window=2, min_policy_only=2)["env_steps"] == 100
    assert steps_to_success(path, 0.9, window=2, min_policy_only=2, stop_on="deterministic_episodes")["env_steps"] == 700
