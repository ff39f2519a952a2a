# One command each: `make bench` runs the comparison, `make test` runs the suite's tests.
# Both create the project virtualenv (.venv) first if it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: bench test quick tune gate gate-update lint clean-cache

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,backends,models]'
	$(PY) -m pip install --quiet -e '.[executorch]' || echo "executorch could not be installed: its rows will be skipped"
	$(PY) -m pip install --quiet 'litert-torch==0.10.0' 'ai-edge-litert==2.3.0' || echo "litert could not be installed: its rows will be skipped"
	# xdsl (under litert-torch) asks for typing-extensions<4.13 and apache-tvm-ffi for >=4.13: TVM's need wins,
	# LiteRT converts and runs with the newer one.
	$(PY) -m pip install --quiet 'typing-extensions>=4.14'
	touch $@

bench: $(VENV)/.installed  ## the comparison over every installed backend, report in results/
	$(PY) -m pytest benches/ $(PYTEST_ARGS)

test: $(VENV)/.installed  ## the suite's own tests, then the benchmarks in quick mode with the ratio gate
	$(PY) -m pytest tests/ $(PYTEST_ARGS)
	$(PY) -m pytest benches/ --benchmark-max-time=0.5 --benchmark-min-rounds=5 $(PYTEST_ARGS)

tune: $(VENV)/.installed  ## tune TVM for this CPU, warm-started from the nearest stored log (about 15 minutes a model)
	$(PY) -m pytest benches/ -m tune $(PYTEST_ARGS)

gate-update: $(VENV)/.installed  ## store this machine's ratios as the expected ones
	$(PY) -m pytest benches/ --gate-update $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

clean-cache:
	rm -rf .cache/onnx .cache/tvm
