# The two commands of the README: `make run` and `make test`. Both create .venv when it is
# missing and install only when setup.py or constraints.txt changed since the last install.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install run test test-containers image compile golden manifests manifests-check lint bench clean

$(STAMP): setup.py constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,tensorflow]"
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/reelops run

# Two test files at a time (pytest-xdist, whole files per worker so a file's fixtures are built
# once): most of the suite waits on servers and pipeline steps it starts, so two cores are used.
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

# Both images of the Dockerfile (pipeline, serve) with docker or, without a Docker engine, podman.
image: $(STAMP)
	$(PY) containers/build.py

# Runs the built images: versions, the training pipeline in containers, the serve image.
test-containers: image
	REELOPS_CONTAINER_TESTS=1 $(PY) -m pytest tests/containers $(PYTEST_ARGS)

compile: $(STAMP)
	$(VENV)/bin/reelops pipeline compile --out build/pipelines

# Refresh the golden copies of the compiled pipelines on purpose (after a reviewed change).
golden: $(STAMP)
	$(VENV)/bin/reelops pipeline compile --out pipelines/golden

# Refresh manifests/ from reelops/manifests/ on purpose (after a reviewed change).
manifests: $(STAMP)
	$(VENV)/bin/reelops manifests render --out manifests

# The committed manifests are what the code renders, and every document passes the checks.
manifests-check: $(STAMP)
	rm -rf build/manifests
	$(VENV)/bin/reelops manifests render --out build/manifests >/dev/null
	diff -r --exclude=README.md manifests build/manifests
	$(VENV)/bin/reelops manifests check manifests

# The workflows (actionlint, GitHub's workflow schema) and the Dockerfile (hadolint).
lint: $(STAMP)
	$(VENV)/bin/actionlint .github/workflows/*.yml
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(VENV)/bin/hadolint Dockerfile

bench: $(STAMP)
	for script in benchmarks/[a-z]*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf build .reelops .pytest_cache
