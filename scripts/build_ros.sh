#!/usr/bin/env bash
# Build the ROS 2 workspace (ros_ws: robot_stack_interfaces, robot_stack_ros) with colcon.
#
#   scripts/build_ros.sh            # after scripts/setup.sh dev,ros (ROS 2 from the ros-* wheels)
#
# With ROS 2 from the ros-* wheels in the virtual environment (scripts/setup.sh with the
# "ros" extra), the ament prefix is the venv itself. On a lab PC with ROS 2 Humble/Jazzy
# from apt, source /opt/ros/<distro>/setup.bash first and run colcon build in ros_ws as
# usual (this script does the same when ROS_DISTRO is set and the venv has no ROS).
# Skips the build when nothing under ros_ws/src changed since the last one.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv}"
case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac
cd "$root/ros_ws"

if [ -x "$venv/bin/colcon" ] && "$venv/bin/python" -c "import rclpy" 2>/dev/null; then
  export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
  export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  python_args=(--cmake-args "-DPython3_EXECUTABLE=$venv/bin/python" "-DPYTHON_EXECUTABLE=$venv/bin/python")
elif [ -n "${ROS_DISTRO:-}" ]; then
  python_args=()
else
  echo "[build_ros] no ROS 2 found: run scripts/setup.sh dev,ros (ros-* wheels) or source /opt/ros/<distro>/setup.bash" >&2
  exit 1
fi

stamp="build/.robot-stack-sources"
sources="$(find -L src -type f \( -name '*.msg' -o -name '*.srv' -o -name '*.action' -o -name '*.py' -o -name '*.xml' -o -name '*.txt' -o -name '*.cmake' -o -name '*.cfg' -o -name '*.yaml' \) -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sources" ] && [ -f install/setup.bash ]; then
  echo "[build_ros] ros_ws is up to date"
  exit 0
fi
echo "[build_ros] building ros_ws (colcon)"
mkdir -p build
if ! colcon build "${python_args[@]}" >build/colcon.log 2>&1 </dev/null; then
  tail -n 60 build/colcon.log >&2
  echo "[build_ros] colcon build failed; full log: ros_ws/build/colcon.log" >&2
  exit 1
fi
echo "$sources" > "$stamp"
echo "[build_ros] ready: source scripts/ros_env.sh"
