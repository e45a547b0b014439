# Set-up: `make install` creates .venv and installs the project with its dev tools (then
# `source .venv/bin/activate` to run `python train.py ...` yourself). Every task target below
# installs on first use too, so it also works on a fresh clone:
#   make train     train (extra Hydra overrides: ARGS="...")
#   make tune      an Optuna sweep: tune.py -m
#   make predict   ARGS="images=a.png" or ARGS="random_test=16"
#   make evaluate  test figures + report for a model file (ckpt_path=best unless ARGS says)
#   make export    ONNX + the seed-style state_dict
#   make serve     the drawing page and API on the newest run's best model (trains a quick one
#                  first when there is none); server overrides: ARGS="port=8080"
#   make test      the default test suite (under 8 minutes);  make test-slow  the slow tests;
#   make test-all  every test;  make lint  ruff
#   make docs      the manual (docs/) as a website in site/, links checked (--strict)
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# The PyTorch build to install first; pinned to the wheels this project is tested with.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# Offline EMNIST files in torchvision's layout (EMNIST/raw/...); when absent, torchvision downloads.
PROXY_DATA ?= ../shared/data/emnist-proxy
DATA_ARGS := $(if $(wildcard $(PROXY_DATA)/EMNIST/raw/*),data.data_dir=$(PROXY_DATA) data.download=false,)
ARGS ?=
# The recipe `make serve` trains when no run exists yet.
QUICK_ARGS ?= experiment=fast
RUNS_DIR := logs/train/runs

.PHONY: install train tune predict evaluate export serve test test-slow test-all lint docs clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

train: install
	$(PY) train.py $(DATA_ARGS) $(ARGS)

tune: install
	$(PY) tune.py -m $(DATA_ARGS) $(ARGS)

predict: install
	$(PY) predict.py $(DATA_ARGS) $(ARGS)

evaluate: install
	$(PY) evaluate.py $(DATA_ARGS) $(ARGS)

export: install
	$(PY) export.py $(ARGS)

serve: install
	@if ! $(PY) -c "from emnist_lightning.inference.model_files import newest_finished_last_checkpoint as f; f('$(RUNS_DIR)')" 2>/dev/null; then \
		echo "No finished run under $(RUNS_DIR) yet: training a quick one first ($(QUICK_ARGS))"; \
		$(PY) train.py $(DATA_ARGS) $(QUICK_ARGS); \
	fi
	$(PY) serve.py $(ARGS)

test: install
	$(PY) -m pytest -m "not slow" $(ARGS)

test-slow: install
	$(PY) -m pytest -m slow $(ARGS)

test-all: install
	$(PY) -m pytest $(ARGS)

# Material's banner about MkDocs 2.0 and its own end of life is explained in docs/index.md.
docs: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict $(ARGS)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks *.py
	$(VENV)/bin/ruff format --check src tests benchmarks *.py

clean:
	rm -rf logs site .pytest_cache
