# Two commands: `make run` (set up, execute every notebook) and `make test` (set up, run the tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export MPLBACKEND := Agg

.PHONY: setup run test lab bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e ".[notebooks,test,real]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "declip-lite (.venv)" >/dev/null
	touch $(STAMP)

setup: $(STAMP)

run: setup  ## execute notebooks/*.ipynb in order into runs/ (SMOKE=1 for the quick presets)
	$(BIN)/python notebooks/run.py --out runs $(if $(SMOKE),--smoke,)

test: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider -n auto --dist worksteal  # a 1-thread worker per core; idle workers take queued tests from busy ones

lab: setup
	$(BIN)/python -m pip install -q jupyterlab
	$(BIN)/jupyter lab notebooks/

bench: setup
	$(BIN)/python bench/bench.py

clean:
	rm -rf runs .pytest_cache
