# Two entry points that work on a fresh machine with only Python >= 3.11:
#   make demo   -> .venv with optkit (+ torch CPU), runs `optkit demo`
#   make test   -> .venv with optkit[torch,bench,dev], runs the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# The exact pin takes the CPU build on these machines; any other spec pulls CUDA packages.
TORCH_PIN ?= torch==2.13.0
PIP     = $(BIN)/python -m pip --disable-pip-version-check -q
# NL4Opt train/dev data shipped beside the repository (tests skip what needs it when it is absent)
NL4OPT_DIR ?= $(abspath ../shared/data/nl4opt)

.PHONY: demo test venv clean bench-ot lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(PIP) install "$(TORCH_PIN)"
	touch $@

venv: $(VENV)/.torch

demo: venv
	$(PIP) install -e ".[torch]"
	$(BIN)/optkit demo

test: venv
	$(PIP) install -e ".[torch,bench,dev]"
	OPTKIT_NL4OPT_DIR="$${OPTKIT_NL4OPT_DIR:-$(NL4OPT_DIR)}" $(BIN)/python -m pytest -q -p no:cacheprovider tests

lint: venv
	$(BIN)/ruff check optkit tests

bench-ot: venv
	$(PIP) install -e ".[torch,bench]"
	$(BIN)/optkit bench ot --plot

clean:
	rm -rf $(VENV) build *.egg-info
