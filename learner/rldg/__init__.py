"""RLDG: distil RL specialists into a generalist policy.

``specialists`` trains one HIL-SERL specialist per seen task variant, ``collect`` rolls them
(or the scripted human-like demonstrator) out into a LeRobotDataset v3 dataset, ``finetune``
trains an instruction-conditioned generalist on such datasets and ``evaluate_variants``
measures it per variant, seen and held out. The experiment file's schema is
``robot_stack.config.rldg``.
"""
