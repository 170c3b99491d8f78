# Two entry points: `make demo` and `make test`. Each creates .venv if missing and installs the project.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch first, pinned: with torch already in place nothing else can pull a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q

demo: install
	$(PY) -m rar_edge.demo

# The quick benchmarks; bench/*.py say how to run the long ones (export, runtime, report) and their inputs.
bench: install
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) bench/train_throughput.py
	$(PY) bench/complexity.py

clean:
	rm -rf $(VENV) build *.egg-info runs/demo
