# One command runs the product, one runs the tests; each creates the venv when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
# Stamps say what the venv holds, so each target installs only what it lacks, into one venv:
# the product (`make up`); plus the dev tools (`make test`, `make lint`); plus the llama
# extra (`make test-llama`: builds llama.cpp from source, minutes, once).
PRODUCT := $(VENV)/.installed-product
DEV := $(VENV)/.installed
LLAMA := $(VENV)/.installed-llama

.PHONY: up test test-llama lint format protos bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(PRODUCT): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -q -c constraints.txt -e .
	touch $(PRODUCT)

$(DEV): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(DEV) $(PRODUCT)

$(LLAMA): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,llama]'
	touch $(LLAMA) $(DEV) $(PRODUCT)

up: $(PRODUCT)
	$(VENV)/bin/gpucloud up

# Every test but the real-llama.cpp ones (deselected, not skipped).
test: $(DEV)
	$(PY) scripts/test.py

# Only the tests that drive a real llama.cpp server.
test-llama: $(LLAMA)
	$(PY) scripts/test.py --llama

lint: $(DEV)
	$(PY) scripts/lint.py

format: $(DEV)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

protos: $(DEV)
	$(PY) scripts/gen_protos.py

bench: $(DEV)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test-output
