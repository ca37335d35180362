# One command runs the product, one runs the tests; each creates the venv when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# `make up` needs only the product; the tests also build llama-cpp-python (minutes, once).
PRODUCT := $(VENV)/.installed-product

.PHONY: up test lint format protos bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(PRODUCT): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -q -c constraints.txt -e .
	touch $(PRODUCT)

$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,llama]'
	touch $(STAMP) $(PRODUCT)

up: $(PRODUCT)
	$(VENV)/bin/gpucloud up

test: $(STAMP)
	$(PY) scripts/test.py

lint: $(STAMP)
	$(PY) scripts/lint.py

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

protos: $(STAMP)
	$(PY) scripts/gen_protos.py

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test-output
