"""The simulated Franka as a robot backend: the impedance law runs every physics step.

Physics and the law both run at 1 kHz (``sim.physics_timestep_s`` = 0.001 by default):
the real FR3 runs its torque loop at 1 kHz, the torque-rate limit is specified per 1 ms
cycle, and the damping gains (89 Ns/m at 2000 N/m) are tuned for that rate. At 2 ms the
same gains still run, but the rate limit would allow twice the torque slope per second
of a real robot. One law call plus one MuJoCo step cost 40-70 us on the build machines,
which still leaves 150+ policy steps per second of simulated robot on one core
(benchmarks/bench_sim_env.py).
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from robot_stack.control import ArmState, CartesianTarget, SafetyBox, impedance_torques
from robot_stack.control.from_config import impedance_gains_from_config
from robot_stack.control.joint_move import JOINT_MOVE_SETTLE_S, joint_move_torques, minimum_jerk_reference
from robot_stack.hardware.interfaces import RobotState, TargetStatus
from robot_stack.sim.world import SimWorld


class SimFrankaBackend:
    """RobotBackend over a ``SimWorld``. ``advance`` integrates physics; nothing else
    moves the simulated robot."""

    def __init__(self, world: SimWorld, safety_box: SafetyBox | None = None):
        self.world = world
        cfg = world.robot_config
        self.gains = impedance_gains_from_config(cfg)
        self.safety_box = safety_box
        self.q_nullspace = np.array(cfg.home_joint_positions_rad)
        self.watchdog_timeout_s = cfg.watchdog_timeout_s
        self.gripper_limits_m = (cfg.gripper.min_width_m, cfg.gripper.max_width_m)
        nv = world.model.nv
        self._jacp = np.zeros((3, nv))
        self._jacr = np.zeros((3, nv))
        self._jacobian = np.zeros((6, 7))
        self._tau = np.zeros(7)
        self.watchdog_tripped = False
        self.error_clipped_steps = 0
        self._target = CartesianTarget(*world.tcp_pose())
        self._last_target_time_s = world.time_s

    # ------------------------------------------------------------------ RobotBackend

    def read_state(self) -> RobotState:
        w, d = self.world, self.world.data
        self._update_jacobian()
        J = self._jacobian
        dq = d.qvel[:7].copy()
        position, rotation = w.tcp_pose()
        return RobotState(
            time_s=w.time_s,
            q_rad=d.qpos[:7].copy(),
            dq_rad_per_s=dq,
            tcp_position_m=position,
            tcp_rotation=rotation,
            tcp_velocity=J @ dq,
            tcp_wrench=self._external_wrench(J),
            gripper_width_m=w.gripper_width_m(),
            tau_commanded_nm=self._tau.copy(),
        )

    def set_target(self, position_m: np.ndarray, rotation: np.ndarray) -> TargetStatus:
        position_m = np.asarray(position_m, dtype=float)
        rotation = np.asarray(rotation, dtype=float)
        if not (np.all(np.isfinite(position_m)) and np.all(np.isfinite(rotation))):
            raise ValueError(f"non-finite target refused: position={position_m}, rotation={rotation.tolist()}")
        clamped = False
        if self.safety_box is not None:
            position_m, rotation, clamped = self.safety_box.clamp(position_m, rotation)
        self._target = CartesianTarget(position_m.copy(), rotation.copy())
        self._last_target_time_s = self.world.time_s
        self.watchdog_tripped = False
        return TargetStatus(position_m, rotation, clamped)

    def hold(self) -> None:
        self._target = CartesianTarget(*self.world.tcp_pose())
        self._last_target_time_s = self.world.time_s

    def advance(self, duration_s: float) -> None:
        steps = max(1, int(round(duration_s / self.world.physics_timestep_s)))
        m, d = self.world.model, self.world.data
        for _ in range(steps):
            if not self.watchdog_tripped and d.time - self._last_target_time_s > self.watchdog_timeout_s:
                # Targets stopped arriving: stay where we are instead of chasing a stale goal.
                self.watchdog_tripped = True
                self._target = CartesianTarget(*self.world.tcp_pose())
            mujoco.mj_step1(m, d)
            self._apply_impedance_law()
            mujoco.mj_step2(m, d)

    def set_gripper(self, width_m: float) -> None:
        if not math.isfinite(width_m):
            raise ValueError(f"non-finite gripper width refused: {width_m}")
        lo, hi = self.gripper_limits_m
        self.world.data.ctrl[self.world.gripper_actuator] = min(max(width_m, lo), hi) / 2

    def move_to_joint_positions(self, q_rad: np.ndarray, duration_s: float) -> None:
        """Minimum-jerk joint interpolation tracked by a joint impedance, then hold the
        reached TCP pose with the Cartesian law."""
        m, d = self.world.model, self.world.data
        q_goal = np.asarray(q_rad, dtype=float)
        if q_goal.shape != (7,) or not np.all(np.isfinite(q_goal)):
            raise ValueError(f"joint move needs 7 finite joint positions, got {q_rad!r}")
        lower, upper = m.jnt_range[:7, 0], m.jnt_range[:7, 1]
        if np.any(q_goal < lower) or np.any(q_goal > upper):
            raise ValueError(f"joint move target {q_goal.round(4).tolist()} is outside the joint limits")
        q_start = d.qpos[:7].copy()
        steps = max(1, int(round(duration_s / self.world.physics_timestep_s)))
        settle_steps = int(round(JOINT_MOVE_SETTLE_S / self.world.physics_timestep_s))
        limits = self.gains.torque_limits_nm
        for i in range(1, steps + settle_steps + 1):
            q_ref = minimum_jerk_reference(q_start, q_goal, i, steps)
            mujoco.mj_step1(m, d)
            coriolis = d.qfrc_bias[:7] - d.qfrc_gravcomp[:7]
            tau = joint_move_torques(q_ref, d.qpos[:7], d.qvel[:7], coriolis)
            tau = np.clip(tau, self._tau - self.gains.torque_rate_limit_nm, self._tau + self.gains.torque_rate_limit_nm)
            self._tau = np.clip(tau, -limits, limits)
            d.ctrl[:7] = self._tau
            mujoco.mj_step2(m, d)
        self.hold()

    def recover(self) -> None:
        # The simulated arm has no reflex state to clear; holding the current pose is
        # what a recovered real arm does first.
        self._tau[:] = 0.0
        self.hold()

    def close(self) -> None:
        pass

    # ------------------------------------------------------------------ internals

    @property
    def target(self) -> CartesianTarget:
        return self._target

    def _update_jacobian(self) -> None:
        mujoco.mj_jacSite(self.world.model, self.world.data, self._jacp, self._jacr, self.world.tcp_site)
        self._jacobian[:3] = self._jacp[:, :7]
        self._jacobian[3:] = self._jacr[:, :7]

    def _apply_impedance_law(self) -> None:
        d = self.world.data
        self._update_jacobian()
        site = self.world.tcp_site
        state = ArmState(
            q=d.qpos[:7],
            dq=d.qvel[:7],
            ee_position=d.site_xpos[site],
            ee_rotation=d.site_xmat[site].reshape(3, 3),
            jacobian=self._jacobian,
            # Gravity is compensated by gravcomp (as by the Franka's firmware): the law
            # adds only the Coriolis/centrifugal part of the bias force.
            coriolis=d.qfrc_bias[:7] - d.qfrc_gravcomp[:7],
        )
        result = impedance_torques(state, self._target, self.gains, self.q_nullspace, self._tau)
        self._tau = result.tau
        self.error_clipped_steps += result.error_clipped
        d.ctrl[:7] = result.tau

    def _external_wrench(self, J: np.ndarray) -> np.ndarray:
        """External wrench at the TCP estimated from the joint torques that contacts
        exert, as the Franka estimates O_F_ext_hat_K from its torque sensors."""
        tau_ext = self.world.data.qfrc_constraint[:7]
        return np.linalg.solve(J @ J.T + 1e-6 * np.eye(6), J @ tau_ext)
