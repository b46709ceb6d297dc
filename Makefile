# Two commands for a fresh clone: `make serve` and `make test`. Both create .venv and
# install what is needed; the install is skipped while pyproject.toml is unchanged.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch for machines without a GPU; on a CUDA machine set TORCH to the
# build you want (e.g. TORCH=torch), or install torch into .venv first.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: serve test lint typecheck unit unit-fast e2e browser bench fuzz chaos clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[worker,dev]"
	# spandrel (super-resolution loader) requires torchvision, which would replace the CPU
	# torch here; it runs without it (see retouch/engine/upscale.py), so skip its deps.
	$(BIN)/pip install --quiet --no-deps "spandrel>=0.4.2,<0.5" "einops>=0.7"
	touch $(STAMP)

# The browser tests (tests/browser/) drive Debian's Chromium, since Playwright's own browser
# downloads are unreachable here: installed when missing and make runs as root with apt;
# elsewhere they are skipped with a loud message (and fail under CI=1).
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium for the browser tests (apt-get)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
			|| echo "*** apt-get could not install chromium: the browser tests will be SKIPPED ***"; \
	else \
		echo "*** $(CHROMIUM) is missing and make cannot install it: the browser tests will be SKIPPED (sudo apt-get install chromium) ***"; \
	fi

serve: $(STAMP)
	$(BIN)/retouch serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Every test, on two pytest processes (pytest-xdist): the real-process tests mostly wait on
# their processes, so two run side by side in about half the time.
unit: $(STAMP) browser
	RETOUCH_TEST_CHROMIUM=$(CHROMIUM) $(BIN)/pytest -q -n 2

# The in-process tier (API under a TestClient, worker thread, fake engine), on two pytest
# processes (pytest-xdist): about 40 s on 2 cores, 55 s on one. Skips the real-process tests (tests/e2e/, marker e2e) and the preview pipelines
# (marker slow); `make test` runs everything.
unit-fast: $(STAMP)
	$(BIN)/pytest -q -n 2 -m "not e2e and not slow" $(ARGS)

# Only the tests that start `retouch serve`/`retouch worker` processes (the browser's too).
e2e: $(STAMP) browser
	RETOUCH_TEST_CHROMIUM=$(CHROMIUM) $(BIN)/pytest -q -m e2e $(ARGS)

# fuzz is bounded (20 examples per operation, seeded): about 15 s; chaos about 2 minutes.
test: lint typecheck unit fuzz chaos

bench: $(STAMP)
	$(BIN)/python bench/api_overhead.py

# Schemathesis against a live server on a temp data dir (bounded: FUZZ_ARGS="--max-examples 5").
fuzz: $(STAMP)
	$(BIN)/python bench/fuzz_api.py $(FUZZ_ARGS)

# bench/chaos.py, the short run: SIGKILLs workers, API processes and a private PostgreSQL
# (its own initdb) while jobs run, then checks that none was lost, stuck, finished twice or left
# files in the (moto) bucket. The full run: CHAOS_ARGS="--jobs 100 --kills 40".
CHAOS_ARGS ?= --jobs 30 --kills 10 --db-kills 3
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
