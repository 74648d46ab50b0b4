"""The actor: the robot-side loop that runs the policy at the task's control rate,
merges teleoperator interventions and streams transitions to the learner.

The environment it steps is built from a task YAML by ``robot_stack.envs.make_env``;
the scripted teleoperator it uses in simulation is ``robot_stack.sim.teleop``.
"""
