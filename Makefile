# The two commands of the README:
#   make demo   set up .venv and screen the bundled sample images with the shipped model
#   make test   set up .venv (with the trainer and dev tools) and run lint, layering contracts and tests
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch 2.13.0 is the CPU build on these machines; torchvision must be the release made for it.
TORCH  := torch==2.13.0 torchvision==0.28.0

.PHONY: demo test setup setup-dev lint clean bundle bundle-test

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[desktop]'
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -e '.[desktop,trainer,dev]'
	touch $@

setup: $(VENV)/.base
setup-dev: $(VENV)/.dev

demo: $(VENV)/.base
	$(VENV)/bin/brainscan screen resources/samples --out demo-output --save-overlays
	@echo "Results: demo-output/results.csv, series summary: demo-output/series.csv, overlays: demo-output/overlays/"

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check desktop trainer tests bench installer
	$(VENV)/bin/lint-imports

# The frozen application's check runs at the end of `make test` only when asked for (CI does):
# BRAINSCAN_BUNDLE_TEST=1 or CI=true. It adds about a minute and a half here (installer/README.md).
test: lint
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest
	@if [ "$${BRAINSCAN_BUNDLE_TEST:-}" = 1 ] || [ "$${CI:-}" = true ]; then $(MAKE) --no-print-directory bundle-test; fi

# The one-folder application (brainscan + brainscan-viewer, no torch) in installer/dist/brainscan,
# built from its own environment installer/.venv-bundle; build/ and dist/ are cleaned first.
bundle:
	PYTHON=$(PYTHON) installer/build.sh

# Build it, then run the frozen programs: self-tests, CUDA fallback note, a screening run with reports.
bundle-test: bundle $(VENV)/.base
	$(PY) installer/check_bundle.py --rounds 3

clean:
	rm -rf $(VENV) demo-output .pytest_cache installer/build installer/dist installer/.venv-bundle
