"""Rotation conversions, one convention for the whole stack.

- Quaternions are [w, x, y, z] (MuJoCo's order); returned ones are unit with w >= 0.
- Rotation vectors are axis * angle in rad with the angle in [0, pi].
- rpy = [roll, pitch, yaw] with R = Rz(yaw) @ Ry(pitch) @ Rx(roll) (extrinsic XYZ).

The control law calls some of these 1000 times a second, so the math runs on Python
floats: for a 3x3 matrix a numpy call costs ~1 us of fixed overhead, more than the nine
multiplications it would do. Each public function converts at its edges; the
`_..._rows` kernels take and return nested lists so the hot path can chain them without
building arrays in between.
"""

from __future__ import annotations

import math

import numpy as np

# Below this angle sin(theta)/theta and 2 sin^2(theta/2)/theta^2 equal their limits
# (1 and 1/2) to double precision, and dividing by theta would risk 0/0.
_SMALL_ANGLE_RAD = 1e-8

# The skew-symmetric part of R is 2 sin(theta) * axis: it fixes the axis well until
# sin(theta) gets small near pi. The symmetric part, (1 - cos(theta)) * axis axis^T, is
# well conditioned for any theta past 90 deg. Switching at cos(theta) = -0.9 (~154 deg)
# keeps each method far from the end where it loses digits.
_NEAR_PI_COS = -0.9

# Below this cos(pitch) roll and yaw are no longer separable (gimbal lock); yaw is set to 0.
_GIMBAL_LOCK_COS = 1e-9


def wrap_angle(angle):
    """Wrap an angle (float or array, rad) to (-pi, pi]."""
    if isinstance(angle, np.ndarray):
        return angle - 2.0 * np.pi * np.ceil((angle - np.pi) / (2.0 * np.pi))
    return angle - 2.0 * math.pi * math.ceil((angle - math.pi) / (2.0 * math.pi))


def quat_to_matrix(quaternion) -> np.ndarray:
    """Rotation matrix of a quaternion [w, x, y, z]; the quaternion is normalised first."""
    w, x, y, z = np.asarray(quaternion, dtype=float).tolist()
    norm = math.sqrt(w * w + x * x + y * y + z * z)
    if not norm > 0.0:
        raise ValueError(f"quaternion must be non-zero and finite, got {quaternion!r}")
    w, x, y, z = w / norm, x / norm, y / norm, z / norm
    return np.array(
        [
            [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
            [2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x)],
            [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)],
        ]
    )


def matrix_to_quat(rotation) -> np.ndarray:
    """Unit quaternion [w, x, y, z] with w >= 0 of a rotation matrix."""
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = np.asarray(rotation, dtype=float).tolist()
    trace = m00 + m11 + m22
    # Shepperd's method: divide by the largest of 4w^2, 4x^2, 4y^2, 4z^2 so the
    # division never amplifies rounding (a plain trace formula fails near 180 deg).
    if trace > 0.0:
        s = 2.0 * math.sqrt(1.0 + trace)
        w, x, y, z = 0.25 * s, (m21 - m12) / s, (m02 - m20) / s, (m10 - m01) / s
    elif m00 >= m11 and m00 >= m22:
        s = 2.0 * math.sqrt(1.0 + m00 - m11 - m22)
        w, x, y, z = (m21 - m12) / s, 0.25 * s, (m01 + m10) / s, (m02 + m20) / s
    elif m11 >= m22:
        s = 2.0 * math.sqrt(1.0 + m11 - m00 - m22)
        w, x, y, z = (m02 - m20) / s, (m01 + m10) / s, 0.25 * s, (m12 + m21) / s
    else:
        s = 2.0 * math.sqrt(1.0 + m22 - m00 - m11)
        w, x, y, z = (m10 - m01) / s, (m02 + m20) / s, (m12 + m21) / s, 0.25 * s
    # q and -q are the same rotation; w >= 0 makes the representation unique.
    sign = 1.0 if w >= 0.0 else -1.0
    norm = sign * math.sqrt(w * w + x * x + y * y + z * z)
    return np.array([w / norm, x / norm, y / norm, z / norm])


def rotvec_from_matrix(rotation) -> np.ndarray:
    """Log map: rotation vector (axis * angle, rad, angle in [0, pi]) of a rotation matrix."""
    return np.array(_rotvec_from_rows(np.asarray(rotation, dtype=float).tolist()))


def matrix_from_rotvec(rotvec) -> np.ndarray:
    """Exp map: rotation matrix of a rotation vector (axis * angle, rad)."""
    x, y, z = np.asarray(rotvec, dtype=float).tolist()
    angle = math.sqrt(x * x + y * y + z * z)
    if angle < _SMALL_ANGLE_RAD:
        sin_over_angle, one_minus_cos_over_angle_sq = 1.0, 0.5
    else:
        sin_over_angle = math.sin(angle) / angle
        # 2 sin^2(a/2) instead of 1 - cos(a): no cancellation for small angles.
        half_sin = math.sin(0.5 * angle) / angle
        one_minus_cos_over_angle_sq = 2.0 * half_sin * half_sin
    # Rodrigues: R = cos(a) I + sin(a)/a [v]x + (1 - cos(a))/a^2 v v^T
    a, b = sin_over_angle, one_minus_cos_over_angle_sq
    cos_angle = 1.0 - b * angle * angle
    return np.array(
        [
            [cos_angle + b * x * x, b * x * y - a * z, b * x * z + a * y],
            [b * x * y + a * z, cos_angle + b * y * y, b * y * z - a * x],
            [b * x * z - a * y, b * y * z + a * x, cos_angle + b * z * z],
        ]
    )


def rpy_from_matrix(rotation) -> np.ndarray:
    """[roll, pitch, yaw] (rad) with R = Rz(yaw) Ry(pitch) Rx(roll); pitch in [-pi/2, pi/2]."""
    return np.array(_rpy_from_rows(np.asarray(rotation, dtype=float).tolist()))


def matrix_from_rpy(rpy) -> np.ndarray:
    """R = Rz(yaw) @ Ry(pitch) @ Rx(roll) for rpy = [roll, pitch, yaw] (rad)."""
    roll, pitch, yaw = np.asarray(rpy, dtype=float).tolist()
    return np.array(_matrix_rows_from_rpy(roll, pitch, yaw))


def _rotvec_from_rows(rows) -> list[float]:
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = rows
    # Skew part: 2 sin(theta) * axis. Trace: 1 + 2 cos(theta). atan2 of the two is
    # accurate at every angle and needs no clamping of an arccos argument.
    vx, vy, vz = m21 - m12, m02 - m20, m10 - m01
    two_sin = math.sqrt(vx * vx + vy * vy + vz * vz)
    two_cos = m00 + m11 + m22 - 1.0
    angle = math.atan2(two_sin, two_cos)
    if two_cos > 2.0 * _NEAR_PI_COS:
        if two_sin < _SMALL_ANGLE_RAD:
            # theta / sin(theta) -> 1: the skew part is already the rotation vector.
            return [0.5 * vx, 0.5 * vy, 0.5 * vz]
        scale = angle / two_sin
        return [scale * vx, scale * vy, scale * vz]
    # Near pi: axis from the symmetric part, (R + R^T)/2 - cos I = (1 - cos) a a^T,
    # starting from its largest diagonal entry so the square root is well conditioned.
    cos_angle = 0.5 * two_cos
    one_minus_cos = 1.0 - cos_angle
    if m00 >= m11 and m00 >= m22:
        ax = math.sqrt(max(m00 - cos_angle, 0.0) / one_minus_cos)
        denominator = 2.0 * one_minus_cos * ax
        ay, az = (m01 + m10) / denominator, (m02 + m20) / denominator
    elif m11 >= m22:
        ay = math.sqrt(max(m11 - cos_angle, 0.0) / one_minus_cos)
        denominator = 2.0 * one_minus_cos * ay
        ax, az = (m01 + m10) / denominator, (m12 + m21) / denominator
    else:
        az = math.sqrt(max(m22 - cos_angle, 0.0) / one_minus_cos)
        denominator = 2.0 * one_minus_cos * az
        ax, ay = (m02 + m20) / denominator, (m12 + m21) / denominator
    # The symmetric part fixes the axis only up to sign; the skew part (sin > 0) picks it.
    # At exactly pi both signs are the same rotation.
    if ax * vx + ay * vy + az * vz < 0.0:
        ax, ay, az = -ax, -ay, -az
    scale = angle / math.sqrt(ax * ax + ay * ay + az * az)
    return [scale * ax, scale * ay, scale * az]


def _rpy_from_rows(rows) -> list[float]:
    (m00, m01, _), (m10, m11, m12), (m20, m21, m22) = rows
    # Row 2 of Rz Ry Rx is [-sin p, cos p sin r, cos p cos r]; column 0 is cos p [cos y, sin y].
    cos_pitch = math.sqrt(m00 * m00 + m10 * m10)
    pitch = math.atan2(-m20, cos_pitch)
    if cos_pitch < _GIMBAL_LOCK_COS:
        # Only roll - yaw (or roll + yaw) is defined; with yaw = 0 row 1 is [0, cos r, -sin r].
        return [math.atan2(-m12, m11), pitch, 0.0]
    return [math.atan2(m21, m22), pitch, math.atan2(m10, m00)]


def _matrix_rows_from_rpy(roll: float, pitch: float, yaw: float) -> list[list[float]]:
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return [
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ]


def _multiply_rows(a, b) -> list[list[float]]:
    """a @ b for 3x3 nested lists, written out: about twice as fast as a comprehension."""
    (a00, a01, a02), (a10, a11, a12), (a20, a21, a22) = a
    (b00, b01, b02), (b10, b11, b12), (b20, b21, b22) = b
    return [
        [a00 * b00 + a01 * b10 + a02 * b20, a00 * b01 + a01 * b11 + a02 * b21, a00 * b02 + a01 * b12 + a02 * b22],
        [a10 * b00 + a11 * b10 + a12 * b20, a10 * b01 + a11 * b11 + a12 * b21, a10 * b02 + a11 * b12 + a12 * b22],
        [a20 * b00 + a21 * b10 + a22 * b20, a20 * b01 + a21 * b11 + a22 * b21, a20 * b02 + a21 * b12 + a22 * b22],
    ]


def _multiply_rows_transposed(a, b) -> list[list[float]]:
    """a @ b^T for 3x3 nested lists: entry ij is row i of a dotted with row j of b."""
    (a00, a01, a02), (a10, a11, a12), (a20, a21, a22) = a
    (b00, b01, b02), (b10, b11, b12), (b20, b21, b22) = b
    return [
        [a00 * b00 + a01 * b01 + a02 * b02, a00 * b10 + a01 * b11 + a02 * b12, a00 * b20 + a01 * b21 + a02 * b22],
        [a10 * b00 + a11 * b01 + a12 * b02, a10 * b10 + a11 * b11 + a12 * b12, a10 * b20 + a11 * b21 + a12 * b22],
        [a20 * b00 + a21 * b01 + a22 * b02, a20 * b10 + a21 * b11 + a22 * b12, a20 * b20 + a21 * b21 + a22 * b22],
    ]
