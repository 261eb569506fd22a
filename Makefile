# LoRA Lab: `make lab` to learn, `make test` to check everything.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup lab test lint notebooks bench clean

setup: $(STAMP)

# Re-runs only when pyproject.toml changes, so a second `make test` installs nothing.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Loopback only, Jupyter's token authentication left on (open the link it prints).
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check lora_lab tests tools benchmarks notebooks
	$(PY) -m pytest tests notebooks --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg

lint: $(STAMP)
	$(VENV)/bin/ruff check lora_lab tests tools benchmarks notebooks

notebooks: $(STAMP)
	$(PY) tools/refresh_notebooks.py

bench: $(STAMP)
	$(PY) benchmarks/bench_lora_linear.py
	$(PY) benchmarks/bench_rank_slider.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
