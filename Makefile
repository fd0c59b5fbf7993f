# Two commands do everything on a fresh clone (see README):
#   make quickstart   create .venv, install, run the embedded default search
#   make test         create .venv, install, run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: quickstart test app bench clean

# torch first: its local CPU build (2.13.0) must be in place before anything asks for `torch`,
# or pip resolves the newest CUDA build (gigabytes). wavemix 0.2.4 is a test-only oracle; its
# metadata wants torchvision, hence --no-deps.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/python -m pip install -q --no-deps wavemix==0.2.4
	touch $(STAMP)

quickstart: $(STAMP)
	$(BIN)/engine search search_spaces/quickstart.yaml

# Test files run in TEST_WORKERS parallel workers (pytest-xdist; each file stays on one
# worker, so its module fixtures are built once). TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

app: $(STAMP)
	$(BIN)/engine app

bench: $(STAMP)
	$(BIN)/python bench/bench_models.py
	$(BIN)/python bench/bench_data.py
	$(BIN)/python bench/bench_memory.py

clean:
	rm -rf $(VENV) .pytest_cache wavesearch.db
