# robot-stack: the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
TASK ?= hardware_configs/tasks/sim_pick_cube.yaml
EPISODES ?= 3
OUT ?= outputs/demo

.PHONY: setup demo test test-all bench check-configs clean

setup:
	scripts/setup.sh dev

# The main job: a simulated task session (scripted teleoperator) that saves camera frames.
demo: setup
	$(VENV)/bin/robot-stack sim demo --task $(TASK) --episodes $(EPISODES) --out $(OUT)

# The test suite CI runs (slow end-to-end variants excluded; `make test-all` runs them).
test: setup
	$(PY) -m pytest -m "not slow" -q

test-all: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/bench_control_law.py
	$(PY) benchmarks/bench_sim_env.py

check-configs: setup
	$(VENV)/bin/robot-stack config check hardware_configs/*/*.yaml --quiet

clean:
	rm -rf outputs .pytest_cache
