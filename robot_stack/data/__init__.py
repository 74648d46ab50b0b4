"""Recording what sessions produce: camera frames, episode summaries, plots."""
