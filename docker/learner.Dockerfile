# The learner PC (NVIDIA GPU): `robot-stack learner` on the CUDA build of PyTorch that the
# base image ships. The learner is no ROS node, so there is no ROS here.
#   docker build -f docker/learner.Dockerfile -t robot-stack-learner .
#   docker run --rm -it --gpus all --network host \
#       -v "$PWD/runs:/robot-stack/runs" -v "$PWD/keys:/robot-stack/keys:ro" \
#       robot-stack-learner robot-stack learner hardware_configs/tasks/<task>.yaml [--demos DIR]
#
# The learner binds the session file's learner_host and ports (5555 transitions, 5556 weights):
# with --network host that is the PC's own address, as the actors see it. Publishing the ports
# instead (-p 5555:5555 -p 5556:5556) needs a session whose learner_host the container itself
# can bind.
FROM pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime

WORKDIR /robot-stack
COPY . .

# The project's dependencies do not include torch, so the base image's CUDA build stays.
RUN pip install --no-cache-dir -e . \
 && python -c "import torch, robot_stack; print('torch', torch.__version__)"

CMD ["robot-stack", "learner", "hardware_configs/tasks/sim_pick_cube.yaml"]
