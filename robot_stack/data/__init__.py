"""The data every stage shares: the transition layout and its specs (``spec``), making
transitions from env steps (``transitions``), and recording what sessions produce: demo
sets, camera frames, episode summaries, checkpoints, plots."""
