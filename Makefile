# starburst: `make demo` runs the example on the local cloud; `make test` runs
# every test. Both install what they need first (`make install`, idempotent);
# `make test` also installs the container tools (Debian's Docker engine, registry
# and mmdebstrap; needs root and apt-get, fails with the reason otherwise) and
# makes the container tests fail, not skip, if those tools are missing.

PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --locked
export UV_PYTHON ?= 3.11
export CHECKPOINT_DISABLE := 1

.PHONY: install container-tools demo test test-fast bench lint format infra infra-destroy clean

install:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet 'uv>=0.5'
	$(UV) sync --locked --all-packages
	$(RUN) starburst-cli local install

container-tools:
	bash scripts/install-container-tools.sh

demo: install
	$(RUN) bash scripts/demo.sh

test: install container-tools
	STARBURST_REQUIRE_CONTAINERS=1 $(RUN) pytest -q -ra

test-fast: install
	$(RUN) pytest -q -ra -m "not cloud and not slow"

# The peers (Dask, Lithops) and matplotlib are the bench group, installed only here.
bench: install
	$(UV) sync --locked --all-packages --group bench
	$(RUN) --group bench python bench/run.py

lint:
	$(RUN) ruff check .
	$(RUN) ruff format --check sdk worker cli localstack tests examples bench README.md

infra: install
	$(RUN) starburst-cli infra apply

infra-destroy: install
	$(RUN) starburst-cli infra destroy

clean:
	rm -rf .venv .pytest_cache .ruff_cache
