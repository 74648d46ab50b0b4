"""The RLDG experiment file: variants resolved into task configs, errors that name the variant."""

import textwrap

import pytest

from robot_stack.config import ConfigError
from robot_stack.config.rldg import apply_overrides, load_rldg_config


def _write(tmp_path, repo_root, variants: str, extra: str = ""):
    base = repo_root / "hardware_configs" / "tasks" / "sim_pick_cube_state.yaml"
    path = tmp_path / "exp.yaml"
    path.write_text(f"name: exp\nbase_task: {base}\nvariants:\n" + textwrap.indent(textwrap.dedent(variants), "  ") + extra)
    return path


def test_shipped_experiment_resolves(repo_root):
    experiment = load_rldg_config(repo_root / "hardware_configs" / "rldg" / "sim_pick_cube_sizes.yaml")
    names = [v.name for v in experiment.variants]
    assert len(experiment.seen) >= 3 and any(v.held_out for v in experiment.variants)
    edges = {v.name: v.config.task.sim.scene.cube_edge_m for v in experiment.variants}
    assert len(set(edges.values())) == len(names)  # every variant is a different cube
    assert all(v.config.task.name.endswith(v.name) for v in experiment.variants)
    assert experiment.variant("small").specialist.parts[-3:] == ("specialists", "small", "checkpoints")


def test_override_of_a_missing_field_is_named(tmp_path, repo_root):
    path = _write(tmp_path, repo_root, """
        - {name: a, instruction: pick a, overrides: {task.sim.scene.cube_size: 0.03}}
        - {name: b, instruction: pick b}
    """)
    with pytest.raises(ConfigError, match=r"variants\.0\.overrides.*task\.sim\.scene\.cube_size is not a field"):
        load_rldg_config(path)


def test_override_with_a_bad_value_is_named(tmp_path, repo_root):
    path = _write(tmp_path, repo_root, """
        - {name: a, instruction: pick a}
        - {name: huge, instruction: pick b, overrides: {task.sim.scene.cube_edge_m: 0.5}}
    """)
    with pytest.raises(ConfigError, match=r"variant 'huge': task\.sim\.scene.*cube_edge_m"):
        load_rldg_config(path)


@pytest.mark.parametrize(
    "variants, message",
    [
        ("- {name: a, instruction: x}\n- {name: a, instruction: y}\n", "unique"),
        ("- {name: a, instruction: x, held_out: true}\n- {name: b, instruction: y, held_out: true}\n", "at least one variant must be seen"),
        ("- {name: a, instruction: same}\n- {name: b, instruction: same}\n", "share an instruction"),
        ("- {name: a, instruction: x, overrides: {session.x: 1}}\n- {name: b, instruction: y}\n", "must start with"),
        ("- {name: A-1, instruction: x}\n- {name: b, instruction: y}\n", "pattern"),
    ],
)
def test_bad_experiments_are_refused(tmp_path, repo_root, variants, message):
    with pytest.raises(ConfigError, match=message):
        load_rldg_config(_write(tmp_path, repo_root, variants))


def test_unknown_key_is_located(tmp_path, repo_root):
    path = _write(tmp_path, repo_root, "- {name: a, instruction: x}\n- {name: b, instruction: y}\n", "generalist:\n  layerz: 3\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml:\d+.*generalist\.layerz"):
        load_rldg_config(path)


def test_apply_overrides_validates_the_whole_config(repo_root):
    from robot_stack.config import load_task_config

    base = load_task_config(repo_root / "hardware_configs" / "tasks" / "sim_pick_cube_state.yaml")
    changed = apply_overrides(base, {"task.sim.scene.cube_mass_kg": 0.2}, name_suffix="heavy")
    assert changed.task.sim.scene.cube_mass_kg == 0.2 and changed.task.name == base.task.name + "_heavy"
    assert base.task.sim.scene.cube_mass_kg != 0.2  # the base is untouched
    with pytest.raises(KeyError, match="task.nothing is not a section"):
        apply_overrides(base, {"task.nothing.x": 1})
