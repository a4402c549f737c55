# The commands a newcomer needs: `make run` and `make test`. See README.md.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Exact versions with hashes (`make lock` writes them): dev.txt for make run and make test,
# runtime.txt for the image.
LOCK := requirements/dev.txt
# `make lock` keeps the locked versions that still fit; LOCK_FLAGS=--upgrade takes the newest
# of everything, LOCK_FLAGS="--upgrade-package NAME" of one package.
LOCK_FLAGS ?=
UV_COMPILE := $(BIN)/uv pip compile --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" --quiet $(LOCK_FLAGS)
# The Node tools the tests use (package.json): Redocly CLI, Medplum's FHIR engine, LHC-Forms.
NODE_STAMP := node_modules/.installed

.PHONY: install run test test-fast lint bench lock clean texts docs

# Install exactly the lock: a fresh environment whenever the lock (or pyproject.toml)
# changes, so nothing the lock dropped lingers. The stamp records the last install.
# --require-hashes: every package (pip and setuptools included) must match a hash in the
# lock. The project itself is installed editable, without build isolation, from the
# locked setuptools, and without dependencies, which the lock brought.
$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# Resolve pyproject.toml again into the lock files: dev.txt with every extra and what
# installs the project, runtime.txt with only what the service needs, at the same versions.
# The next make run / make test installs the new lock.
lock: $(STAMP)
	$(UV_COMPILE) pyproject.toml requirements/install.in --extra dev -o requirements/dev.txt
	$(UV_COMPILE) pyproject.toml -c requirements/dev.txt -o requirements/runtime.txt

# Exactly what package-lock.json lists, again whenever it changes.
$(NODE_STAMP): package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP) $(NODE_STAMP)

run: $(STAMP)
	$(BIN)/python tools/devserver.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Each test file runs whole on one of PYTEST_WORKERS processes (its module fixtures, such as
# a served app, start once); the slow process and container tests spread over the cores.
PYTEST_WORKERS ?= 2
test: lint $(NODE_STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

# The inner loop: everything but the deployment (gunicorn, worker, containers) and browser
# tests, without lint, property tests drawing a fifth of their examples
# (tests/support/examples.py). make test, which CI runs, still runs everything in full.
test-fast: $(STAMP) $(NODE_STAMP)
	SCREENING_TEST_FAST=1 $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not deployment and not browser"

# docs/clinical-safety/texts/: every text each package's cases give, written again after a
# rule or wording change (a test fails while they are stale).
texts: $(STAMP)
	$(BIN)/python -m tests.support.clinical_texts

# The documentation site (mkdocs.yml), rebuilt as its files change; make test builds it
# in strict mode (tests/docs/test_site.py).
docs: $(STAMP)
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8001

bench: $(STAMP)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/webhooks.py
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) node_modules .mypy_cache .pytest_cache .ruff_cache .hypothesis
