# mds-vqa: one command to set up, one to test.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
# the tested versions; `make install CONSTRAINTS=` resolves the newest allowed by pyproject.toml instead
CONSTRAINTS ?= constraints.txt

.PHONY: install lock test test-fast lint toy demo

install:  ## create .venv and install mds-vqa with its dev tools, at the tested versions
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]" $(if $(CONSTRAINTS),-c $(CONSTRAINTS))

lock:  ## upgrade .venv to the newest versions pyproject.toml allows and write them to constraints.txt
	$(BIN)/python -m pip install --upgrade --upgrade-strategy eager -e ".[dev]"
	{ head -n 3 constraints.txt; $(BIN)/python -m pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	@echo "constraints.txt rewritten: run 'make test' and commit it only if the suite passes."

test:  ## the full suite (slow end-to-end tests included), as CI runs it
	$(BIN)/python -m pytest tests

test-fast:  ## the default quick suite
	$(BIN)/python -m pytest tests -m "not slow"

lint:
	$(BIN)/ruff check src recipes tests benchmarks
	$(BIN)/ruff format --check src recipes tests benchmarks

toy:  ## offline toy assets for the per-stage demo configs: generated videos, tiny Qwen2.5-VL, two pools
	HF_HUB_OFFLINE=1 $(BIN)/python recipes/make_toy_data.py --output_dir outputs/toy
	HF_HUB_OFFLINE=1 $(BIN)/python recipes/build_pool.py --config outputs/toy/source/build_pool.yaml
	HF_HUB_OFFLINE=1 $(BIN)/python recipes/build_pool.py --config outputs/toy/target/build_pool.yaml

demo:  ## MDS-VQA vs the baselines in the toy world, three seeds (offline, CPU): outputs/demo/report/README.md
	HF_HUB_OFFLINE=1 $(BIN)/python recipes/demo.py --output_dir outputs/demo
