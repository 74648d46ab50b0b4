# robot-stack: the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
TASK ?= hardware_configs/tasks/sim_pick_cube_state.yaml
DEMO_TASK ?= hardware_configs/tasks/sim_pick_cube.yaml
EPISODES ?= 3
OUT ?= outputs/demo
RUN_DIR ?= runs/$(basename $(notdir $(TASK)))

.PHONY: setup session demo test test-all bench check-configs clean

setup:
	scripts/setup.sh dev,ros

# The main job: a simulated HIL-SERL task session (demos, learner and actor processes,
# scripted teleoperator interventions, evaluation, learning curve).
session: setup
	$(VENV)/bin/robot-stack session $(TASK) --run-dir $(RUN_DIR)

# Scripted-teleoperator episodes of a task, every camera frame saved as PNG/GIF.
demo: setup
	$(VENV)/bin/robot-stack sim demo --task $(DEMO_TASK) --episodes $(EPISODES) --out $(OUT)

# The test suite CI runs (slow end-to-end variants excluded; `make test-all` runs them).
test: setup
	$(PY) -m pytest -m "not slow" -q

test-all: setup
	$(PY) -m pytest -q

bench: setup
	scripts/setup.sh dev,ros,bench
	$(PY) benchmarks/bench_control_law.py
	$(PY) benchmarks/bench_sim_env.py
	$(PY) benchmarks/bench_transport.py --quick
	$(PY) benchmarks/bench_replay_memory.py
	$(PY) benchmarks/bench_learner.py --quick
	$(PY) benchmarks/bench_learning.py

check-configs: setup
	$(VENV)/bin/robot-stack config check hardware_configs/*/*.yaml --quiet

clean:
	rm -rf outputs runs .pytest_cache
