import csv

from robot_stack.data.curves import (
    deterministic_points,
    learning_curve_figure,
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


def test_a_40_episode_deterministic_window_does_not_stop_on_a_lucky_streak_that_fills_a_20_episode_one():
    # 14 of 20, then 18 of 20: a policy near 80% whose last 20 deterministic episodes read 90%.
    outcomes = [1] * 14 + [0] * 6 + [0, 0] + [1] * 18
    episodes = [episode(success, deterministic=1) for success in outcomes]

    assert stop_rule_rate(episodes, "deterministic_episodes", window=20, min_policy_only=0) == 0.9
    assert stop_rule_rate(episodes, "deterministic_episodes", window=40, min_policy_only=0) == 0.8


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


def a_run_with_everything_plotted():
    exploring = [episode(i % 3 > 0, intervened=i < 20, intervention_steps=5 * (i < 20), step=100 * i) for i in range(0, 80, 2)]
    deterministic = [episode(i > 30, step=100 * i, deterministic=1) for i in range(1, 80, 2)]
    return sorted(exploring + deterministic, key=lambda e: e["step"])


def test_the_curve_legend_sits_outside_the_axes_and_names_every_line_and_point():
    import matplotlib.pyplot as plt

    figure = learning_curve_figure(a_run_with_everything_plotted(), title="t", window=10, min_policy_only=2, target=0.9,
                                   evaluation={"success_rate": 0.9, "episodes": 50, "sampled": {"success_rate": 0.8, "episodes": 50}})
    try:
        renderer = figure.canvas.get_renderer()
        axis = figure.axes[0]
        legend = axis.get_legend()
        legend_box, data_box = legend.get_window_extent(renderer), axis.get_window_extent(renderer)
        plotted = [artist.get_label() for artist in [*axis.lines, *axis.collections]]
        named = [text.get_text() for text in legend.get_texts()]
    finally:
        plt.close(figure)

    assert not legend_box.overlaps(data_box)
    assert figure.bbox.contains(legend_box.x1 - 1, legend_box.y0 + 1)  # not cut off on the right
    assert len(plotted) == 6 and named == plotted  # training, deterministic, intervention, target, two evaluations


def test_deterministic_points_are_the_running_rate_at_each_deterministic_episode():
    episodes = [episode(1, step=100), episode(0, step=200, deterministic=1), episode(1, step=300, deterministic=1),
                episode(1, step=400, deterministic=1)]

    assert deterministic_points(episodes, window=2) == ([200.0, 300.0, 400.0], [0.0, 0.5, 1.0])
