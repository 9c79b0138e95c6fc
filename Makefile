# The two commands a newcomer needs: `make run` and `make test`.
# Each creates the virtual environment and fetches Kafka when missing.

PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed
CLI := $(VENV)/bin/gateway-analytics

.PHONY: run test lint schemas bench soak clean

run: $(INSTALLED)
	@$(CLI) fetch-kafka >/dev/null
	$(CLI) run

test: $(INSTALLED)
	@$(CLI) fetch-kafka >/dev/null
	$(VENV)/bin/pytest

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Every stage beside its limit; writes bench/results/. Not part of `make test`.
bench: $(INSTALLED)
	@$(CLI) fetch-kafka >/dev/null
	@$(VENV)/bin/python -c "import matplotlib" 2>/dev/null || { \
		echo "Installing matplotlib for the benchmark chart..."; \
		$(VENV)/bin/pip install --quiet --disable-pip-version-check --editable '.[dev,bench]'; }
	$(VENV)/bin/python -m bench.harness

# Ten minutes at a steady rate; reports errors and memory. Not part of `make test`.
soak: $(INSTALLED)
	@$(CLI) fetch-kafka >/dev/null
	$(VENV)/bin/python -m bench.soak

schemas: $(INSTALLED)
	$(CLI) export-schemas

$(INSTALLED): pyproject.toml
	@test -x $(VENV)/bin/python || { echo "Creating $(VENV)..."; $(PYTHON) -m venv $(VENV); }
	@echo "Installing gateway-analytics and its dependencies into $(VENV) (first run only, about a minute)..."
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check --editable '.[dev]'
	@touch $@

clean:
	rm -rf $(VENV) .cache data .pytest_cache .mypy_cache .ruff_cache
