# robot-stack: the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
TASK ?= hardware_configs/tasks/sim_pick_cube_state.yaml
DEMO_TASK ?= hardware_configs/tasks/sim_pick_cube.yaml
EPISODES ?= 3
OUT ?= outputs/demo
RUN_DIR ?= runs/$(basename $(notdir $(TASK)))

.PHONY: setup session demo reward test test-all bench check-configs clean

setup:
	scripts/setup.sh dev,ros,vlm,franka,realsense,spacemouse

# The main job: a simulated HIL-SERL task session (demos, learner and actor processes,
# scripted teleoperator interventions, evaluation, learning curve).
session: setup
	$(VENV)/bin/robot-stack session $(TASK) --run-dir $(RUN_DIR)

# Scripted-teleoperator episodes of a task, every camera frame saved as PNG/GIF.
demo: setup
	$(VENV)/bin/robot-stack sim demo --task $(DEMO_TASK) --episodes $(EPISODES) --out $(OUT)

# The reward classifier of the simulated pick-cube task: record labelled frames (training and
# held-out episodes), train and calibrate, check on the held-out frames (README, "Reward").
REWARD_TASK ?= hardware_configs/tasks/sim_pick_cube_classifier.yaml
reward: setup
	$(VENV)/bin/robot-stack reward record $(REWARD_TASK) --episodes 24 --stride 3 --out runs/reward/frames_train
	$(VENV)/bin/robot-stack reward record $(REWARD_TASK) --episodes 10 --seed 10000 --out runs/reward/frames_test
	$(VENV)/bin/robot-stack reward train $(REWARD_TASK) --frames runs/reward/frames_train
	$(VENV)/bin/robot-stack reward eval $(REWARD_TASK) --frames runs/reward/frames_test --out runs/reward/eval

# The test suite CI runs (slow end-to-end variants excluded; `make test-all` runs them).
test: setup
	$(PY) -m pytest -m "not slow" -q

test-all: setup
	$(PY) -m pytest -q

bench: setup
	scripts/setup.sh dev,ros,vlm,franka,realsense,spacemouse,bench
	$(PY) benchmarks/bench_control_law.py
	$(PY) benchmarks/bench_sim_env.py
	$(PY) benchmarks/bench_transport.py --quick
	$(PY) benchmarks/bench_replay_memory.py
	$(PY) benchmarks/bench_learner.py --quick
	$(PY) benchmarks/bench_reward.py
	$(PY) benchmarks/bench_ros_cell.py
	$(PY) benchmarks/bench_learning.py

check-configs: setup
	$(VENV)/bin/robot-stack config check hardware_configs/*/*.yaml --quiet

clean:
	rm -rf outputs runs .pytest_cache
