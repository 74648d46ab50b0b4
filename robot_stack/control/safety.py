"""The workspace box every Cartesian target is clamped into before it reaches the law."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from robot_stack.control.rotations import (
    _matrix_rows_from_rpy,
    _multiply_rows,
    _rpy_from_rows,
)

# Tolerance on R^T R = I and det R = 1 for the reference: loose enough for a matrix
# typed into YAML with 6 decimals, tight enough to catch a non-rotation.
_ROTATION_TOLERANCE = 1e-5


@dataclass(frozen=True, eq=False)
class SafetyBox:
    """Axis-aligned position limits plus per-axis limits on the orientation deviation.

    The orientation limits bound rpy(reference_rotation^T @ R_target), the deviation from
    a reference such as the gripper-down home pose. Limiting the deviation rather than the
    absolute rpy matters for a gripper pointing down: its absolute roll sits at +-pi,
    where an absolute [min, max] interval would wrap.
    """

    xyz_min_m: np.ndarray  # (3,) base frame
    xyz_max_m: np.ndarray  # (3,) base frame
    rpy_min_rad: np.ndarray  # (3,) deviation from reference_rotation
    rpy_max_rad: np.ndarray  # (3,) deviation from reference_rotation
    # No default: a wrong reference silently moves the whole orientation box.
    reference_rotation: np.ndarray  # (3, 3) base frame

    def __post_init__(self):
        for name, shape in (
            ("xyz_min_m", (3,)),
            ("xyz_max_m", (3,)),
            ("rpy_min_rad", (3,)),
            ("rpy_max_rad", (3,)),
            ("reference_rotation", (3, 3)),
        ):
            object.__setattr__(self, name, _finite_read_only_array(name, getattr(self, name), shape))
        _require_ordered("xyz_min_m", self.xyz_min_m, "xyz_max_m", self.xyz_max_m)
        _require_ordered("rpy_min_rad", self.rpy_min_rad, "rpy_max_rad", self.rpy_max_rad)
        for name in ("rpy_min_rad", "rpy_max_rad"):
            if np.any(np.abs(getattr(self, name)) > math.pi + 1e-9):
                # Past pi a limit can never bind; far more likely degrees were given.
                raise ValueError(f"SafetyBox.{name} must lie in [-pi, pi] rad, got {getattr(self, name)}")
        reference = self.reference_rotation
        if not (
            np.allclose(reference.T @ reference, np.eye(3), atol=_ROTATION_TOLERANCE)
            and abs(np.linalg.det(reference) - 1.0) < _ROTATION_TOLERANCE
        ):
            raise ValueError(f"SafetyBox.reference_rotation is not a rotation matrix: {reference.tolist()}")
        # Python-float copies: clamp() runs every control cycle (see rotations.py).
        object.__setattr__(self, "_xyz_bounds", tuple(zip(self.xyz_min_m.tolist(), self.xyz_max_m.tolist())))
        object.__setattr__(self, "_rpy_bounds", tuple(zip(self.rpy_min_rad.tolist(), self.rpy_max_rad.tolist())))
        object.__setattr__(self, "_reference_rows", reference.tolist())
        object.__setattr__(self, "_reference_transposed_rows", reference.T.tolist())

    def clamp(self, position: np.ndarray, rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """(position, rotation) moved into the box, as new arrays, and whether either moved."""
        desired_xyz = position.tolist()
        xyz = [min(max(value, low), high) for value, (low, high) in zip(desired_xyz, self._xyz_bounds)]
        clamped = xyz != desired_xyz

        deviation_rpy = _rpy_from_rows(_multiply_rows(self._reference_transposed_rows, rotation.tolist()))
        rpy = [min(max(value, low), high) for value, (low, high) in zip(deviation_rpy, self._rpy_bounds)]
        if rpy == deviation_rpy:
            # Hand back the caller's matrix (copied) rather than a rebuilt one, which would
            # differ by rounding and make an in-box target drift.
            clamped_rotation = rotation.copy()
        else:
            clamped = True
            clamped_rotation = np.array(_multiply_rows(self._reference_rows, _matrix_rows_from_rpy(*rpy)))
        return np.array(xyz), clamped_rotation, clamped


def _finite_read_only_array(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    array = np.array(value, dtype=float)
    if array.shape != shape:
        raise ValueError(f"SafetyBox.{name} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"SafetyBox.{name} must be finite, got {array.tolist()}")
    array.flags.writeable = False
    return array


def _require_ordered(low_name: str, low: np.ndarray, high_name: str, high: np.ndarray) -> None:
    if np.any(low > high):
        raise ValueError(f"SafetyBox.{low_name} must be <= {high_name} on every axis, got {low} > {high}")
