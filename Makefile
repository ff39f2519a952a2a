# One command each: `make bench` runs the comparison, `make test` runs the suite's tests.
# Both create the project virtualenv (.venv) first if it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: bench test tune gate-update lint lock runtimes clean-cache

# LiteRT, installed so that pip has nothing to report. No set of versions satisfies everything:
# litert-torch 0.10.0 (the release for torch 2.14) needs litert-converter 0.5.*, which (like ai-edge-litert's
# [model-utils] extra) pins xdsl==0.28.0, and xdsl 0.28.0 declares typing-extensions<4.13, while apache-tvm-ffi
# 0.1.14.post0 (under apache-tvm 0.27) declares typing-extensions>=4.13. TVM's need wins. The one requirement
# overridden is xdsl's cap: xdsl, litert-converter and litert-torch go in with --no-deps, after everything else
# they declare (LITERT_NEEDS, their Requires-Dist less each other and less what the project already brings).
# LiteRT converts and runs with typing-extensions 4.16. `pip check` then must report that override and nothing
# else, so a need missing from LITERT_NEEDS, or any other conflict, stops the install here.
LITERT_NODEPS := 'xdsl==0.28.0' 'litert-converter==0.5.0' 'litert-torch==0.10.0'
LITERT_NEEDS := 'ai-edge-litert==2.3.0' 'ai-edge-quantizer==0.10.*' 'litert-lm-builder>=0.18.0' 'torchao>=0.17.0' \
	absl-py scipy safetensors multipledispatch transformers kagglehub tabulate jax jaxtyping fire sentencepiece rich \
	lark 'immutabledict<4.2.2' 'ordered-set==4.1.0' 'typing-extensions>=4.14'
LITERT_OVERRIDE := xdsl 0.28.0 has requirement typing-extensions<4.13,>=4.7, but you have typing-extensions

# The lock: every package at the version the suite was measured and tested with (see constraints.txt).
LOCK := constraints.txt
PIP_VERSION := 26.3
# uv installs the locked set (downloads in parallel, unpacks from its cache); pip stays for `pip check`.
UV_VERSION := 0.13.8
INSTALL := $(VENV)/bin/uv pip install --quiet --python $(PY) -c $(LOCK)

# The stamp depends on everything that decides the install: a changed pin in any of them reinstalls.
$(VENV)/.installed: pyproject.toml Makefile $(LOCK)
	@rm -f $@
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet 'pip==$(PIP_VERSION)' 'uv==$(UV_VERSION)'
	$(INSTALL) -e '.[dev,backends,models]'
	$(INSTALL) -e '.[executorch]' || echo "executorch could not be installed: its rows will be skipped"
	$(INSTALL) $(LITERT_NEEDS) && $(INSTALL) --no-deps $(LITERT_NODEPS) \
		|| echo "litert could not be installed: its rows will be skipped"
	@$(PY) -m pip check | grep -v -e '^$(LITERT_OVERRIDE) ' -e '^No broken requirements found' \
		&& { echo "pip check found the conflicts above (only xdsl's typing-extensions cap is expected)"; exit 1; } \
		|| echo "pip check: no conflict except xdsl 0.28.0's cap typing-extensions<4.13, overridden on purpose (Makefile)"
	@$(PY) -m cpubench.runtimes
	touch $@

bench: $(VENV)/.installed  ## the comparison over every installed backend, report in results/
	$(PY) -m pytest benches/ $(PYTEST_ARGS)

# The quick benchmarks build variants two at a time (--build-jobs 2): their cold starts are not measured alone, and
# the report says so.
# The suite's own tests run two at a time (pytest-xdist, a test file per process: the tuning tests share one tiny
# tuning run), except those marked `alone`, which run timed sessions of the suite and go after, one at a time.
test: $(VENV)/.installed  ## the suite's own tests, then the quick benchmarks in every precision with the regression gate
	$(PY) -m pytest tests/ -m "not alone" -n 2 --dist loadfile --durations=10 $(PYTEST_ARGS)
	$(PY) -m pytest tests/ -m alone --durations=5 $(PYTEST_ARGS)
	$(PY) -m pytest benches/ --benchmark-max-time=0.5 --benchmark-min-rounds=5 --precision fp32,bf16,int8 --build-jobs 2 \
		$(PYTEST_ARGS)

tune: $(VENV)/.installed  ## tune TVM for this CPU, warm-started from the nearest stored log (about 15 minutes a model on 2 cores)
	$(PY) -m pytest benches/ -m tune $(PYTEST_ARGS)

gate-update: $(VENV)/.installed  ## store this machine's ratios as the expected ones
	$(PY) -m pytest benches/ --gate-update $(PYTEST_ARGS)

runtimes: $(VENV)/.installed  ## which runtimes import here; `make runtimes REQUIRE=all` fails if any is missing
	$(PY) -m cpubench.runtimes $(if $(REQUIRE),--require $(REQUIRE))

lock: $(VENV)/.installed  ## write constraints.txt from the installed environment (after changing a version on purpose)
	{ sed -n '/^#/p' $(LOCK); $(PY) -m pip freeze --exclude-editable; } > $(LOCK).new && mv $(LOCK).new $(LOCK)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# The builds docs/design.md#caches names: ONNX exports, int8 models, TVM libraries, ExecuTorch programs, LiteRT files and Inductor's
# cache (cpubench/cache.py: $CPUBENCH_CACHE, else .cache/). Unfinished tuning runs (tuning-work/) are kept: they resume.
CACHE_DIR ?= $(or $(CPUBENCH_CACHE),.cache)

clean-cache:  ## drop the cached exports and builds; the next run redoes them
	rm -rf $(addprefix $(CACHE_DIR)/,onnx int8 tvm torch-compile executorch litert inductor)
