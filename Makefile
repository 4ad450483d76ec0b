# fedrec: two set-up commands, `make run` and `make test` (see README).
SHELL := /bin/bash
VENV := .venv
# First Python 3.11 or 3.10 on PATH (override: make PYTHON=/path/to/python3.11)
PYTHON ?= $(shell for p in python3.11 python3.10 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 11) else 1)' 2>/dev/null && { echo $$p; break; }; done)
STAMP := $(VENV)/.installed
RUN_OUT ?= runs/main
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: run test test-fast test-inprocess venv clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then echo "fedrec needs Python 3.10 or 3.11 and found none on PATH (install one, or run: make PYTHON=/path/to/python3.11)" >&2; exit 1; fi
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

# The main job on MovieLens-100k: centralized baselines (results table + baselines.json),
# then a short federation with user-level DP (5 rounds, 100 of 943 clients per round,
# z = 1.16 for epsilon about 8) printed next to centralized NeuMF, then its privacy audit;
# then the one-shot DP statistics releases (DP popularity + DP item co-occurrence, user-level
# epsilon 8, recommended on each device) next to the centralized baselines, and their audit.
run: $(STAMP)
	$(VENV)/bin/fedrec data fetch movielens-100k
	$(VENV)/bin/fedrec baseline --dataset movielens-100k --model all --seed 0 --out $(RUN_OUT)/baselines.json
	rm -rf $(RUN_OUT)/federated
	$(VENV)/bin/fedrec simulate --dataset movielens-100k --rounds 5 --clients-per-round 100 \
		--local-epochs 2 --lr 0.05 --eval-every 5 --seed 0 --dp server --clip 2.0 \
		--noise-multiplier 1.16 --target-epsilon 8.5 --out $(RUN_OUT)/federated \
		--compare $(RUN_OUT)/baselines.json
	$(VENV)/bin/fedrec audit $(RUN_OUT)/federated --empirical
	rm -rf $(RUN_OUT)/release
	$(VENV)/bin/fedrec simulate --pipeline knn --dataset movielens-100k --target-epsilon 8 \
		--seed 0 --out $(RUN_OUT)/release --compare $(RUN_OUT)/baselines.json
	$(VENV)/bin/fedrec audit $(RUN_OUT)/release

# Every tier, as $(SHARDS) concurrent pytest processes split by test file
# (tests/shards.py; SHARDS=1 runs one process).
SHARDS ?= 4
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python tests/shards.py --shards $(SHARDS)

# Tiers (docs/testing.md): test-fast = unit tests (pure functions, one model call, no
# federation); test-inprocess = in-process federations and trainings; make test = all.
test-fast: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q -m "not slow and not inprocess and not network"

test-inprocess: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "inprocess and not slow and not network"

clean:
	rm -rf $(VENV) runs .pytest_cache
