# Two commands: `make run` (set up, execute every notebook) and `make test` (set up, run the tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CHROMIUM ?= /usr/bin/chromium
# No MPLBACKEND here: set, it reaches every kernel and ipykernel then skips its inline backend,
# so notebooks draw no figures in JupyterLab (and none in the executed copies).

.PHONY: setup browser run test lab bench gpu-check reproduce clean

# uv installs the 5.5 GB torch, unpacking in parallel; it reads the indexes pip is configured with (a local
# mirror) and PyPI. Bytecode is written as modules are first imported: these machines set
# PYTHONDONTWRITEBYTECODE, which would make every process compile torch again (19.5 s of CPU per import
# against 8.0, results/checks/import_costs.json). Compiled at install instead, the venv costs 67 s of CPU
# against 4 s, and the first import 10.5 s against 21 s (results/checks/setup_costs.json)
unexport PYTHONDONTWRITEBYTECODE
EXTRA_INDEXES = $(foreach url,$(shell $(PYTHON) -m pip config get global.extra-index-url 2>/dev/null),--extra-index-url $(url))
UV := $(BIN)/uv pip install -q --python $(BIN)/python --index-strategy unsafe-best-match $(EXTRA_INDEXES)

# jsonschema 4.24.0, the last before its format checker imports rfc3987-syntax, which builds 39 Lark
# grammars at import: 3.4 s of CPU in every process that imports nbformat, papermill or Jupyter's server
# (each pytest worker, the notebook runner, `make lab`), against 0.1 s
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv
	$(UV) torch==2.14.1 torchvision==0.29.1 jsonschema==4.24.0 -e ".[notebooks,test,real]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "declip-lite (.venv)" >/dev/null
	touch $(STAMP)

setup: $(STAMP)

# Without its recommends (a desktop's udev, upower, printer tools, notification daemon, 50 perl modules):
# 26 packages instead of 115 on Debian 12, 124 MB to download instead of 140. Headless, chromium opens no
# file of theirs (traced with strace while it screenshots a page); fonts-liberation is the one kept
browser:  ## Debian's chromium for the JupyterLab browser test: installed where apt-get may run (root)
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      chromium fonts-liberation >/dev/null) \
	  || echo "chromium is not installed and apt-get cannot run here: the browser test will be skipped"; }

# what every test process imports, imported once before the workers start, so its bytecode is written once:
# torch in one process, Jupyter's and matplotlib's side in another, beside it (one core each)
WARM_TORCH := $(BIN)/python -c "import torch._dynamo, declip_lite.experiments"
WARM_JUPYTER := $(BIN)/python -c "import papermill, nbformat, matplotlib.pyplot"

run: setup  ## execute notebooks/*.ipynb in order into runs/ (SMOKE=1 for the quick presets)
	$(BIN)/python notebooks/run.py --out runs $(if $(SMOKE),--smoke,) $(RUN_ARGS)

# pytest: a 1-thread worker per core. The tests that wait, wait on a kernel, a browser or a subprocess that
# keeps the core busy, so a third worker on 2 cores only contended: one suite's fresh-clone CI, run twice in a
# row, took 9 min 24 s with two workers and 9 min 48 s (70 CPU-s more) with three, and each of the day's three
# runs with two beat each of its three with three (results/checks/ci_fresh_clone.json). Idle workers take
# queued tests from busy ones; the 12 slowest are named at the end
test:
	$(MAKE) -j2 --no-print-directory setup browser  # apt's chromium downloads while pip installs
	$(WARM_TORCH) & torch=$$!; $(WARM_JUPYTER) & jupyter=$$!; \
	  $(BIN)/ruff check . && wait $$torch && wait $$jupyter  # ruff: pyflakes, pycodestyle, 110 characters a line
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider -n $$(nproc) --dist worksteal --durations=12

lab: setup  ## JupyterLab on the repository (README, data, results reachable), opened at notebooks/
	env -u MPLBACKEND $(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" \
	  --LabApp.default_url=/lab/tree/notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

bench: setup  ## speed, every step timed in turn (open_clip installed from PyPI for the comparison)
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python bench/bench.py --out results/bench/bench_$(if $(filter cuda,$(DEVICE)),gpu,cpu).json $(if $(DEVICE),--device $(DEVICE),)

gpu-check: setup  ## the one prepared GPU check (bench/gpu_check.sh): parity, bench, reproduce, notebooks -> OUT
	$(BIN)/python -m pip install -q -e ".[bench]"
	PYTHON=$(BIN)/python OUT=$(or $(OUT),gpu_check_out) bash bench/gpu_check.sh

SCALE ?= cpu
JOBS  ?= 2
reproduce: setup  ## every run the notebooks' full mode needs at SCALE (smoke|cpu|gpu), resumable, into results/SCALE/
	$(BIN)/python -m declip_lite.experiments reproduce --scale $(SCALE) --jobs $(JOBS) $(REPRODUCE_ARGS)

clean:
	rm -rf runs .pytest_cache
