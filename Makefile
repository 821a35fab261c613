# The README's two commands are `make demo` and `make test`; both build what they need.
PYTHON ?= python3
# Extra options for `make lab`, e.g. make lab LAB_ARGS='--port 9999 --no-browser'
LAB_ARGS ?=
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SAMPLE := sample_media/sample.mp4

.PHONY: venv sample demo test lint lab clean

venv: $(STAMP)

# Rebuilt whenever pyproject.toml changes (the dependencies live there).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,postgres]'
	touch $(STAMP)

sample: $(STAMP)
	$(PY) -m rtsp_resume make-sample --out sample_media --missing-only

demo: sample
	$(PY) -m rtsp_resume demo --media sample_media

test: sample lint
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check --quiet rtsp_resume tests benchmarks notebooks/exercises.py

lab: sample
	$(PY) -m rtsp_resume make-sample --out sample_media --missing-only --lesson
	$(VENV)/bin/jupyter lab $(LAB_ARGS) notebooks

clean:
	rm -rf $(VENV) .pytest_cache
