"""The simulated FR3 workcell (MuJoCo): scene, backend, cameras, task scenes, experts."""

import os
import sys

# MuJoCo picks its OpenGL platform when it is first imported. Headless Linux machines
# (CI, learner PCs) render offscreen through EGL (Mesa's software rasteriser where there
# is no GPU); a user's own MUJOCO_GL always wins.
if sys.platform.startswith("linux"):
    os.environ.setdefault("MUJOCO_GL", "egl")
