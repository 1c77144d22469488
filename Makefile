# Glimpser: `make run` and `make test` are all a fresh Debian machine needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Exact versions and hashes of every package (`make lock` writes it from pyproject.toml).
LOCK := requirements.lock

# Debian packages the product needs at run time, and the extra ones the tests and benches use.
RUN_PACKAGES := redis-server ffmpeg chromium fonts-liberation fonts-dejavu-core
# nginx-light: in front of the web hosts of tests/test_cluster.py and for signed pictures.
TEST_PACKAGES := $(RUN_PACKAGES) postgresql-15 gir1.2-gst-rtsp-server-1.0 \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
	gstreamer1.0-plugins-ugly python3-gi nginx-light
BENCH_PACKAGES := $(TEST_PACKAGES) wrk

.PHONY: setup setup-test run test lint bench clean lock

## setup: system packages, the virtualenv and the package (quick when already done)
setup: system-run $(STAMP)

setup-test: system-test $(STAMP)

system-run system-test system-bench: system-%:
	@pkgs="$(if $(filter run,$*),$(RUN_PACKAGES),$(if $(filter test,$*),$(TEST_PACKAGES),$(BENCH_PACKAGES)))"; \
	missing=$$(for p in $$pkgs; do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:" $$missing; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml $(LOCK)
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --require-hashes -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e .
	@$(BIN)/pip check >/dev/null || { $(BIN)/pip check; \
	  echo "requirements.lock does not satisfy pyproject.toml: run make lock"; exit 1; }
	touch $(STAMP)

## lock: after changing dependencies in pyproject.toml, pin them again with hashes
lock:
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q 'uv>=0.13,<0.14'
	$(BIN)/uv pip compile --quiet --python-version 3.11 --generate-hashes --extra dev \
	  -o $(LOCK) pyproject.toml

## run: set up, then start web, workers, scheduler and a private Redis on http://127.0.0.1:8000
run: setup
	$(BIN)/glimpser serve

## test: set up, lint, then the whole suite (SQLite and PostgreSQL, real Redis, Chromium)
test: setup-test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest --durations=25

lint: $(STAMP)
	$(BIN)/ruff check .

## bench: the benchmarks in bench/, results written to docs/benchmarks.md
bench: system-bench $(STAMP)
	@if ls bench/bench_*.py >/dev/null 2>&1; then \
	  for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done; \
	else echo "no benchmarks yet"; fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
