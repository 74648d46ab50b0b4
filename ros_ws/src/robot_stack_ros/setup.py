"""The nodes package. The robot_stack Python project (repo root, `pip install -e .[ros]`)
provides the logic; launch files and task configs are installed to share/ so that
`ros2 launch robot_stack_ros <file> config:=...` finds them."""

from glob import glob

from setuptools import setup

package = "robot_stack_ros"
NODES = ("controller", "camera", "spacemouse", "reward", "reset", "actor")

setup(
    name=package,
    version="0.1.0",
    packages=[package],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package}"]),
        (f"share/{package}", ["package.xml"]),
        (f"share/{package}/launch", glob("launch/*.launch.py")),
        *[
            (f"share/{package}/{folder}", glob(f"{folder}/*.yaml"))
            for folder in glob("hardware_configs/*")
        ],
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    description="ROS 2 nodes of robot-stack",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [f"{name} = {package}.{name}_node:main" for name in NODES],
    },
)
