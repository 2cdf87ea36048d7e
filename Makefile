# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Local data mirror (read-only copy of the public datasets) when it sits beside the checkout.
ifeq ($(origin CPTPP_DATA_MIRROR), undefined)
  ifneq ($(wildcard ../shared/data),)
    export CPTPP_DATA_MIRROR := $(abspath ../shared/data)
  endif
endif
# 10 epochs at lr 0.02: LightGCN at lr 1e-3 is flat for ~20 epochs on ml-100k (README "make run").
RUN_ARGS ?= --dataset ml-100k --recommender lightgcn --epochs 10 --lr 0.02
PYTEST_ARGS ?=

.PHONY: run test venv venv-dev bench clean

$(VENV)/.core: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(PIP) install -q -e '.[dev,graph,code,text]'
	touch $@

venv: $(VENV)/.core
venv-dev: $(VENV)/.dev

run: $(VENV)/.core
	$(VENV)/bin/cptpp train $(RUN_ARGS)

test: $(VENV)/.dev
	$(PY) -m pytest -q $(PYTEST_ARGS) tests --nbmake notebooks

bench: $(VENV)/.dev
	$(PY) benchmarks/run_all.py --quick

clean:
	rm -rf $(VENV) runs .pytest_cache
