# gemimg_jupyter — the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SRC    := gemimg_jupyter tests benchmarks scripts

.PHONY: demo demo-headless test check lint unit bench clean

$(STAMP): pyproject.toml
	@echo "setting up $(VENV): installing gemimg_jupyter with JupyterLab and the test tools (about a minute the first time) …"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]' 2>&1 | grep -v "is ignored" || true
	@$(BIN)/python -c "import gemimg_jupyter, IPython, ipywidgets, PIL, requests, backoff, pytest" \
		|| { echo "install failed: see the pip output above"; exit 1; }
	@touch $(STAMP)

## demo: set up, execute the quickstart on the built-in simulator, serve JupyterLab with the result until Ctrl-C
demo: $(STAMP)
	@$(BIN)/python scripts/demo.py --serve $(DEMO_ARGS)

## demo-headless: the same without the JupyterLab server (used by CI's smoke test)
demo-headless: $(STAMP)
	@$(BIN)/python scripts/demo.py $(DEMO_ARGS)

## test: set up, lint, type-check and run the whole suite (browser tests included), a test file per process, two at once
test: $(STAMP)
	@bash scripts/ensure-chromium.sh
	$(MAKE) --no-print-directory lint
	GEMIMG_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -n 2 --dist loadfile

## check: the fast inner loop: lint, types, and every test that needs no browser, kernel or long run (two processes)
check: $(STAMP)
	$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not browser and not notebook and not slow"

lint: $(STAMP)
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)
	$(BIN)/mypy

## bench: the engine, magic and notebook benchmarks (print tables, write JSON to benchmarks/results)
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .venv-k6 gemimg_outputs demo_out artifacts .pytest_cache .mypy_cache .ruff_cache
