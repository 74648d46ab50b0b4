# robot-stack: the README's two commands are `make session` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
TASK ?= hardware_configs/tasks/sim_pick_cube_state.yaml
DEMO_TASK ?= hardware_configs/tasks/sim_pick_cube.yaml
EPISODES ?= 3
OUT ?= outputs/demo
# Empty: the task's own run dir, runs/<task name> (session.run_dir in its config).
RUN_DIR ?=

.PHONY: setup session demo reward rldg test test-all bench check-configs clean

setup:
	scripts/setup.sh dev,console,ros,vlm,franka,realsense,spacemouse

# The main job: a simulated HIL-SERL task session (demos, learner and actor processes,
# scripted teleoperator interventions, evaluation, learning curve).
session: setup
	$(VENV)/bin/robot-stack session $(TASK) $(if $(RUN_DIR),--run-dir $(RUN_DIR))

# Scripted-teleoperator episodes of a task, every camera frame saved as PNG/GIF.
demo: setup
	$(VENV)/bin/robot-stack sim demo --task $(DEMO_TASK) --episodes $(EPISODES) --out $(OUT)

# The reward classifier of the simulated pick-cube task: record labelled frames (training and
# held-out episodes), train and calibrate, check on the held-out frames (docs/reward.md).
REWARD_TASK ?= hardware_configs/tasks/sim_pick_cube_classifier.yaml
reward: setup
	$(VENV)/bin/robot-stack reward record $(REWARD_TASK) --episodes 24 --stride 3 --out runs/reward/frames_train
	$(VENV)/bin/robot-stack reward record $(REWARD_TASK) --episodes 10 --seed 10000 --out runs/reward/frames_test
	$(VENV)/bin/robot-stack reward train $(REWARD_TASK) --frames runs/reward/frames_train
	$(VENV)/bin/robot-stack reward eval $(REWARD_TASK) --frames runs/reward/frames_test --out runs/reward/eval

# RLDG in simulation (docs/rldg.md): a specialist per cube, datasets from their rollouts and from
# the scripted human-like demonstrator (same episode count), the same generalist trained on each,
# evaluated per variant (seen and held out) beside the specialists.
RLDG ?= hardware_configs/rldg/sim_pick_cube_sizes.yaml
RLDG_RUN ?= runs/rldg/pick_cube_sizes
rldg: setup
	$(VENV)/bin/robot-stack rldg specialists $(RLDG)
	$(VENV)/bin/robot-stack rldg collect $(RLDG) --source specialists --overwrite
	$(VENV)/bin/robot-stack rldg collect $(RLDG) --source human_like --overwrite
	$(VENV)/bin/robot-stack rldg validate $(RLDG_RUN)/data/specialists $(RLDG_RUN)/data/human_like
	$(VENV)/bin/robot-stack rldg finetune $(RLDG) --data $(RLDG_RUN)/data/specialists
	$(VENV)/bin/robot-stack rldg finetune $(RLDG) --data $(RLDG_RUN)/data/human_like
	$(VENV)/bin/robot-stack rldg eval $(RLDG) --specialists \
		--generalist rl_rollouts=$(RLDG_RUN)/generalists/specialists human_like_demos=$(RLDG_RUN)/generalists/human_like

# The test suite CI runs (slow end-to-end variants excluded; `make test-all` runs them).
test: setup
	$(PY) -m pytest -m "not slow" -q

test-all: setup
	$(PY) -m pytest -q

bench: setup
	scripts/setup.sh dev,console,ros,vlm,franka,realsense,spacemouse,bench
	$(PY) benchmarks/bench_control_law.py
	$(PY) benchmarks/bench_sim_env.py
	$(PY) benchmarks/bench_transport.py --quick
	$(PY) benchmarks/bench_replay_memory.py
	$(PY) benchmarks/bench_checkpoint.py
	$(PY) benchmarks/bench_learner.py --quick
	$(PY) benchmarks/bench_reward.py
	$(PY) benchmarks/bench_ros_cell.py
	$(PY) benchmarks/bench_learning.py
	$(PY) benchmarks/bench_learning.py --runs ours --task hardware_configs/tasks/sim_peg_insertion_state.yaml \
		--max-minutes 30 --out outputs/bench_peg_state
	$(PY) benchmarks/bench_encoder_pretrain.py
	$(PY) benchmarks/bench_learning.py --runs ours ablation --task hardware_configs/tasks/sim_pick_cube.yaml \
		--max-minutes 25 --out outputs/bench_pick_pixels
	$(PY) benchmarks/bench_learning.py --runs ours --task hardware_configs/tasks/sim_peg_insertion.yaml \
		--max-env-steps 30000 --max-minutes 40 --out outputs/bench_peg_pixels
	$(PY) benchmarks/bench_augmentation.py --encoder outputs/bench_pick_pixels/encoder_resnet10.safetensors

check-configs: setup
	$(VENV)/bin/robot-stack config check hardware_configs/*/*.yaml --quiet

clean:
	rm -rf outputs runs .pytest_cache
