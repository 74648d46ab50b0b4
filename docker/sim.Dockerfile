# The simulated task session in a container (CPU only, software rendering):
#   docker build -f docker/sim.Dockerfile -t robot-stack-sim .
#   docker run --rm -v "$PWD/outputs:/robot-stack/outputs" robot-stack-sim
# It runs the same set-up script as a bare machine, so the two cannot drift apart.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends make libegl1 libegl-mesa0 libgl1-mesa-dri libglx-mesa0 libgles2 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /robot-stack
COPY . .
RUN scripts/setup.sh dev

ENV MUJOCO_GL=egl
CMD ["make", "demo"]
