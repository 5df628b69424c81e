# The two entry points of the README. Each sets itself up (virtual environment, dependencies, assets).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.genbench-installed

.PHONY: run sweep test test-fast setup browser wheel clean

# A second `make run` on a finished study stops and asks for a choice: `make run ARGS=--resume` (reuse the
# trained models, evaluate and report again) or `make run ARGS=--overwrite` (train from scratch).
run: $(STAMP)
	$(VENV)/bin/genbench run $(ARGS)

# The diffusion sampler sweeps (quality vs NFE and vs guidance) on the trained study: ~15-20 min on 2 cores, so
# outside `make run`'s 30-minute budget. Rebuilds the report with the sweep figures.
sweep: $(STAMP)
	$(VENV)/bin/genbench sweep runs/mnist-four

test: $(STAMP) browser
	$(VENV)/bin/genbench data fetch mnist
	$(VENV)/bin/genbench data fetch inception
	$(VENV)/bin/genbench data fetch fashion_mnist
	$(PY) -m pytest -q

# The fast tier: everything but the tests marked slow (no training, no study pipeline), in under 3 minutes.
test-fast: $(STAMP)
	$(VENV)/bin/genbench data fetch mnist
	$(PY) -m pytest -q -m "not slow"

# Debian's chromium for the report's browser test (Playwright drives it; it never downloads a browser). Installed
# as root, or through sudo when that needs no password; otherwise one line says so and the browser test is
# skipped with its reason (CI sets GENBENCH_REQUIRE_BROWSER=1 in .ci/run, which turns that skip into a failure).
browser:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; } 2>/dev/null \
	  || echo "make: chromium not installed (needs root or password-less sudo: apt-get install chromium); the browser test will be skipped"; }

# The wheel (study files inside), as `pip install .` builds it; tests/test_wheel.py installs and runs one.
wheel: $(STAMP)
	$(PY) -m pip wheel -q --no-deps --disable-pip-version-check -w dist .

setup: $(STAMP)

# torch first, from `pip install torch==2.13.0` (a local CPU build on this kind of machine); the package itself
# only asks for torch>=2.4 so GPU users keep their own build. No torchvision.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	# torch-fidelity's and clean-fid's wheels only as references in tests (TF1 resize; FID/KID agreement,
	# tests/test_agreement.py). Not installed: torchmetrics would import torch-fidelity, and both import
	# torchvision. The tests read the module files they need out of the wheels.
	$(PY) -m pip download -q --disable-pip-version-check --no-deps -d .cache/wheels torch-fidelity==0.4.0
	$(PY) -m pip download -q --disable-pip-version-check --no-deps -d .cache/wheels clean-fid==0.1.35
	touch $(STAMP)

clean:
	rm -rf $(VENV) runs dist build
