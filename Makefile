# LoRA Lab: `make lab` to learn, `make test` to check everything.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

NBVAL  := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: setup lab test test-portability lint notebooks bench clean force-setup

setup: $(STAMP)

# Re-runs only when pyproject.toml changes or the venv's python no longer runs, so a second
# `make test` installs nothing. torch comes from PyTorch's CPU index on Linux.
VENV_BROKEN := $(shell $(PY) -c "" 2>/dev/null || echo force-setup)
$(STAMP): pyproject.toml $(VENV_BROKEN)
	@PYTHON=$(PYTHON) VENV=$(VENV) sh tools/setup_venv.sh
	@touch $(STAMP)

# Loopback only, Jupyter's token authentication left on (open the link it prints);
# no news pop-up and no update check (these settings live here, not in your home folder).
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks \
		--LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# Everything: lint, unit tests, every notebook under nbval, then the notebooks again on
# other CPU kernels. `pytest -m "not slow"` is the quick inner loop (no browser, no server).
test: $(STAMP)
	$(VENV)/bin/ruff check lora_lab tests tools benchmarks notebooks
	$(PY) -m pytest tests notebooks $(NBVAL)
	$(MAKE) --no-print-directory test-portability

# The stored outputs must hold on other machines: re-run every notebook with PyTorch's
# and OpenBLAS's most generic kernels (no AVX), as on an older or different CPU.
test-portability: $(STAMP)
	ATEN_CPU_CAPABILITY=default OPENBLAS_CORETYPE=Prescott $(PY) -m pytest notebooks $(NBVAL) -q

lint: $(STAMP)
	$(VENV)/bin/ruff check lora_lab tests tools benchmarks notebooks

notebooks: $(STAMP)
	$(PY) tools/refresh_notebooks.py  # syncs text twins first (tools/sync_notebooks.py)

bench: $(STAMP)
	$(PY) benchmarks/bench_lora_linear.py
	$(PY) benchmarks/bench_rank_slider.py
	$(PY) benchmarks/time_notebooks.py

force-setup:

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
