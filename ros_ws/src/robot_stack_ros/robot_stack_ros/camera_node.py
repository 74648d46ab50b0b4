"""The camera node: publishes each camera's images and CameraInfo.

Simulated cameras render the controller's world through a mirror (robot_stack.sim.mirror)
kept in step with sim/world_state, so images show exactly the state the controller
published; rendering happens here, off the controller's real-time loop. Real cameras
(RealSense, or a recording of one played back) come from robot_stack.hardware.realsense; a
camera that stops delivering is logged by name every 5 s while its capture thread reconnects.

Parameters: config (required), cameras (names; default: the cameras the task observes and
its learned reward model looks at, or every camera of the cameras file when there are none), fps (0: each camera's fps).
Publishes (sensor QoS): cameras/<name>/image_raw (rgb8), cameras/<name>/camera_info.
"""

from __future__ import annotations

import math

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image


from robot_stack_ros.clients import MirrorFeed, PeerTimeout
from robot_stack_ros.node_common import NodeConfigError, SENSOR_QOS, Topics, load_config, run_node
from robot_stack_ros.convert import image_msg


class CameraNode(Node):
    def __init__(self):
        super().__init__("cameras")
        self.config = load_config(self)
        self.declare_parameter("cameras", [""])
        self.declare_parameter("fps", 0.0)
        c = self.config
        names = [n for n in self.get_parameter("cameras").value if n]
        if not names:
            names = list(c.task.observation.images)
            if c.task.reward.source != "sim_ground_truth":
                from robot_stack.reward.detector import reward_cameras

                names = list(dict.fromkeys(names + list(reward_cameras(c.task, c.cameras))))  # the reward model's too
            names = names or list(c.cameras.cameras)
        unknown = [n for n in names if n not in c.cameras.cameras]
        if unknown:
            raise NodeConfigError(f"camera(s) {unknown} are not in the cameras file (it has {sorted(c.cameras.cameras)})")
        self.names = tuple(names)
        if c.robot.backend == "sim":
            from robot_stack.sim.cameras import SimCameras

            self.feed = MirrorFeed(self, c)
            self.cameras = SimCameras(self.feed.mirror.world, c.cameras.cameras, self.names)
        else:
            from robot_stack.hardware.devices import make_cameras

            self.feed = None
            self.cameras = make_cameras(c.cameras, self.names)
        self.pub_images = {n: self.create_publisher(Image, Topics.image(n), SENSOR_QOS) for n in self.names}
        self.pub_info = {n: self.create_publisher(CameraInfo, Topics.camera_info(n), SENSOR_QOS) for n in self.names}
        self.info = {n: self._camera_info(n) for n in self.names}
        fps = float(self.get_parameter("fps").value) or max(c.cameras.cameras[n].fps for n in self.names)
        self.frames = 0
        self._waiting_logged = False
        self.create_timer(1.0 / fps, self._render)
        self.get_logger().info(f"publishing {', '.join(self.names)} at {fps:.0f} fps")

    def _camera_info(self, name: str) -> CameraInfo:
        """Pinhole intrinsics of the published image: the camera's own at the capture
        resolution (a RealSense's factory calibration; a MuJoCo camera's vertical field of
        view), then the crop and the resize the camera config applies."""
        camera = self.config.cameras.cameras[name]
        width, height = camera.resolution_wh
        if self.feed is None:
            fx0, fy0, cx, cy = self.cameras.intrinsics(name)
        else:
            model = self.feed.mirror.world.model
            mjcf = camera.sim_camera or name
            fovy = math.radians(float(model.cam_fovy[model.camera(mjcf).id]))
            fx0 = fy0 = (height / 2) / math.tan(fovy / 2)
            cx, cy = width / 2, height / 2
        x0, y0, cw, ch = camera.crop_xywh or (0, 0, width, height)
        out_h, out_w = camera.output_size_hw
        sx, sy = out_w / cw, out_h / ch
        info = CameraInfo()
        info.header.frame_id = name
        info.width, info.height = out_w, out_h
        info.distortion_model = "plumb_bob"
        info.d = [0.0] * 5
        fx, fy, px, py = fx0 * sx, fy0 * sy, (cx - x0) * sx, (cy - y0) * sy
        info.k = [fx, 0.0, px, 0.0, fy, py, 0.0, 0.0, 1.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [fx, 0.0, px, 0.0, 0.0, fy, py, 0.0, 0.0, 0.0, 1.0, 0.0]
        return info

    def _render(self) -> None:
        if self.feed is not None:
            try:
                self.feed.sync(timeout_s=0.0)
            except PeerTimeout:
                if not self._waiting_logged:
                    self.get_logger().info(f"waiting for the simulated world on {Topics.WORLD_STATE}")
                    self._waiting_logged = True
                return
        stamp = self.get_clock().now().to_msg()
        try:
            frames = self.cameras.read()
        except RuntimeError as error:  # a real camera unplugged or stale: it is named, and retried
            self.get_logger().error(str(error), throttle_duration_sec=5.0)
            return
        for name in self.names:
            self.pub_images[name].publish(image_msg(frames.images[name], stamp, name))
            info = self.info[name]
            info.header.stamp = stamp
            self.pub_info[name].publish(info)
        self.frames += 1

    def shutdown(self) -> None:
        self.cameras.close()


def main(args=None) -> int:
    # One thread: the renderers' OpenGL contexts belong to the thread that made them.
    return run_node(CameraNode, threads=1, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
