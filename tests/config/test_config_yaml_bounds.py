"""YAML files are read within bounds: size, alias expansion, nesting; a file built to
exhaust memory is refused in one line naming it and the limit, before anything expands."""

from __future__ import annotations

from pathlib import Path

import pytest

from robot_stack.cli import main
from robot_stack.config import ConfigError, load_section_config
from robot_stack.config.loader import MAX_YAML_EXPANDED_NODES, MAX_YAML_FILE_BYTES, load_yaml_text

# 9 levels of 9 aliases each: 9^9 (~390 million) strings once expanded.
BILLION_LAUGHS = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n" for previous, name in zip("abcdefgh", "bcdefghi")
)

# The same with merge keys, which copy the merged mapping's entries into every mapping merging it.
MERGE_BOMB = "a: &a {k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5, k6: 6, k7: 7, k8: 8}\n" + "".join(
    f"{name}: &{name} {{<<: [{', '.join([f'*{previous}'] * 9)}]}}\n" for previous, name in zip("abcdefgh", "bcdefghi")
)


def robot_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "robots" / "arm.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_section_config(path, "robot")
    return caught.value


@pytest.mark.parametrize("text", [BILLION_LAUGHS, MERGE_BOMB], ids=["sequence_aliases", "merge_keys"])
def test_nested_aliases_are_refused_before_they_expand(tmp_path: Path, text: str) -> None:
    path = robot_file(tmp_path, text)
    assert path.stat().st_size < 700

    error = load_error(path)

    assert len(error.issues) == 1
    assert error.issues[0].location.file == path
    assert f"aliases (*name) expand this YAML past {MAX_YAML_EXPANDED_NODES:,} nodes" in error.issues[0].message


def test_config_check_refuses_nested_aliases_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = robot_file(tmp_path, BILLION_LAUGHS)

    exit_code = main(["config", "check", str(path)])

    err = capsys.readouterr().err
    assert exit_code == 1
    assert "Traceback" not in err
    assert f"{path}:" in err.splitlines()[1] and f"{MAX_YAML_EXPANDED_NODES:,} nodes" in err.splitlines()[1]


def test_aliases_that_stay_small_still_work(tmp_path: Path) -> None:
    path = robot_file(tmp_path, "backend: sim\nload: {center_of_mass_m: &zero [0.0, 0.0, 0.02], inertia_kg_m2: *zero}\n")

    robot = load_section_config(path, "robot")

    assert robot.load.inertia_kg_m2 == robot.load.center_of_mass_m == (0.0, 0.0, 0.02)


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    path = robot_file(tmp_path, "backend: sim\nload: &loop {center_of_mass_m: *loop}\n")

    error = load_error(path)

    assert [str(issue) for issue in error.issues] == [f"{path}:2: an alias refers to itself"]


def test_a_file_over_the_size_limit_is_refused_naming_the_limit(tmp_path: Path) -> None:
    path = robot_file(tmp_path, "backend: sim\n" + "#" * MAX_YAML_FILE_BYTES + "\n")

    error = load_error(path)

    assert [str(issue) for issue in error.issues] == [
        f"{path}: is larger than {MAX_YAML_FILE_BYTES:,} bytes, the most a YAML config may be; is it the right file?"
    ]


def test_nesting_too_deep_for_the_parser_is_one_error_not_a_crash(tmp_path: Path) -> None:
    path = robot_file(tmp_path, "backend: " + "[" * 50_000 + "]" * 50_000 + "\n")

    error = load_error(path)

    assert [str(issue) for issue in error.issues] == [f"{path}: is nested too deeply to be a config file"]


def test_yaml_text_from_a_user_is_read_within_the_same_bounds() -> None:
    assert load_yaml_text("[0.01, 0.02]", "--set value") == [0.01, 0.02]

    with pytest.raises(ConfigError) as caught:
        load_yaml_text(BILLION_LAUGHS, "--set value")

    assert str(caught.value.issues[0].location.file) == "--set value"
