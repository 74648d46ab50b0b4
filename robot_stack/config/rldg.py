"""The RLDG experiment file: task variants of one base task, their instructions and
specialists, the scripted human-like demonstrator, data collection, the generalist and its
evaluation.

A variant is the base task with a few fields replaced (``overrides``, dotted paths into the
task config, e.g. ``task.sim.scene.cube_edge_m: 0.03``); the result is validated as a whole
task config, so a variant can be no more wrong than a task file. Relative paths are read
from the experiment file's folder.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field, ValidationError, field_validator, model_validator

from robot_stack.config.loader import ConfigError, ConfigIssue, SourceLocation, load_model_file, load_task_config
from robot_stack.config.schema import Float, Int, StrictModel, TaskConfig

_NAME = r"^[a-z][a-z0-9_]*$"


class RldgVariant(StrictModel):
    name: str = Field(pattern=_NAME, description="Short identifier, used in file and task names.")
    instruction: str = Field(min_length=1, max_length=200, description="The language instruction the generalist is given.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Dotted task-config path -> value.")
    held_out: bool = Field(False, description="No specialist and no training data: the generalist meets it only in evaluation.")
    specialist: Optional[Path] = Field(
        None, description="Checkpoint dir of its specialist (default: <run_dir>/specialists/<name>/checkpoints)."
    )

    @field_validator("overrides")
    @classmethod
    def _dotted(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        for key in overrides:
            if not re.fullmatch(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)+", key):
                raise ValueError(f"override key {key!r} is not a dotted path into the task config (e.g. task.sim.scene.cube_edge_m)")
            if key.split(".")[0] not in ("task", "robot", "cameras", "agent", "training", "teleop"):
                raise ValueError(f"override key {key!r} must start with task., robot., cameras., agent., training. or teleop.")
        return overrides


class SpecialistTrainingConfig(StrictModel):
    """One HIL-SERL session per seen variant (``robot-stack rldg specialists``)."""

    max_env_steps: Int = Field(20_000, ge=100)
    target_success_rate: Float = Field(0.9, gt=0.0, le=1.0)
    demo_episodes: Int = Field(20, ge=0)
    eval_episodes: Int = Field(20, ge=0)
    max_minutes: Optional[Float] = Field(None, gt=0.0)


class HumanLikeDemosConfig(StrictModel):
    """The scripted stand-in for people demonstrating with a SpaceMouse: the task's expert, slowed
    per episode, with slowly drifting hand error, white noise and pauses. Each property is one
    that recorded human teleoperation shows (hesitation, uneven speed, corrections)."""

    speed_range: tuple[Float, Float] = Field((0.5, 1.0), description="Per-episode fraction of the expert's speed.")
    drift_std: Float = Field(0.25, ge=0.0, le=1.0, description="Stationary std of the slowly varying hand error (action units).")
    drift_time_constant_s: Float = Field(0.6, gt=0.0, description="Correlation time of that error.")
    noise_std: Float = Field(0.1, ge=0.0, le=1.0, description="White noise per step (action units).")
    pause_probability: Float = Field(0.04, ge=0.0, lt=1.0, description="Chance per step that the operator stops.")
    pause_steps: tuple[Int, Int] = Field((2, 6), description="A pause lasts this many steps (inclusive range).")

    @model_validator(mode="after")
    def _ranges(self) -> "HumanLikeDemosConfig":
        low, high = self.speed_range
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"speed_range must satisfy 0 < low <= high <= 1, got {self.speed_range}")
        if not 1 <= self.pause_steps[0] <= self.pause_steps[1]:
            raise ValueError(f"pause_steps must satisfy 1 <= low <= high, got {self.pause_steps}")
        return self


class CollectConfig(StrictModel):
    episodes_per_variant: Int = Field(30, ge=1)
    keep: Literal["success", "all"] = Field("success", description="Which rollouts go into the dataset.")
    max_attempts_factor: Int = Field(3, ge=1, description="Give up on a variant after this many attempts per wanted episode.")
    cameras: Optional[tuple[str, ...]] = Field(
        None, description="Cameras recorded into the dataset (default: the base task's observation images)."
    )
    image_storage: Literal["video", "image"] = Field("video", description="Camera frames as MP4 videos or PNG images in the parquet.")
    video_codec: Literal["libsvtav1", "libx264", "h264", "mpeg4"] = "libsvtav1"
    robot_type: str = "franka_fr3"
    seed: Int = 0


class GeneralistConfig(StrictModel):
    """The built-in generalist: one transformer encoder over instruction tokens, a state token and
    image tokens, reading out an action chunk through learned query tokens (ACT-style L1 loss)."""

    kind: str = Field(
        "builtin",
        description="'builtin' or 'package.module:factory' (a plug-in generalist; see learner/rldg/generalist.py).",
    )
    cameras: tuple[str, ...] = Field((), description="Cameras the generalist sees ([] = state only).")
    image_size: Int = Field(64, ge=16, le=256, description="Images are resized to this square size.")
    d_model: Int = Field(128, ge=16, le=1024)
    layers: Int = Field(2, ge=1, le=12)
    heads: Int = Field(4, ge=1, le=16)
    feedforward: Int = Field(256, ge=16)
    dropout: Float = Field(0.1, ge=0.0, lt=1.0)
    chunk: Int = Field(8, ge=1, le=64, description="Actions predicted per step (action chunking).")
    execution: Literal["ensemble", "receding"] = Field(
        "ensemble", description="ensemble: average every chunk's prediction for this step; receding: replan every execute_steps."
    )
    ensemble_decay: Float = Field(0.1, ge=0.0, description="Weight exp(-decay * age) of older chunks' predictions.")
    execute_steps: Int = Field(4, ge=1)
    text_buckets: Int = Field(1024, ge=16, description="Hashed word vocabulary size.")
    max_instruction_words: Int = Field(8, ge=1, le=64)
    steps: Int = Field(3000, ge=1)
    batch_size: Int = Field(64, ge=1)
    learning_rate: Float = Field(3e-4, gt=0.0)
    weight_decay: Float = Field(1e-4, ge=0.0)
    warmup_steps: Int = Field(100, ge=0)
    init: Optional[Path] = Field(None, description="Initialise from this local generalist checkpoint dir.")
    torch_threads: Int = Field(1, ge=1)
    seed: Int = 0

    @model_validator(mode="after")
    def _heads(self) -> "GeneralistConfig":
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of heads ({self.heads})")
        if self.execute_steps > self.chunk:
            raise ValueError(f"execute_steps ({self.execute_steps}) cannot exceed chunk ({self.chunk})")
        return self


class RldgEvalConfig(StrictModel):
    episodes_per_variant: Int = Field(50, ge=1)
    seed: Int = Field(2_000_000, description="Evaluation seeds start here, apart from collection's and training's.")


class RldgConfig(StrictModel):
    name: str = Field(pattern=_NAME)
    base_task: Path = Field(description="The task file every variant starts from.")
    run_dir: Optional[Path] = Field(None, description="Default runs/rldg/<name>.")
    variants: list[RldgVariant] = Field(min_length=2)
    specialists: SpecialistTrainingConfig = SpecialistTrainingConfig()
    human_like_demos: HumanLikeDemosConfig = HumanLikeDemosConfig()
    collect: CollectConfig = CollectConfig()
    generalist: GeneralistConfig = GeneralistConfig()
    eval: RldgEvalConfig = RldgEvalConfig()

    @model_validator(mode="after")
    def _variants(self) -> "RldgConfig":
        names = [v.name for v in self.variants]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"variant names must be unique; repeated: {', '.join(repeated)}")
        if all(v.held_out for v in self.variants):
            raise ValueError("at least one variant must be seen (held_out: false)")
        return self


@dataclass(frozen=True)
class Variant:
    """A variant resolved into the task config it runs."""

    name: str
    instruction: str
    held_out: bool
    config: TaskConfig
    specialist: Path


@dataclass(frozen=True)
class RldgExperiment:
    file: Path
    spec: RldgConfig
    run_dir: Path
    variants: tuple[Variant, ...]

    @property
    def seen(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if not v.held_out)

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"no variant '{name}' in {self.file} (has {', '.join(v.name for v in self.variants)})")

    def select(self, names: Optional[list[str]]) -> tuple[Variant, ...]:
        return self.variants if not names else tuple(self.variant(name) for name in names)


def _resolve(file: Path, path: Optional[Path]) -> Optional[Path]:
    if path is None:
        return None
    return path if path.is_absolute() else Path(os.path.normpath(file.parent / path))


def apply_overrides(config: TaskConfig, overrides: dict[str, Any], name_suffix: str = "") -> TaskConfig:
    """The task config with dotted fields replaced and validated again as a whole. Raises
    KeyError naming a path that does not exist, pydantic's ValidationError for a bad value."""
    data = config.model_dump(mode="python")
    for dotted, value in overrides.items():
        node = data
        parts = dotted.split(".")
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
                raise KeyError(f"{'.'.join(parts[: depth + 1])} is not a section of the task config")
            node = node[part]
        if parts[-1] not in node:
            raise KeyError(f"{dotted} is not a field of the task config")
        node[parts[-1]] = copy.deepcopy(value)
    if name_suffix:
        data["task"]["name"] = f"{data['task']['name']}_{name_suffix}"
    return TaskConfig.model_validate(data)


def load_rldg_config(path: str | os.PathLike[str]) -> RldgExperiment:
    """Read an RLDG experiment file and resolve every variant's task config.

    Raises ConfigError naming the file, the variant and the override for every problem."""
    file = Path(path)
    spec = load_model_file(file, RldgConfig)
    assert isinstance(spec, RldgConfig)
    base_file = _resolve(file, spec.base_task)
    base = load_task_config(base_file)
    refusal = base.franka_only("RLDG (its variants are the project's simulated tasks)")
    if refusal is not None:
        raise ConfigError([ConfigIssue(SourceLocation(file), refusal, "base_task", str(spec.base_task))], source=file)
    if base.task.sim is None and base.robot.backend == "sim":
        raise ConfigError([ConfigIssue(SourceLocation(file), "the base task has no sim section", "base_task", str(spec.base_task))], source=file)
    # Like a session's run dir, relative to where the command runs.
    run_dir = spec.run_dir if spec.run_dir is not None else Path("runs") / "rldg" / spec.name
    issues: list[ConfigIssue] = []
    variants = []
    for index, variant in enumerate(spec.variants):
        try:
            config = apply_overrides(base, variant.overrides, name_suffix=variant.name)
        except KeyError as error:
            issues.append(ConfigIssue(SourceLocation(file), str(error.args[0]), f"variants.{index}.overrides"))
            continue
        except ValidationError as error:
            for detail in error.errors():
                where = ".".join(str(part) for part in detail["loc"])
                issues.append(ConfigIssue(
                    SourceLocation(file), f"variant '{variant.name}': {where}: {detail['msg']}",
                    f"variants.{index}.overrides", detail.get("input"),
                ))
            continue
        specialist = _resolve(file, variant.specialist) if variant.specialist is not None else run_dir / "specialists" / variant.name / "checkpoints"
        variants.append(Variant(variant.name, variant.instruction, variant.held_out, config, specialist))
    if issues:
        raise ConfigError(issues, source=file)
    instructions = [v.instruction for v in variants]
    if len(set(instructions)) != len(instructions):
        raise ConfigError([ConfigIssue(SourceLocation(file), "two variants share an instruction: the generalist could not tell them apart", "variants")], source=file)
    return RldgExperiment(file, spec, run_dir, tuple(variants))


__all__ = [
    "CollectConfig",
    "GeneralistConfig",
    "HumanLikeDemosConfig",
    "RldgConfig",
    "RldgEvalConfig",
    "RldgExperiment",
    "RldgVariant",
    "SpecialistTrainingConfig",
    "Variant",
    "apply_overrides",
    "load_rldg_config",
]
