"""ROS 2 nodes of robot-stack: thin wrappers over the robot_stack package."""
