# Two entry points: `make demo` and `make test`. Each creates .venv if missing and installs the project.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo bench report clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch first, pinned: with torch already in place nothing else can pull a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[all,test]"
	touch $(STAMP)

install: $(STAMP)

# Two workers (pytest-xdist): exports are single-threaded Python, so two run side by side on two cores;
# one torch thread each keeps them from fighting over the cores. tests/conftest.py builds the shared
# fixtures once per run.
TEST_WORKERS ?= 2
test: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

demo: install
	$(PY) -m rar_edge.demo

# The quick benchmarks; bench/*.py say how to run the long ones (export, runtime, report) and their inputs.
bench: install
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) bench/train_throughput.py
	$(PY) bench/complexity.py

# The quality report of BENCHMARKS.md in one command (hours on 2 cores; minutes on a GPU server):
#   make report [TEACHER=runs/teacher/best] [PHOTOS=photos/heldout] [STUDENT=...] [CROPS=8] [SYNTHESES=v2,albumentations]
# Held-out photos are built first if missing (rar-edge photos: scikit-image + Debian packages).
PHOTOS ?= photos/heldout
STUDENT ?= rar_edge/weights/rar-edge-s
CROPS ?= 8
SYNTHESES ?= v2,albumentations
report: install
	$(PY) -m pip install --quiet -e ".[bench]"
	@test -d "$(PHOTOS)" || $(VENV)/bin/rar-edge photos -o $(dir $(PHOTOS:/=))
	mkdir -p runs/report
	$(PY) bench/report.py $(if $(TEACHER),--teacher $(TEACHER)) --student $(STUDENT) --photos $(PHOTOS) --crops $(CROPS) \
		--syntheses $(SYNTHESES) \
		--json runs/report/report.json --plot runs/report/report_psnr.png

clean:
	rm -rf $(VENV) build *.egg-info runs/demo
