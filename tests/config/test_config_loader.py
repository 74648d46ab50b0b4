"""The config loader: task files, includes and overrides, and errors that point at the line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from robot_stack.config import (
    ConfigError,
    LoadedTaskConfig,
    RobotConfig,
    SessionConfig,
    TaskConfig,
    infer_config_kind,
    load_section_config,
    load_task_config,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
HARDWARE_CONFIGS = REPO_ROOT / "hardware_configs"


def write_yaml(path: Path, text: str) -> Path:
    """Write dedented YAML; line 1 of the file is the first line of text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    """A valid hardware_configs-like folder; tests overwrite the one file they are about."""
    write_yaml(
        tmp_path / "robots" / "arm.yaml",
        """
        name: test_arm
        backend: sim
        impedance:
          translational_stiffness_n_per_m: 1500.0
          translational_error_clip_m: [0.01, 0.01, 0.01]
          rotational_error_clip_rad: [0.05, 0.05, 0.05]
        """,
    )
    write_yaml(
        tmp_path / "cameras" / "pair.yaml",
        """
        cameras:
          front: {kind: sim}
          wrist: {kind: sim}
        """,
    )
    write_yaml(tmp_path / "teleop" / "scripted.yaml", "kind: scripted\n")
    write_yaml(tmp_path / "sessions" / "local.yaml", "learner_host: 127.0.0.1\n")
    write_yaml(
        tmp_path / "tasks" / "pick.yaml",
        """
        robot: ../robots/arm.yaml
        cameras: ../cameras/pair.yaml
        teleop: ../teleop/scripted.yaml
        session: ../sessions/local.yaml
        task:
          name: pick
          observation:
            images: [front, wrist]
          sim:
            scene:
              kind: pick_cube
        """,
    )
    return tmp_path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_task_config(path)
    return str(caught.value)


# --------------------------------------------------------------------------- resolving


def test_task_file_sections_are_read_from_the_files_it_references(configs: Path) -> None:
    config = load_task_config(configs / "tasks" / "pick.yaml")

    assert config.robot.name == "test_arm"
    assert config.robot.impedance.translational_stiffness_n_per_m == 1500.0
    assert sorted(config.cameras.cameras) == ["front", "wrist"]
    assert config.teleop.kind == "scripted"
    assert config.task.name == "pick"


def test_unwritten_fields_take_the_schema_defaults(configs: Path) -> None:
    config = load_task_config(configs / "tasks" / "pick.yaml")

    assert config.robot.watchdog_timeout_s == 0.5
    assert config.task.discount == 0.97


def test_loaded_task_config_is_a_task_config_that_records_its_file(configs: Path) -> None:
    task_file = configs / "tasks" / "pick.yaml"

    config = load_task_config(task_file)

    assert isinstance(config, TaskConfig)
    assert isinstance(config, LoadedTaskConfig)
    assert config.source_path == task_file


def test_include_with_overrides_changes_only_the_keys_it_names(configs: Path) -> None:
    write_yaml(
        configs / "tasks" / "pick.yaml",
        """
        robot:
          include: ../robots/arm.yaml
          impedance:
            translational_error_clip_m: [0.008, 0.008, 0.008]
        cameras: ../cameras/pair.yaml
        task:
          name: pick
          sim: {scene: {kind: pick_cube}}
        """,
    )

    impedance = load_task_config(configs / "tasks" / "pick.yaml").robot.impedance

    assert impedance.translational_error_clip_m == (0.008, 0.008, 0.008)
    assert impedance.translational_stiffness_n_per_m == 1500.0
    assert impedance.rotational_error_clip_rad == (0.05, 0.05, 0.05)


def test_an_override_replaces_a_mapping_it_is_not_a_mapping_over(configs: Path) -> None:
    write_yaml(
        configs / "tasks" / "pick.yaml",
        """
        robot:
          include: ../robots/arm.yaml
          name: renamed_arm
        cameras:
          include: ../cameras/pair.yaml
          cameras:
            wrist: {kind: sim, fps: 15}
        task:
          name: pick
          sim: {scene: {kind: pick_cube}}
        """,
    )

    config = load_task_config(configs / "tasks" / "pick.yaml")

    assert config.robot.name == "renamed_arm"
    assert config.cameras.cameras["wrist"].fps == 15
    assert config.cameras.cameras["front"].fps == 30


def test_a_section_can_be_written_inline(configs: Path) -> None:
    write_yaml(
        configs / "tasks" / "pick.yaml",
        """
        robot: {backend: sim, name: inline_arm}
        task:
          name: pick
          sim: {scene: {kind: pick_cube}}
        """,
    )

    assert load_task_config(configs / "tasks" / "pick.yaml").robot.name == "inline_arm"


def test_session_paths_are_kept_as_written(configs: Path) -> None:
    write_yaml(
        configs / "sessions" / "local.yaml",
        "checkpoint_dir: runs/here\nserver_public_key_file: keys/a.key\nserver_secret_key_file: keys/a.key_secret\n"
        "client_secret_key_file: keys/b.key_secret\nauthorized_client_keys_dir: keys/actors\n",
    )

    session = load_task_config(configs / "tasks" / "pick.yaml").session

    assert session.checkpoint_dir == Path("runs/here")
    assert session.server_public_key_file == Path("keys/a.key")
    assert session.authorized_client_keys_dir == Path("keys/actors")


def test_each_task_gets_its_own_run_checkpoint_and_log_dirs_by_default(configs: Path) -> None:
    session = load_task_config(configs / "tasks" / "pick.yaml").session

    assert (session.run_dir, session.checkpoint_dir, session.log_dir) == (
        Path("runs/pick"), Path("runs/pick/checkpoints"), Path("runs/pick/logs"))


def test_a_session_run_dir_moves_the_default_checkpoint_and_log_dirs_with_it(configs: Path) -> None:
    write_yaml(configs / "sessions" / "local.yaml", "run_dir: /data/lab\nlog_dir: /var/log/robot\n")

    session = load_task_config(configs / "tasks" / "pick.yaml").session

    assert (session.checkpoint_dir, session.log_dir) == (Path("/data/lab/checkpoints"), Path("/var/log/robot"))


def test_no_two_shipped_tasks_share_a_checkpoint_dir() -> None:
    tasks = sorted((HARDWARE_CONFIGS / "tasks").glob("*.yaml"))
    directories = [load_task_config(task).session.checkpoint_dir for task in tasks]

    assert len(tasks) >= 5 and len(set(directories)) == len(tasks), dict(zip([t.name for t in tasks], directories))


def test_half_configured_authentication_names_the_missing_key_files(configs: Path) -> None:
    write_yaml(configs / "sessions" / "local.yaml", "server_public_key_file: keys/a.key\n")

    with pytest.raises(ConfigError) as error:
        load_task_config(configs / "tasks" / "pick.yaml")

    assert "server_secret_key_file, client_secret_key_file, authorized_client_keys_dir not" in str(error.value)


def test_shipped_peg_insertion_task_overrides_only_the_translational_clip_of_the_sim_robot() -> None:
    sim_robot = load_section_config(HARDWARE_CONFIGS / "robots" / "sim_fr3.yaml", "robot")

    config = load_task_config(HARDWARE_CONFIGS / "tasks" / "sim_peg_insertion.yaml")

    assert config.robot.impedance.translational_error_clip_m == (0.008, 0.008, 0.008)
    assert config.robot.impedance.rotational_error_clip_rad == sim_robot.impedance.rotational_error_clip_rad
    assert config.robot.model_copy(update={"impedance": sim_robot.impedance}) == sim_robot


def test_load_section_config_loads_each_kind_with_its_model(configs: Path) -> None:
    assert isinstance(load_section_config(configs / "robots" / "arm.yaml", "robot"), RobotConfig)
    assert isinstance(load_section_config(configs / "sessions" / "local.yaml", "session"), SessionConfig)
    assert load_section_config(configs / "tasks" / "pick.yaml", "task") == load_task_config(
        configs / "tasks" / "pick.yaml"
    )


def test_load_section_config_refuses_an_unknown_kind(configs: Path) -> None:
    with pytest.raises(ValueError, match="unknown config kind 'gripper'; expected one of robot, cameras"):
        load_section_config(configs / "robots" / "arm.yaml", "gripper")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- kind inference


def test_a_file_with_a_task_key_is_a_task_file_wherever_it_is(tmp_path: Path) -> None:
    task_file = write_yaml(tmp_path / "anywhere" / "t.yaml", "task: {name: t}\n")

    assert infer_config_kind(task_file) == "task"


@pytest.mark.parametrize(
    ("folder", "kind"),
    [("robots", "robot"), ("cameras", "cameras"), ("teleop", "teleop"), ("sessions", "session"), ("tasks", "task")],
)
def test_other_files_take_the_kind_of_their_folder(tmp_path: Path, folder: str, kind: str) -> None:
    file = write_yaml(tmp_path / folder / "x.yaml", "name: x\n")

    assert infer_config_kind(file) == kind


def test_a_file_in_an_unknown_folder_has_no_kind(tmp_path: Path) -> None:
    assert infer_config_kind(write_yaml(tmp_path / "misc" / "x.yaml", "name: x\n")) is None


# --------------------------------------------------------------------------- value errors


def test_out_of_range_number_names_file_line_field_value_and_limit(configs: Path) -> None:
    robot_file = write_yaml(
        configs / "robots" / "arm.yaml",
        """
        backend: sim
        impedance:
          translational_stiffness_n_per_m: 9000
        """,
    )

    message = load_error(configs / "tasks" / "pick.yaml")

    assert (
        f"{robot_file}:3: robot.impedance.translational_stiffness_n_per_m = 9000: "
        "Input should be less than or equal to 5000"
    ) in message


def test_wrong_literal_lists_the_allowed_values(configs: Path) -> None:
    robot_file = write_yaml(configs / "robots" / "arm.yaml", "name: arm\nbackend: simulated\n")

    message = load_error(configs / "tasks" / "pick.yaml")

    assert f"{robot_file}:2: robot.backend = 'simulated': Input should be 'sim' or 'franka'" in message


def test_misspelt_literal_suggests_the_closest_allowed_value(configs: Path) -> None:
    write_yaml(configs / "teleop" / "scripted.yaml", "kind: scriptd\n")

    message = load_error(configs / "tasks" / "pick.yaml")

    assert (
        "teleop.kind = 'scriptd': Input should be 'spacemouse', 'scripted' or 'none' (did you mean 'scripted'?)"
    ) in message


def test_unknown_key_lists_the_allowed_keys_and_suggests_the_closest(configs: Path) -> None:
    robot_file = write_yaml(
        configs / "robots" / "arm.yaml",
        """
        backend: sim
        gripper:
          grasp_forse_n: 20
        """,
    )

    message = load_error(configs / "tasks" / "pick.yaml")

    assert (
        f"{robot_file}:3: robot.gripper.grasp_forse_n: unknown key 'grasp_forse_n'; "
        "allowed keys: kind, min_width_m, max_width_m, grasp_force_n, speed_m_per_s "
        "(did you mean 'grasp_force_n'?)"
    ) in message


def test_unknown_key_suggests_the_long_names_containing_a_misspelt_word(configs: Path) -> None:
    write_yaml(configs / "robots" / "arm.yaml", "impedance: {stifness: 100}\n")

    message = load_error(configs / "tasks" / "pick.yaml")

    assert "(did you mean 'translational_stiffness_n_per_m' or 'rotational_stiffness_nm_per_rad'" in message


def test_a_vector_of_the_wrong_length_states_the_expected_count(configs: Path) -> None:
    robot_file = write_yaml(
        configs / "robots" / "arm.yaml",
        """
        impedance:
          translational_error_clip_m: [0.01, 0.01]
          rotational_error_clip_rad: [0.05, 0.05, 0.05, 0.05]
        """,
    )

    message = load_error(configs / "tasks" / "pick.yaml")

    assert (
        f"{robot_file}:2: robot.impedance.translational_error_clip_m = [0.01, 0.01]: expected exactly 3 items, got 2"
    ) in message
    assert (
        f"{robot_file}:3: robot.impedance.rotational_error_clip_rad = [0.05, 0.05, 0.05, 0.05]: "
        "expected exactly 3 items, got 4"
    ) in message


def test_a_bad_vector_item_is_named_by_its_index(configs: Path) -> None:
    robot_file = write_yaml(
        configs / "robots" / "arm.yaml",
        """
        impedance:
          translational_error_clip_m:
            - 0.01
            - wide
            - 0.01
        """,
    )

    message = load_error(configs / "tasks" / "pick.yaml")

    assert (
        f"{robot_file}:4: robot.impedance.translational_error_clip_m.1 = 'wide': Input should be a valid number"
    ) in message


def test_error_inside_the_sim_scene_is_named_by_the_path_as_written(configs: Path) -> None:
    task_file = write_yaml(
        configs / "tasks" / "pick.yaml",
        """
        robot: ../robots/arm.yaml
        task:
          name: insert
          gripper_mode: fixed_closed
          sim:
            scene:
              kind: peg_insertion
              hole_clearance_m: 0.003
        """,
    )

    message = load_error(task_file)

    assert (
        f"{task_file}:8: task.sim.scene.hole_clearance_m = 0.003: Input should be less than or equal to 0.002"
    ) in message


def test_an_error_in_an_override_points_at_the_task_file_not_the_included_file(configs: Path) -> None:
    task_file = write_yaml(
        configs / "tasks" / "pick.yaml",
        """
        robot:
          include: ../robots/arm.yaml
          impedance:
            translational_stiffness_n_per_m: 6000
        task:
          name: pick
          sim: {scene: {kind: pick_cube}}
        """,
    )

    message = load_error(task_file)

    assert (
        f"{task_file}:4: robot.impedance.translational_stiffness_n_per_m = 6000: "
        "Input should be less than or equal to 5000"
    ) in message


def test_missing_required_key_points_at_its_parent(configs: Path) -> None:
    task_file = write_yaml(
        configs / "tasks" / "pick.yaml",
        """
        robot: ../robots/arm.yaml
        task:
          sim: {scene: {kind: pick_cube}}
        """,
    )

    assert f"{task_file}:2: task.name: required key 'name' is missing" in load_error(task_file)


def test_a_rule_across_fields_points_at_the_field_it_names(configs: Path) -> None:
    session_file = write_yaml(configs / "sessions" / "local.yaml", "transitions_port: 6000\nweights_port: 6000\n")

    message = load_error(configs / "tasks" / "pick.yaml")

    assert (
        f"{session_file}:1: session.transitions_port = 6000: transitions_port and weights_port must differ"
    ) in message


def test_an_observation_camera_the_cameras_file_does_not_define_is_an_error(configs: Path) -> None:
    task_file = write_yaml(
        configs / "tasks" / "pick.yaml",
        """
        robot: ../robots/arm.yaml
        cameras: ../cameras/pair.yaml
        task:
          name: pick
          observation:
            images: [front, top]
          sim: {scene: {kind: pick_cube}}
        """,
    )

    message = load_error(task_file)

    assert (
        f"{task_file}:6: task.observation.images = ['front', 'top']: "
        "task.observation.images names camera(s) ['top'] that the cameras file does not define "
        "(defined: ['front', 'wrist'])"
    ) in message


def test_every_problem_in_a_task_is_reported_at_once(configs: Path) -> None:
    write_yaml(configs / "robots" / "arm.yaml", "backend: simulated\ncontrol_rate_hz: 20\n")
    write_yaml(configs / "teleop" / "scripted.yaml", "kind: scripted\ndeadzone: 2\n")

    with pytest.raises(ConfigError) as caught:
        load_task_config(configs / "tasks" / "pick.yaml")

    fields = [issue.field for issue in caught.value.issues]
    assert fields == ["robot.backend", "robot.control_rate_hz", "teleop.deadzone"]
    assert str(caught.value).startswith(f"{configs / 'tasks' / 'pick.yaml'}: invalid config (3 problems):\n")


def test_config_error_is_a_value_error_with_structured_issues(configs: Path) -> None:
    robot_file = write_yaml(configs / "robots" / "arm.yaml", "backend: simulated\n")

    with pytest.raises(ValueError) as caught:
        load_task_config(configs / "tasks" / "pick.yaml")

    (issue,) = caught.value.issues
    assert (issue.location.file, issue.location.line, issue.field, issue.value) == (
        robot_file,
        1,
        "robot.backend",
        "simulated",
    )


# --------------------------------------------------------------------------- file errors


def test_missing_referenced_file_names_the_referencing_line_and_the_resolved_path(configs: Path) -> None:
    task_file = write_yaml(
        configs / "tasks" / "pick.yaml",
        """
        robot: ../robots/arm.yaml
        cameras: ../cameras/nowhere.yaml
        task: {name: pick}
        """,
    )

    message = load_error(task_file)

    assert (
        f"{task_file}:2: cameras = '../cameras/nowhere.yaml': "
        f"referenced file not found: {configs / 'cameras' / 'nowhere.yaml'}"
    ) in message


def test_missing_included_file_names_the_include_line(configs: Path) -> None:
    task_file = write_yaml(
        configs / "tasks" / "pick.yaml",
        """
        robot:
          name: arm
          include: ../robots/gone.yaml
        task: {name: pick}
        """,
    )

    message = load_error(task_file)

    assert (
        f"{task_file}:3: robot.include = '../robots/gone.yaml': "
        f"referenced file not found: {configs / 'robots' / 'gone.yaml'}"
    ) in message


def test_the_task_file_itself_missing_is_a_config_error(tmp_path: Path) -> None:
    assert f"{tmp_path / 'none.yaml'}: file not found" in load_error(tmp_path / "none.yaml")


def test_malformed_yaml_reports_line_column_and_problem(configs: Path) -> None:
    robot_file = write_yaml(
        configs / "robots" / "arm.yaml",
        """
        backend: sim
        impedance:
          translational_stiffness_n_per_m: 2000
         rotational_stiffness_nm_per_rad: 150
        """,
    )

    message = load_error(configs / "tasks" / "pick.yaml")

    assert f"{robot_file}:4:2: malformed YAML: expected <block end>, but found '<block mapping start>'" in message


def test_a_duplicate_key_is_an_error_not_a_silent_last_wins(configs: Path) -> None:
    robot_file = write_yaml(
        configs / "robots" / "arm.yaml",
        """
        backend: sim
        impedance:
          translational_stiffness_n_per_m: 2000
          translational_stiffness_n_per_m: 4000
        """,
    )

    message = load_error(configs / "tasks" / "pick.yaml")

    assert (
        f"{robot_file}:4: impedance.translational_stiffness_n_per_m: duplicate key 'translational_stiffness_n_per_m' "
        "(first written on line 3)"
    ) in message


def test_an_empty_file_is_an_error(configs: Path) -> None:
    robot_file = write_yaml(configs / "robots" / "arm.yaml", "# nothing but a comment\n")

    assert f"{robot_file}: file is empty; expected a mapping of keys" in load_error(configs / "tasks" / "pick.yaml")


def test_a_top_level_that_is_not_a_mapping_is_an_error(configs: Path) -> None:
    robot_file = write_yaml(configs / "robots" / "arm.yaml", "- backend: sim\n")

    message = load_error(configs / "tasks" / "pick.yaml")

    assert f"{robot_file}:1: the top level must be a mapping of keys, not a list" in message


def test_an_included_file_cannot_include_further(configs: Path) -> None:
    robot_file = write_yaml(configs / "robots" / "arm.yaml", "backend: sim\ninclude: base.yaml\n")

    message = load_error(configs / "tasks" / "pick.yaml")

    assert (
        f"{robot_file}:2: include = 'base.yaml': "
        "only a task file's robot/cameras/teleop/session sections may include a file"
    ) in message


def test_a_section_must_be_a_path_or_a_mapping(configs: Path) -> None:
    task_file = write_yaml(configs / "tasks" / "pick.yaml", "robot: 42\ntask: {name: pick}\n")

    message = load_error(task_file)

    assert (
        f"{task_file}:1: robot = 42: "
        "must be the path of a robot file (relative to this file) or a mapping of robot fields"
    ) in message


def test_python_object_tags_are_refused_not_constructed(configs: Path) -> None:
    robot_file = write_yaml(configs / "robots" / "arm.yaml", 'name: !!python/object/apply:os.system ["true"]\n')

    message = load_error(configs / "tasks" / "pick.yaml")

    assert f"{robot_file}:1: name: unsupported YAML tag tag:yaml.org,2002:python/object/apply:os.system" in message


def test_an_unknown_scene_kind_lists_the_scene_kinds(configs: Path) -> None:
    task_file = write_yaml(
        configs / "tasks" / "pick.yaml",
        """
        robot: ../robots/arm.yaml
        task:
          name: pick
          sim:
            scene: {kind: peg_insertoin}
        """,
    )

    message = load_error(task_file)

    assert (
        f"{task_file}:5: task.sim.scene.kind = 'peg_insertoin': "
        "Input should be one of 'pick_cube', 'peg_insertion' (did you mean 'peg_insertion'?)"
    ) in message


def test_a_scene_without_a_kind_lists_the_scene_kinds(configs: Path) -> None:
    task_file = write_yaml(
        configs / "tasks" / "pick.yaml",
        """
        robot: ../robots/arm.yaml
        task:
          name: pick
          sim:
            scene:
              cube_edge_m: 0.04
        """,
    )

    message = load_error(task_file)

    assert (
        f"{task_file}:5: task.sim.scene: required key 'kind' is missing; allowed: 'pick_cube', 'peg_insertion'"
    ) in message
