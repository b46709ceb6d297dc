# Two commands for a fresh clone: `make serve` and `make test`. Both create .venv and
# install what is needed; the install is skipped while pyproject.toml is unchanged.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch for machines without a GPU; on a CUDA machine set TORCH to the
# build you want (e.g. TORCH=torch), or install torch into .venv first.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: serve test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[worker,dev]"
	# spandrel (super-resolution loader) requires torchvision, which would replace the CPU
	# torch here; it runs without it (see retouch/engine/upscale.py), so skip its deps.
	$(BIN)/pip install --quiet --no-deps "spandrel>=0.4.2,<0.5" "einops>=0.7"
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/retouch serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/api_overhead.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
