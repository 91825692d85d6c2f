# starburst: `make demo` runs the example on the local cloud; `make test` runs
# every test. Both install what they need first (`make install`, idempotent).

PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --locked
export UV_PYTHON ?= 3.11
export CHECKPOINT_DISABLE := 1

.PHONY: install demo test test-fast bench lint format infra infra-destroy clean

install:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet 'uv>=0.5'
	$(UV) sync --locked --all-packages
	$(RUN) starburst-cli local install

demo: install
	$(RUN) bash scripts/demo.sh

test: install
	$(RUN) pytest -q -ra

test-fast: install
	$(RUN) pytest -q -ra -m "not cloud and not slow"

bench: install
	$(RUN) python bench/run.py

lint:
	$(RUN) ruff check .
	$(RUN) ruff format --check sdk worker cli localstack tests examples bench

infra: install
	$(RUN) starburst-cli infra apply

infra-destroy: install
	$(RUN) starburst-cli infra destroy

clean:
	rm -rf .venv .pytest_cache .ruff_cache
