# ecg2llm — the two commands a newcomer needs:
#   make demo   installs, then runs the whole pipeline on a small CPU configuration into runs/demo/
#   make test   installs, then runs the test suite (CPU, no network)
# Both create ./.venv on first use. Data: $ECG2LLM_DATA, else ../shared/data when present, else
# ~/.cache/ecg2llm (downloaded from PhysioNet on first use).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first and pinned: a bare `torch` on an empty environment pulls a multi-GB CUDA build.
# Users with a GPU: `make install TORCH_SPEC="torch"` (or any spec pip understands).
TORCH_SPEC ?= torch==2.13.0
ifeq ($(origin ECG2LLM_DATA), undefined)
ifneq ($(wildcard ../shared/data/mitdb/RECORDS),)
export ECG2LLM_DATA := $(abspath ../shared/data)
endif
endif
export WANDB_MODE ?= offline
JOBS ?= 2

.PHONY: install demo test lint bench bench-quick clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) scripts/demo.py --out runs/demo

test: install
	WANDB_MODE=disabled $(PY) -m pytest -n $(JOBS) -q tests

# style: pycodestyle + pyflakes + import order + bugbear, line length 120 (pyproject.toml [tool.ruff])
lint: install
	$(PY) -m ruff check .

# speed and peak memory of every stage -> runs/bench/bench.json + bench.md (CPU, plus CUDA when visible)
bench: install
	$(PY) scripts/bench.py --out runs/bench

# the same, every stage small (about a minute on 2 cores): what CI runs; figures printed, nothing asserted
bench-quick: install
	$(PY) scripts/bench.py --quick --out runs/bench_ci

clean:
	rm -rf runs/demo .pytest_cache
