"""Cameras rendered offscreen from the simulated world, behind the Camera interface."""

from __future__ import annotations

import mujoco

from robot_stack.config.schema import CameraConfig
from robot_stack.hardware.images import crop_and_resize
from robot_stack.hardware.interfaces import CameraFrames
from robot_stack.sim.world import SimWorld


class SimCameras:
    """Renders only the cameras it is asked for: a state-only task renders nothing."""

    def __init__(self, world: SimWorld, cameras: dict[str, CameraConfig], names: tuple[str, ...]):
        self.world = world
        self.names = tuple(names)
        self._configs = {}
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        for name in self.names:
            config = cameras[name]
            if config.kind != "sim":
                raise ValueError(f"camera '{name}' is kind '{config.kind}'; SimCameras renders only sim cameras")
            mjcf_name = config.sim_camera or name
            if mujoco.mj_name2id(world.model, mujoco.mjtObj.mjOBJ_CAMERA, mjcf_name) < 0:
                raise ValueError(f"camera '{name}': the simulated scene has no camera '{mjcf_name}' (it has: front, wrist)")
            self._configs[name] = (config, mjcf_name)
            width, height = config.resolution_wh
            if (height, width) not in self._renderers:
                self._renderers[(height, width)] = mujoco.Renderer(world.model, height=height, width=width)

    def read(self) -> CameraFrames:
        images, stamps = {}, {}
        for name in self.names:
            config, mjcf_name = self._configs[name]
            width, height = config.resolution_wh
            renderer = self._renderers[(height, width)]
            renderer.update_scene(self.world.data, camera=mjcf_name)
            images[name] = crop_and_resize(renderer.render(), config)
            stamps[name] = self.world.time_s
        return CameraFrames(images=images, timestamps_s=stamps)

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
