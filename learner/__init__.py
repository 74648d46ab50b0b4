"""The learner: off-policy RL (SAC/RLPD with demos and interventions) on the GPU PC,
replay buffers, checkpoints, and RLDG distillation into a generalist policy."""
