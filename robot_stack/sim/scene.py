"""MJCF for the simulated FR3 workcell, written here from the FR3's published kinematics.

The arm follows the Franka modified-DH parameters (link offsets 0.333, 0.316, 0.0825,
0.384, 0.088, flange 0.107 m; hand turned -45 deg about the flange axis). Links are drawn
with capsules: contact and rendering stay cheap, which matters because two cameras are
rendered in software on the build machines. Link masses follow the Franka datasheet
values closely enough for impedance control; every arm body has ``gravcomp`` because a
real Franka compensates gravity in firmware and our law, like libfranka's, adds only
Coriolis torques.

Task objects are added from the task's ``sim.scene`` section, so an engineer makes a new
variant (cube size, clearance, start ranges) in YAML only.

Collision groups (contype / conaffinity bits): 1 table, 2 task objects, 4 arm links,
8 fingers, 16 held peg. Arm links never collide with each other (a real FR3's own
self-collision model is not what these tasks exercise) and the held peg never collides
with the fingers that hold it.
"""

from __future__ import annotations

from dataclasses import dataclass

from robot_stack.config.schema import PegInsertionScene, PickCubeScene, RobotConfig, SimConfig

# Joint ranges (rad) used in the MJCF: the FR3 datasheet limits.
_JOINT_RANGES = (
    (-2.7437, 2.7437),
    (-1.7837, 1.7837),
    (-2.9007, 2.9007),
    (-3.0421, -0.1518),
    (-2.8065, 2.8065),
    (0.5445, 4.5169),
    (-3.0159, 3.0159),
)

# Distance from the flange to the hand body origin's finger slide axes (m).
FINGER_BASE_Z_M = 0.0584
FINGER_MAX_OPENING_M = 0.04  # per finger; the Franka Hand opens to 0.08 m.
# The slide limit sits just past the widest command, so the servo, not the soft joint
# limit, sets the open width.
FINGER_JOINT_LIMIT_M = 0.0415
TABLE_TOP_Z_M = 0.0


@dataclass(frozen=True)
class SceneXml:
    xml: str
    object_kind: str  # "pick_cube" or "peg_insertion"


def _arm_xml(tcp_offset_z_m: float, held_peg: str) -> str:
    arm_geom = 'class="arm"'
    return f"""
    <body name="link0" childclass="fr3">
      <geom class="visual_only" type="cylinder" size="0.07 0.07" pos="0 0 0.07" rgba="0.9 0.9 0.9 1"/>
      <body name="link1" pos="0 0 0.333" gravcomp="1">
        <inertial pos="0 -0.04 -0.05" mass="4.97" diaginertia="0.70 0.70 0.009"/>
        <joint name="joint1" range="{_JOINT_RANGES[0][0]} {_JOINT_RANGES[0][1]}"/>
        <geom class="visual_only" type="capsule" fromto="0 0 -0.19 0 0 -0.02" size="0.06"/>
        <body name="link2" quat="0.70710678 -0.70710678 0 0" gravcomp="1">
          <inertial pos="0 -0.07 0.03" mass="0.646" diaginertia="0.008 0.028 0.028"/>
          <joint name="joint2" range="{_JOINT_RANGES[1][0]} {_JOINT_RANGES[1][1]}"/>
          <geom {arm_geom} type="capsule" fromto="0 0 -0.06 0 0 0.06" size="0.06"/>
          <geom {arm_geom} type="capsule" fromto="0 0 0 0 -0.2 0" size="0.06"/>
          <body name="link3" pos="0 -0.316 0" quat="0.70710678 0.70710678 0 0" gravcomp="1">
            <inertial pos="0.04 0.03 -0.07" mass="3.23" diaginertia="0.037 0.036 0.011"/>
            <joint name="joint3" range="{_JOINT_RANGES[2][0]} {_JOINT_RANGES[2][1]}"/>
            <geom {arm_geom} type="capsule" fromto="0 0 -0.14 0 0 -0.02" size="0.06"/>
            <geom {arm_geom} type="capsule" fromto="0 0 0 0.0825 0 0" size="0.055"/>
            <body name="link4" pos="0.0825 0 0" quat="0.70710678 0.70710678 0 0" gravcomp="1">
              <inertial pos="-0.05 0.1 0.03" mass="3.59" diaginertia="0.026 0.019 0.029"/>
              <joint name="joint4" range="{_JOINT_RANGES[3][0]} {_JOINT_RANGES[3][1]}"/>
              <geom {arm_geom} type="capsule" fromto="0 0 -0.05 0 0 0.05" size="0.055"/>
              <geom {arm_geom} type="capsule" fromto="0 0 0 -0.0825 0.12 0" size="0.055"/>
              <body name="link5" pos="-0.0825 0.384 0" quat="0.70710678 -0.70710678 0 0" gravcomp="1">
                <inertial pos="0 0.04 -0.11" mass="1.23" diaginertia="0.036 0.032 0.004"/>
                <joint name="joint5" range="{_JOINT_RANGES[4][0]} {_JOINT_RANGES[4][1]}"/>
                <geom {arm_geom} type="capsule" fromto="0 0 -0.26 0 0 -0.02" size="0.05"/>
                <geom {arm_geom} type="capsule" fromto="0 0.06 -0.22 0 0.06 -0.1" size="0.035"/>
                <body name="link6" quat="0.70710678 0.70710678 0 0" gravcomp="1">
                  <inertial pos="0.06 -0.01 0.01" mass="1.67" diaginertia="0.002 0.004 0.005"/>
                  <joint name="joint6" range="{_JOINT_RANGES[5][0]} {_JOINT_RANGES[5][1]}"/>
                  <geom {arm_geom} type="capsule" fromto="0 0 -0.04 0 0 0.03" size="0.05"/>
                  <geom {arm_geom} type="capsule" fromto="0 0 0 0.088 0 0" size="0.045"/>
                  <body name="link7" pos="0.088 0 0" quat="0.70710678 0.70710678 0 0" gravcomp="1">
                    <inertial pos="0.01 0.01 0.08" mass="0.74" diaginertia="0.013 0.010 0.008"/>
                    <joint name="joint7" range="{_JOINT_RANGES[6][0]} {_JOINT_RANGES[6][1]}"/>
                    <geom {arm_geom} type="cylinder" fromto="0 0 -0.02 0 0 0.09" size="0.045" rgba="0.3 0.3 0.3 1"/>
                    <body name="hand" pos="0 0 0.107" quat="0.92387953 0 0 -0.38268343" gravcomp="1">
                      <inertial pos="0 0 0.03" mass="0.73" diaginertia="0.001 0.0025 0.0017"/>
                      <geom {arm_geom} type="box" size="0.025 0.1 0.025" pos="0 0 0.03" rgba="0.95 0.95 0.95 1"/>
                      <site name="tcp" pos="0 0 {tcp_offset_z_m}" size="0.005" rgba="1 0 0 0.5" group="5"/>
                      <camera name="wrist" pos="0.06 0 0.02" xyaxes="0 1 0 0.95 0 0.3" fovy="75"/>
                      <body name="left_finger" pos="0 0 {FINGER_BASE_Z_M}" gravcomp="1">
                        <inertial pos="0 0.01 0.025" mass="0.015" diaginertia="2e-6 2e-6 1e-6"/>
                        <joint name="finger_left" type="slide" axis="0 1 0" range="0 {FINGER_JOINT_LIMIT_M}"
                               damping="2" armature="0.05"/>
                        <geom class="finger" type="box" size="0.0085 0.005 0.022" pos="0 0.005 0.030"/>
                      </body>
                      <body name="right_finger" pos="0 0 {FINGER_BASE_Z_M}" gravcomp="1">
                        <inertial pos="0 -0.01 0.025" mass="0.015" diaginertia="2e-6 2e-6 1e-6"/>
                        <joint name="finger_right" type="slide" axis="0 -1 0" range="0 {FINGER_JOINT_LIMIT_M}"
                               damping="2" armature="0.05"/>
                        <geom class="finger" type="box" size="0.0085 0.005 0.022" pos="0 -0.005 0.030"/>
                      </body>
                      {held_peg}
                    </body>
                  </body>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>"""


def _pick_cube_xml(scene: PickCubeScene) -> tuple[str, str]:
    h = scene.cube_edge_m / 2
    world = f"""
    <body name="cube" pos="{scene.cube_xy_center_m[0]} {scene.cube_xy_center_m[1]} {h}">
      <freejoint name="cube_joint"/>
      <geom name="cube" type="box" size="{h} {h} {h}" mass="{scene.cube_mass_kg}" rgba="0.85 0.2 0.2 1"
            contype="2" conaffinity="31" friction="1.0 0.01 0.001" condim="4"/>
    </body>"""
    return world, ""


def _peg_insertion_xml(scene: PegInsertionScene, tcp_offset_z_m: float) -> tuple[str, str]:
    r = scene.peg_radius_m
    half_len = scene.peg_length_m / 2
    # The peg is held rigidly between the closed fingers; its tip sits below the TCP by
    # the part of the peg that sticks out of the grasp.
    stick_out = scene.peg_length_m - 0.03
    peg_center_z = tcp_offset_z_m + stick_out - half_len
    held_peg = f"""
                      <body name="peg" pos="0 0 {peg_center_z}" gravcomp="1">
                        <inertial pos="0 0 0" mass="0.05" diaginertia="2e-5 2e-5 3e-6"/>
                        <geom name="peg" type="box" size="{r} {r} {half_len}" rgba="0.2 0.5 0.9 1"
                              contype="16" conaffinity="3" friction="0.3 0.005 0.0001" condim="4"/>
                        <site name="peg_tip" pos="0 0 {half_len}" size="0.003" group="5"/>
                      </body>"""
    inner = r + scene.hole_clearance_m
    wall = 0.02
    depth = scene.hole_depth_m
    hz = depth / 2
    off = inner + wall / 2
    span = inner + wall
    walls = "\n".join(
        f'      <geom name="hole_wall_{i}" type="box" size="{sx} {sy} {hz}" pos="{px} {py} {hz}" '
        'rgba="0.4 0.4 0.45 1" contype="2" conaffinity="31" friction="0.3 0.005 0.0001" condim="4"/>'
        for i, (sx, sy, px, py) in enumerate(
            (
                (wall / 2, span, off, 0.0),
                (wall / 2, span, -off, 0.0),
                (inner, wall / 2, 0.0, off),
                (inner, wall / 2, 0.0, -off),
            )
        )
    )
    # The hole is a mocap body so each episode can move it without rebuilding the model.
    world = f"""
    <body name="hole" mocap="true" pos="{scene.hole_xy_center_m[0]} {scene.hole_xy_center_m[1]} 0">
{walls}
      <geom name="hole_floor" type="box" size="{span} {span} 0.0005" pos="0 0 0.0005" rgba="0.3 0.3 0.35 1"
            contype="2" conaffinity="31"/>
      <site name="hole_bottom" pos="0 0 0.001" size="0.003" group="5"/>
    </body>"""
    return world, held_peg


def build_scene_xml(robot: RobotConfig, sim: SimConfig) -> SceneXml:
    """The full MJCF for a task's scene: table, cameras, FR3 with hand, task objects."""
    scene = sim.scene
    tcp_z = robot.tcp_offset_m[2]
    if isinstance(scene, PickCubeScene):
        objects, held = _pick_cube_xml(scene)
    else:
        objects, held = _peg_insertion_xml(scene, tcp_z)
    grasp_force = robot.gripper.grasp_force_n
    xml = f"""
<mujoco model="fr3_{scene.kind}">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{sim.physics_timestep_s}" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <global offwidth="640" offheight="480"/>
    <quality shadowsize="0"/>
    <headlight ambient="0.5 0.5 0.5" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
  </visual>
  <default>
    <default class="fr3">
      <joint axis="0 0 1" damping="1.0" armature="0.1" frictionloss="0.0"/>
      <default class="arm">
        <geom contype="4" conaffinity="3" rgba="0.92 0.92 0.92 1" group="1"/>
      </default>
      <default class="visual_only">
        <geom contype="0" conaffinity="0" rgba="0.92 0.92 0.92 1" group="1"/>
      </default>
      <default class="finger">
        <geom contype="8" conaffinity="3" rgba="0.2 0.2 0.2 1" friction="1.2 0.01 0.001" condim="4"
              solref="0.005 1" solimp="0.95 0.99 0.001"/>
      </default>
    </default>
  </default>
  <worldbody>
    <light pos="0.5 0 1.5" dir="0 0 -1" directional="true"/>
    <geom name="table" type="box" size="0.8 0.8 0.02" pos="0.4 0 -0.02" rgba="0.55 0.45 0.35 1"
          contype="1" conaffinity="30"/>
    <camera name="front" pos="1.3 0 0.6" xyaxes="0 1 0 -0.507 0 0.862" fovy="42"/>
{_arm_xml(tcp_z, held)}
{objects}
  </worldbody>
  <tendon>
    <fixed name="finger_split">
      <joint joint="finger_left" coef="0.5"/>
      <joint joint="finger_right" coef="0.5"/>
    </fixed>
  </tendon>
  <equality>
    <joint joint1="finger_left" joint2="finger_right" solref="0.005 1"/>
  </equality>
  <actuator>
    <motor name="motor1" joint="joint1" ctrlrange="-87 87"/>
    <motor name="motor2" joint="joint2" ctrlrange="-87 87"/>
    <motor name="motor3" joint="joint3" ctrlrange="-87 87"/>
    <motor name="motor4" joint="joint4" ctrlrange="-87 87"/>
    <motor name="motor5" joint="joint5" ctrlrange="-12 12"/>
    <motor name="motor6" joint="joint6" ctrlrange="-12 12"/>
    <motor name="motor7" joint="joint7" ctrlrange="-12 12"/>
    <!-- Position servo on the finger opening with the grasp force as its force limit:
         closing on an object squeezes with at most grasp_force_n, like the Franka Hand. -->
    <general name="gripper" tendon="finger_split" ctrlrange="0 {FINGER_MAX_OPENING_M}"
             forcerange="-{grasp_force} {grasp_force}" gainprm="2000" biastype="affine" biasprm="0 -2000 -60"/>
  </actuator>
</mujoco>
"""
    return SceneXml(xml=xml, object_kind=scene.kind)
