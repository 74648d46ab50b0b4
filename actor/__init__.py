"""The actor: the robot-side loop that runs the policy at the task's control rate,
merges teleoperator interventions and streams transitions to the learner.

- ``actor.actor_loop``: ``run_actor``, the actor process (env, policy, link, the loop).
- ``actor.rate``: the fixed-period rate limiter and its jitter figures.
- ``actor.intervention``: the human (SpaceMouse) and the scripted teleoperator stepping in.
- ``robot_stack.data.transitions``: the flat transition format, the specs, batches.
- ``actor.record_demos``: recording demos with a teleoperator (the format: ``robot_stack.data.demo_sets``).
- ``actor.evaluate_policy``: policy evaluation without interventions.

The environment it steps is built from a task YAML by ``robot_stack.envs.make_env``;
the scripted teleoperator it uses in simulation is ``robot_stack.sim.teleop``.
"""
