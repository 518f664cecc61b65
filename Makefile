# foodpipe: `make demo` runs the main job from nothing, `make test` installs and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install test test-fast demo constraints clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[cpu,test]"
	touch $@

# The tests run on TEST_WORKERS processes (pytest-xdist; each file on one of them): most tests
# keep one core busy, waiting on the processes and servers they start. TEST_WORKERS=0: one process.
# The files go in the order collected (tests/conftest.py puts the longest first), not by test count.
TEST_WORKERS ?= 2
PYTEST = $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: install
	$(PYTEST) $(PYTEST_ARGS)

test-fast: install
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

# make demo ARGS="--epochs 3 --per-class 60": the demo's own flags (foodpipe demo --help).
demo: install
	$(BIN)/foodpipe demo $(ARGS)

# Re-resolve the pins after editing pyproject.toml (writes constraints.txt from a clean venv).
constraints:
	rm -rf /tmp/foodpipe-constraints && $(PYTHON) -m venv /tmp/foodpipe-constraints
	/tmp/foodpipe-constraints/bin/pip install --quiet ".[cpu,test]"
	{ echo "# Every package foodpipe resolves to on Python 3.11 (pip freeze of a fresh 'make install')."; \
	  echo "# Regenerate with 'make constraints' after changing a pin in pyproject.toml."; \
	  /tmp/foodpipe-constraints/bin/pip freeze --exclude foodpipe | sort -f; } > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info demo-output
