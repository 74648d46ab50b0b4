# Source this file to use the ROS 2 nodes built by scripts/build_ros.sh:
#
#   source scripts/ros_env.sh
#
# It activates the virtual environment, points ament at the ros-* wheels inside it (or
# keeps the /opt/ros install already sourced), sources ros_ws/install/setup.bash and keeps
# DDS on this machine unless you say otherwise (the robot PC's nodes talk among
# themselves; actor and learner talk over ZeroMQ).
_rs_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_rs_venv="${VENV:-$_rs_root/.venv}"
case "$_rs_venv" in /*) ;; *) _rs_venv="$_rs_root/$_rs_venv" ;; esac
if [ ! -f "$_rs_root/ros_ws/install/setup.bash" ]; then
  echo "ros_env.sh: ros_ws is not built; run scripts/build_ros.sh" >&2
  return 1 2>/dev/null || exit 1
fi
if [ -f "$_rs_venv/bin/activate" ]; then
  # shellcheck disable=SC1091
  source "$_rs_venv/bin/activate"
  if "$_rs_venv/bin/python" -c "import rclpy" 2>/dev/null; then
    export AMENT_PREFIX_PATH="$_rs_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
    export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
  fi
fi
# shellcheck disable=SC1091
source "$_rs_root/ros_ws/install/setup.bash"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"  # Humble: export ROS_LOCALHOST_ONLY=1
export ROBOT_STACK_ROOT="$_rs_root"
unset _rs_root _rs_venv
