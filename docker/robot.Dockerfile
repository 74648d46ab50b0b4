# The robot PC: ROS 2 Jazzy (from apt), the robot_stack_ros nodes and the hardware extras.
#   docker build -f docker/robot.Dockerfile -t robot-stack-robot .
#   docker run --rm -it --network host robot-stack-robot \
#       ros2 launch robot_stack_ros robot.launch.py config:=hardware_configs/tasks/<task>.yaml learner_host:=<learner PC>
#
# Devices (add what the task uses, or --privileged -v /dev:/dev for all of them):
#   Franka (libfranka, FCI):  --network host --cap-add SYS_NICE --ulimit rtprio=99 --ulimit memlock=-1
#                             (the 1 kHz loop needs real-time priority; the host runs a PREEMPT_RT kernel)
#   SpaceMouse (hidraw):      --device /dev/spacemouse (scripts/udev/99-robot-stack.rules names it; or /dev/hidrawN)
#   RealSense (USB, V4L2):    --device /dev/bus/usb -v /dev:/dev --device-cgroup-rule 'c 81:* rmw' --device-cgroup-rule 'c 189:* rmw'
#   Runs and logs on the host: -v "$PWD/runs:/robot-stack/runs"; CurveZMQ keys: -v "$PWD/keys:/robot-stack/keys:ro"
FROM ros:jazzy-ros-base

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3-venv python3-pip python3-colcon-common-extensions ros-jazzy-launch-ros \
      libegl1 libegl-mesa0 libgl1-mesa-dri libglx-mesa0 libgles2 libhidapi-hidraw0 libhidapi-libusb0 libusb-1.0-0 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /robot-stack
COPY . .

# The venv sees the apt packages (rclpy, the message packages, numpy): ROS comes from apt
# here, so the project is installed without its "ros" extra. ROS Jazzy's Python extensions
# are built against NumPy 1.x, hence the constraint. torch first, pinned, CPU build.
RUN python3 -m venv --system-site-packages .venv \
 && echo "numpy<2" > /tmp/constraints.txt \
 && .venv/bin/pip install --no-cache-dir -c /tmp/constraints.txt torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && .venv/bin/pip install --no-cache-dir -c /tmp/constraints.txt -e ".[console,franka,realsense,spacemouse,vlm]"

# colcon run by the venv's interpreter, so the nodes' scripts start with it and import the project.
RUN . /opt/ros/jazzy/setup.sh \
 && . .venv/bin/activate \
 && cd ros_ws && rm -rf build install log \
 && python -m colcon build

ENV MUJOCO_GL=egl
ENTRYPOINT ["/bin/bash", "-c", "source /opt/ros/jazzy/setup.bash && source scripts/ros_env.sh && exec \"$@\"", "--"]
CMD ["ros2", "launch", "robot_stack_ros", "robot.launch.py", "config:=hardware_configs/tasks/sim_pick_cube.yaml"]
