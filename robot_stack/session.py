"""The task session on one machine: demos, learner and actors as separate processes, a live
progress line, stop at a step budget or a success target, evaluation, curve and summary.

This module only orchestrates processes (no torch here): the learner and the actors run as
``robot-stack learner`` / ``robot-stack actor`` over loopback exactly as they would on separate
machines, and talk only through the transport. The learner's ``status.json`` (rewritten
atomically every second) is what the progress line and the stop rule read; it counts what all
actors sent. ``session.actors`` (``--actors``) simulated actors run, ``actor0`` to ``actorN-1``,
each with its own seed, outbox, dataset, status file and log; the operator's live page and
keys follow ``actor0``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from robot_stack.config import config_to_yaml, load_task_config, with_fields
from robot_stack.config.schema import TaskConfig
from robot_stack.data.checkpoints import CheckpointStore
from robot_stack.data.spec import action_spec, observation_spec
from robot_stack.data.status import actor_status_path, read_json_status, read_status, status_path
from robot_stack.data.warm_start import describe_checkpoint, source_checkpoints, source_datasets, with_init_from
from robot_stack.run_dir import RunPaths, demo_dir
from robot_stack.transport.learner_link import PortInUse

SUMMARY_FILE = "summary.json"
SESSION_ACTOR_ID = "actor0"  # the id a lone `robot-stack actor` takes by default too: the console's actor
CURVE_FILE = "learning_curve.png"


# The learner's own bind is the only reliable test of a port (any process may take one between a
# check and the bind): a learner that finds a loopback port taken is started again on others.
LEARNER_PORT_ATTEMPTS = 5


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _free_port_pair(host: str) -> tuple[int, int]:
    sockets = []
    try:
        for _ in range(2):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.bind((host, 0))
            sockets.append(probe)
        return sockets[0].getsockname()[1], sockets[1].getsockname()[1]
    finally:
        for probe in sockets:
            probe.close()


def _ports_can_move(config: TaskConfig) -> bool:
    # Only the session's own processes use loopback ports; another host's actors expect the
    # configured ones.
    return config.session.learner_host in ("127.0.0.1", "localhost")


def _with_other_ports(config: TaskConfig, why: str) -> TaskConfig:
    session = config.session
    transitions, weights = _free_port_pair(session.learner_host)
    print(f"{why}; this session uses ports {transitions}/{weights} instead of "
          f"{session.transitions_port}/{session.weights_port}", file=sys.stderr)
    return with_fields(config, "session", transitions_port=transitions, weights_port=weights)


def session_config(config: TaskConfig, paths: RunPaths, **training) -> TaskConfig:
    """The config the session's processes run: its paths under the run dir, training
    overrides applied, and free loopback ports if the configured ones are taken now (a first
    guess: the learner may still find one taken; run_session then starts it on others)."""
    config = with_fields(
        config, "session", run_dir=paths.run_dir, checkpoint_dir=paths.checkpoints, log_dir=paths.logs,
    )
    config = with_fields(config, "session.transport", outbox_dir=paths.outbox)
    overrides = {key: value for key, value in training.items() if value is not None}
    config = with_fields(config, "training", demo_dir=paths.demos, **overrides)
    session = config.session
    if _ports_can_move(config) and not (
        _port_free(session.learner_host, session.transitions_port) and _port_free(session.learner_host, session.weights_port)
    ):
        config = _with_other_ports(config, f"ports {session.transitions_port}/{session.weights_port} are taken on {session.learner_host}")
    return config


def stop_reason(status: dict[str, Any], training, started: float) -> Optional[str]:
    """Why the session should stop now, or None to go on."""
    if status.get("env_steps", 0) >= training.max_env_steps:
        return f"step budget reached ({training.max_env_steps} env steps)"
    rate = status.get("success_rate")
    if training.target_success_rate is not None and rate is not None and rate >= training.target_success_rate:
        episodes = "deterministic episodes" if training.stop_on == "deterministic_episodes" else "episodes"
        return (f"target success rate reached ({rate:.0%} >= {training.target_success_rate:.0%} over the last "
                f"{training.success_window_episodes} {episodes})")
    if training.max_wall_time_s is not None and time.monotonic() - started >= training.max_wall_time_s:
        return f"wall-time limit reached ({training.max_wall_time_s:.0f} s)"
    return None


@dataclass
class _Child:
    name: str
    process: subprocess.Popen
    log_path: Path
    log_handle: Any = field(repr=False, default=None)
    interrupted: bool = False

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def interrupt(self) -> None:
        """SIGINT: a clean stop (an actor sends what it has, the learner checkpoints)."""
        if self.alive() and not self.interrupted:
            self.process.send_signal(signal.SIGINT)
            self.interrupted = True

    def stop(self, timeout_s: float) -> int:
        """SIGINT (unless sent already), then SIGKILL after the timeout."""
        if self.alive():
            self.interrupt()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                print(f"{self.name} did not stop within {timeout_s:.0f} s; killing it", file=sys.stderr)
                self.kill()
                self.process.wait()
        if self.log_handle is not None:
            self.log_handle.close()
            self.log_handle = None
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL to the child's whole process group (it is the group's leader)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _spawn_actor(paths: RunPaths, index: int) -> _Child:
    """Simulated actor ``actor<index>``, its episodes seeded by its index, its log in
    ``logs/actor<index>.log``. Only actor0 serves the live page on the configured port (the
    session's keys drive it); the others serve theirs on any free port."""
    actor_id = f"actor{index}"
    actor_status_path(paths.logs, actor_id).unlink(missing_ok=True)
    arguments = ["actor", str(paths.config_file), "--actor-id", actor_id, "--seed", str(index)]
    if actor_id != SESSION_ACTOR_ID:
        arguments += ["--live-page-port", "0"]
    return _spawn(actor_id, arguments, paths.logs / f"{actor_id}.log")


def _spawn(name: str, arguments: list[str], log_path: Path) -> _Child:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log_path, "ab")
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        # --parent-pid: the child stops itself if this session dies without stopping it.
        [sys.executable, "-m", "robot_stack", *arguments, "--parent-pid", str(os.getpid())],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=environment,
        # Its own process group: a Ctrl-C reaches the session, which stops the children
        # in order (actor first, so the learner's last checkpoint holds everything sent).
        start_new_session=True,
    )
    return _Child(name, process, log_path, handle)


STEP_STOP_TIMEOUT_S = 60.0  # a foreground step's clean stop (record-demos writing what it finished)


def _run_step(arguments: list[str], what: str) -> None:
    """A foreground step (demos, encoder pretraining, evaluation) whose output the user sees.

    It runs in a process group of its own, so a Ctrl-C reaches it once, through the session:
    the session asks it to stop (SIGINT: record-demos keeps the demos it finished), waits for
    that, and then stops too; another Ctrl-C meanwhile kills it. It watches the session's pid and
    stops the same way if the session dies."""
    process = subprocess.Popen(
        [sys.executable, "-m", "robot_stack", *arguments, "--parent-pid", str(os.getpid())],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    try:
        code = process.wait()
    except KeyboardInterrupt:
        try:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
            process.wait(STEP_STOP_TIMEOUT_S)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            print(f"{what}: killed", file=sys.stderr)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
        raise
    if code != 0:
        raise RuntimeError(f"{what} failed (exit code {code}): robot-stack {' '.join(arguments)}")


def _pretrain_encoder_if_missing(config: TaskConfig, paths: RunPaths) -> Optional[float]:
    """A camera task whose encoder weights file does not exist yet, and says how to make it
    (agent.encoder.pretrain): pretrain it on the demo frames now. Returns the seconds it took."""
    from robot_stack.data.demo_sets import demos_exist

    encoder = config.agent.encoder
    if not config.task.observation.images or encoder.pretrain is None or encoder.pretrained_path is None:
        return None
    if Path(encoder.pretrained_path).exists():
        print(f"image encoder: {encoder.pretrained_path}")
        return None
    if not demos_exist(paths.demos):
        raise RuntimeError(
            f"{encoder.pretrained_path} does not exist and there are no demos in {paths.demos} to pretrain it on: "
            f"record demos, or make the file with `robot-stack encoder pretrain` or `encoder convert`"
        )
    print(f"pretraining the image encoder ({encoder.pretrain.objective}) on the demo frames into {encoder.pretrained_path}")
    started = time.monotonic()
    _run_step(["encoder", "pretrain", str(paths.config_file), "--frames", str(paths.demos)], "encoder pretraining")
    return round(time.monotonic() - started, 1)


def _warm_start_plan(config: TaskConfig, paths: RunPaths) -> list[str]:
    """What the learner will take from ``training.init_from``, in lines for the user; raises
    WarmStartError (before anything starts) if the other run cannot warm-start this task."""
    init_from = config.training.init_from
    if init_from is None:
        return []
    if paths.checkpoints.is_dir() and CheckpointStore(paths.checkpoints).complete():
        return [f"{paths.checkpoints} holds this run's own checkpoints: the learner resumes them; "
                f"init_from ({init_from.run_dir}) is not applied again"]
    lines = []
    if init_from.networks:
        newest = source_checkpoints(init_from.run_dir, observation_spec(config), action_spec(config), paths.checkpoints)[0]
        lines.append(f"warm start: the learner starts from the networks of {describe_checkpoint(newest)}; "
                     "optimisers fresh, counters at 0")
    if init_from.datasets_as_demos:
        lines.append("warm start: the episodes recorded in "
                     f"{', '.join(str(folder) for folder in source_datasets(init_from.run_dir))} join the demo buffer")
    return lines


def _warm_started_from(paths: RunPaths) -> Optional[dict[str, Any]]:
    """Where the run's networks came from, as its newest checkpoint says (also after resumes)."""
    if not paths.checkpoints.is_dir():
        return None
    checkpoints = CheckpointStore(paths.checkpoints).complete()
    return checkpoints[-1].meta.get("warm_started_from") if checkpoints else None


def _progress_text(status: dict[str, Any]) -> str:
    rate = status.get("policy_success_rate", status.get("success_rate"))
    recent = f"{rate:.0%}" if rate is not None else "-"
    successes, episodes = status.get("deterministic_window") or (0, 0)
    deterministic = status.get("deterministic_success_rate")
    # The deterministic rate leads: it is what an evaluation would show; until its window is
    # full, the count so far.
    if deterministic is not None:
        shown = f"deterministic {deterministic:.0%} | "
    elif episodes:
        shown = f"deterministic {successes}/{episodes} | "
    else:
        shown = ""
    return (
        f"ep {status.get('episodes', 0)} | {shown}training success {recent} | "
        f"intervention {status.get('intervention_rate', 0.0):.0%} | "
        f"{status.get('updates_per_s', 0.0):.0f} upd/s | {status.get('env_steps_per_s', 0.0):.0f} steps/s"
    )


class _Interrupts:
    """SIGINT/SIGTERM while the session runs: the first ends the monitoring loop (the children
    are then stopped cleanly, in order); one that comes while they stop kills them, since the
    user would rather not wait for their final checkpoint (the periodic ones stay)."""

    def __init__(self) -> None:
        self.stopping = False
        self.forced = False
        self.children: list[_Child] = []

    def __call__(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if not self.stopping:
            raise KeyboardInterrupt(name)
        if self.forced:
            return
        self.forced = True
        print(f"{name} while stopping: killing the learner and the actors without waiting for their final checkpoint",
              file=sys.stderr)
        for child in self.children:
            child.kill()


class _OperatorKeys:
    """The session's side of the operator console: tells where actor0's live page is and sends
    the terminal's keys (robot_stack/terminal_keys.py). Pause, resume and stop go to every
    actor of the session; the episode commands (labels, re-record, reset) to actor0, whose
    episode the page shows. Follows the actors' status files for a pause or an operator's stop."""

    SESSION_WIDE = ("pause", "resume", "toggle_pause", "stop")

    def __init__(self, config: TaskConfig, bar) -> None:
        self.settings = config.actor.console
        self.bar = bar
        self.url: Optional[str] = None
        self.urls: dict[str, str] = {}  # actor id -> its live page
        self.keys = None
        self.paused = False
        self.stopped_by: dict[str, str] = {}  # actor id -> the source of its operator's stop

    def _say(self, line: str) -> None:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)

    def update(self, statuses: dict[str, Optional[dict[str, Any]]]) -> None:
        for actor_id, status in statuses.items():
            if not status:
                continue
            if status.get("stopped_by"):
                self.stopped_by[actor_id] = status["stopped_by"]
            if status.get("console_url"):
                self.urls[actor_id] = status["console_url"]
        console_status = statuses.get(SESSION_ACTOR_ID) or {}
        self.paused = bool(console_status.get("paused"))
        url = self.urls.get(SESSION_ACTOR_ID)
        if url and self.url is None:
            self.url = url
            self._say(f"live page: {url}")
            if self.settings.keyboard:
                from robot_stack.terminal_keys import TerminalKeys, keys_help

                keys = TerminalKeys(self.settings.keys, self.send, echo=self._say)
                if keys.start():
                    self.keys = keys
                    self._say(f"keys: {keys_help(self.settings.keys)}")

    def send(self, command: str) -> str:
        from robot_stack.terminal_keys import post_command

        if command not in self.SESSION_WIDE or len(self.urls) < 2:
            return post_command(self.url, command)
        if command == "toggle_pause":  # one decision for all, from the actor the operator watches
            command = "resume" if self.paused else "pause"
        answers = {actor_id: post_command(url, command) for actor_id, url in sorted(self.urls.items())}
        first = answers[SESSION_ACTOR_ID] if SESSION_ACTOR_ID in answers else next(iter(answers.values()))
        others = [f"{actor_id}: {answer}" for actor_id, answer in answers.items() if answer != first]
        return f"{first} ({len(answers)} actors{'; ' + ', '.join(others) if others else ''})"

    def close(self) -> None:
        if self.keys is not None:
            self.keys.stop()
            self.keys = None


def run_session(
    task_file: Path | TaskConfig,
    run_dir: Optional[Path] = None,
    *,
    max_env_steps: Optional[int] = None,
    target_success_rate: Optional[float] = None,
    eval_episodes: Optional[int] = None,
    demo_episodes: Optional[int] = None,
    max_wall_time_s: Optional[float] = None,
    demos: Optional[Path] = None,
    progress: bool = True,
    interventions: bool = True,
    init_from: Optional[Path] = None,
    actors: Optional[int] = None,
) -> dict[str, Any]:
    """Run a whole simulated task session; returns the summary it also writes to JSON.

    ``task_file`` is a task YAML or an already loaded config (a variant made in code, as RLDG's
    specialists are): the session writes the config it runs to the run dir either way, and its
    processes read that file. ``init_from``: warm-start from that run (``training.init_from``).
    ``actors``: how many simulated actors feed the learner (replaces ``session.actors``)."""
    from tqdm import tqdm

    base = task_file if isinstance(task_file, TaskConfig) else load_task_config(task_file)
    run_dir = Path(run_dir) if run_dir is not None else Path(base.session.run_dir)
    paths = RunPaths.under(run_dir, demos if demos is not None else demo_dir(base))
    config = session_config(
        base, paths,
        max_env_steps=max_env_steps, target_success_rate=target_success_rate, eval_episodes=eval_episodes,
        demo_episodes=demo_episodes, max_wall_time_s=max_wall_time_s,
    )
    if actors is not None:
        config = with_fields(config, "session", actors=actors)
    if not interventions:
        config = with_fields(config, "teleop.intervention", initial_rate=0.0, final_rate=0.0)
    if init_from is not None:
        config = with_init_from(config, init_from)
    # Before anything is written or started: a source that cannot warm-start this task is refused now.
    warm_start = _warm_start_plan(config, paths)
    training = config.training
    for directory in (paths.run_dir, paths.logs, paths.checkpoints):
        directory.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(config_to_yaml(config))
    actor_count = config.session.actors
    print(f"session {config.task.name}: run dir {paths.run_dir} (config {paths.config_file})"
          + (f", {actor_count} actors" if actor_count > 1 else ""))
    for line in warm_start:
        print(line)

    from robot_stack.data.demo_sets import demos_exist, read_demo_meta

    if training.demo_episodes > 0 and not demos_exist(paths.demos):
        if config.env is None:
            demonstrator = f"the {config.teleop.kind} teleoperator"
        else:
            demonstrator = f"env.expert {config.env.expert}" if config.env.expert else f"env.teleop {config.env.teleop}"
        print(f"recording {training.demo_episodes} demos with {demonstrator} into {paths.demos}")
        _run_step(["record-demos", str(paths.config_file), "--episodes", str(training.demo_episodes), "--out", str(paths.demos)], "recording demos")
    elif demos_exist(paths.demos) and read_demo_meta(paths.demos).get("interrupted"):
        meta = read_demo_meta(paths.demos)
        print(f"using the {len(meta['episodes'])} demos of an interrupted recording ({meta.get('requested')} were asked for) "
              f"in {paths.demos}; delete that folder to record them all")
    pretrain_s = _pretrain_encoder_if_missing(config, paths)

    # Ctrl-C or a plain `kill` stops the session the same clean way (also when it was started
    # in the background, where SIGINT starts out ignored).
    interrupts = _Interrupts()
    previous_handlers = {signum: signal.signal(signum, interrupts) for signum in (signal.SIGINT, signal.SIGTERM)}
    status_path(paths.logs).unlink(missing_ok=True)
    started = time.monotonic()
    learner = _spawn("learner", ["learner", str(paths.config_file)], paths.logs / "learner.log")
    interrupts.children.append(learner)
    actor_children: list[_Child] = []
    reason = None
    interrupted = False
    status: dict[str, Any] = {}
    bar = None
    console: Optional[_OperatorKeys] = None
    try:
        attempts = 1
        deadline = time.monotonic() + 120.0
        while read_status(paths.logs) is None:
            if not learner.alive():
                code = learner.stop(0.0)
                if code == PortInUse.exit_code and _ports_can_move(config) and attempts < LEARNER_PORT_ATTEMPTS:
                    config = _with_other_ports(config, learner.tail(1).strip())
                    paths.config_file.write_text(config_to_yaml(config))
                    learner = _spawn("learner", ["learner", str(paths.config_file)], paths.logs / "learner.log")
                    interrupts.children[:] = [learner]
                    attempts += 1
                    deadline = time.monotonic() + 120.0
                    continue
                raise RuntimeError(f"the learner exited (code {code}) before it started:\n{learner.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the learner did not start within 120 s; see {learner.log_path}")
            time.sleep(0.2)
        for index in range(actor_count):
            actor_children.append(_spawn_actor(paths, index))
            interrupts.children.append(actor_children[-1])
        actor_statuses = {child.name: actor_status_path(paths.logs, child.name) for child in actor_children}
        bar = tqdm(total=training.max_env_steps, unit="step", desc=config.task.name, disable=not progress, dynamic_ncols=True)
        console = _OperatorKeys(config, bar)
        while reason is None:
            time.sleep(0.5)
            status = read_status(paths.logs) or status
            console.update({actor_id: read_json_status(path) for actor_id, path in actor_statuses.items()})
            if bar is not None:
                bar.n = min(int(status.get("env_steps", 0)), training.max_env_steps)
                paused = "PAUSED | " if console.paused else ""
                bar.set_postfix_str(paused + _progress_text(status), refresh=False)
                bar.refresh()
            stopped = [child for child in actor_children if not child.alive() and child.process.returncode == 0
                       and child.name in console.stopped_by]
            if stopped:
                reason, interrupted = f"stopped by the operator ({console.stopped_by[stopped[0].name]})", True
                break
            for child in (learner, *actor_children):
                if not child.alive():
                    raise RuntimeError(f"the {child.name} exited unexpectedly (code {child.process.returncode}); last lines of {child.log_path}:\n{child.tail()}")
            reason = stop_reason(status, training, started)
    except KeyboardInterrupt as stop:
        interrupted = True
        reason = f"interrupted ({stop.args[0] if stop.args else 'SIGINT'})"
    finally:
        interrupts.stopping = True
        if console is not None:
            console.close()
        if bar is not None:
            bar.close()
        print(f"stopping: {reason or 'error'}", file=sys.stderr)
        # All actors stop together, before the learner, so its last checkpoint holds what they sent.
        for child in actor_children:
            child.interrupt()
        actors_deadline = time.monotonic() + config.actor.stop_timeout_s + 20.0
        for child in actor_children:
            child.stop(max(0.0, actors_deadline - time.monotonic()))
        learner_code = learner.stop(300.0)
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
    interrupted = interrupted or interrupts.forced
    wall_time_s = time.monotonic() - started
    status = read_status(paths.logs) or status
    if learner_code not in (0, None) and not interrupts.forced:
        raise RuntimeError(f"the learner stopped with exit code {learner_code}; see {learner.log_path}:\n{learner.tail()}")

    evaluation = None
    if not interrupted and training.eval_episodes > 0:
        print(f"evaluating the policy without interventions: {training.eval_episodes} episodes with its mean action, "
              f"then {training.eval_episodes} with sampled actions")
        _run_step(
            ["evaluate", str(paths.config_file), "--checkpoints", str(paths.checkpoints),
             "--episodes", str(training.eval_episodes), "--out", str(paths.evaluation)],
            "evaluation",
        )
        evaluation = json.loads((paths.evaluation / "eval.json").read_text())

    summary = summarise(config, paths, status, reason, wall_time_s, evaluation, interrupted)
    summary["encoder_pretrain_s"] = pretrain_s
    summary["warm_started_from"] = _warm_started_from(paths)
    from robot_stack.data.curves import plot_learning_curve

    plot_learning_curve(paths.logs / "episodes.csv", paths.run_dir / CURVE_FILE, title=config.task.name,
                        evaluation=evaluation, window=training.success_window_episodes,
                        min_policy_only=training.min_policy_only_episodes, target=training.target_success_rate)
    (paths.run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    print(_summary_text(summary))
    if interrupted:
        source = paths.config_file if isinstance(task_file, TaskConfig) else task_file
        print(f"resume with: robot-stack session {source} --run-dir {paths.run_dir}")
    return summary


def summarise(config: TaskConfig, paths: RunPaths, status: dict[str, Any], reason: Optional[str],
              wall_time_s: float, evaluation: Optional[dict[str, Any]], interrupted: bool) -> dict[str, Any]:
    from robot_stack.data.curves import steps_to_success

    target = config.training.target_success_rate
    reached = None
    episodes_csv = paths.logs / "episodes.csv"
    if target is not None and episodes_csv.exists():
        reached = steps_to_success(episodes_csv, target, config.training.success_window_episodes,
                                   config.training.min_policy_only_episodes, config.training.stop_on)
    return {
        "task": config.task.name,
        "actors": config.session.actors,
        "stop_reason": reason,
        "interrupted": interrupted,
        "env_steps": status.get("env_steps", 0),
        "episodes": status.get("episodes", 0),
        "updates": status.get("updates", 0),
        "wall_time_s": round(wall_time_s, 1),
        "training_success_rate": status.get("policy_success_rate", status.get("success_rate")),
        "deterministic_success_rate": status.get("deterministic_success_rate"),
        "intervention_rate": status.get("intervention_rate"),
        "target_success_rate": target,
        "stop_on": config.training.stop_on,
        "target_reached_at": reached,
        # The headline: the policy's mean action, as a lab deploys it; sampled actions beside it.
        "evaluation": None if evaluation is None else {
            **_evaluation_figures(evaluation),
            "sampled": None if not evaluation.get("sampled") else _evaluation_figures(evaluation["sampled"]),
        },
        "run_dir": str(paths.run_dir),
        "checkpoints": str(paths.checkpoints),
        "learning_curve": str(paths.run_dir / CURVE_FILE),
    }


def _evaluation_figures(report: dict[str, Any]) -> dict[str, Any]:
    return {"episodes": report["episodes"], "success_rate": report["success_rate"], "mean_length": report.get("mean_length")}


def evaluation_text(evaluation: dict[str, Any]) -> str:
    """One line of an evaluation (eval.json's or the summary's): deterministic first, sampled beside."""
    text = f"{evaluation['success_rate']:.0%} of {evaluation['episodes']} episodes with the policy's mean action"
    sampled = evaluation.get("sampled")
    if sampled:
        text += f" (sampled actions, as in training: {sampled['success_rate']:.0%} of {sampled['episodes']})"
    return text


def _summary_text(summary: dict[str, Any]) -> str:
    lines = [
        f"{summary['task']}: {summary['env_steps']} env steps, {summary['episodes']} episodes, "
        f"{summary['updates']} updates in {summary['wall_time_s'] / 60:.1f} min ({summary['stop_reason']})"
    ]
    reached = summary.get("target_reached_at")
    if reached:
        lines.append(
            f"the stop rule's success ({summary['stop_on'].replace('_', ' ')}) reached "
            f"{summary['target_success_rate']:.0%} after {reached['env_steps']} env steps ({reached['wall_time_s'] / 60:.1f} min)"
        )
    if summary.get("evaluation"):
        lines.append(f"evaluation without interventions: {evaluation_text(summary['evaluation'])}")
    lines.append(f"summary {summary['run_dir']}/{SUMMARY_FILE}, curve {summary['learning_curve']}")
    return "\n".join(lines)
