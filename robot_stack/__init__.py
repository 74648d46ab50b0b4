"""robot-stack: human-in-the-loop reinforcement learning (HIL-SERL) for Franka arms.

The shared core of the platform: the YAML config schema and loader, the actor-learner
transport, the Cartesian impedance law, the hardware backends (libfranka, RealSense,
SpaceMouse) and the simulated FR3 that stands in for all of them, the gym env, reward
classifiers, reset routines and data recording. A task session runs the same code on a
real arm or in simulation; the simulated session is the default a new user runs first.
"""

__version__ = "0.1.0"
