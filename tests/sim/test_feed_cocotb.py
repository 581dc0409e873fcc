"""The feed handler's whole RX pipeline in cocotb + Verilator, fed by cocotbext-eth's GmiiSource
and compared with the reference model. The cocotb side is feed_cocotb.py beside this file.

Complements sim.feed_rtl (our own Verilator harness): here the stimulus comes from an
independent GMII driver (its own preamble, FCS and gap handling) and the gateware runs behind
cocotb's VPI, so a harness bug and a gateware bug cannot hide each other.
"""

import fcntl
from pathlib import Path

from amaranth.back import verilog
from cocotb_tools.check_results import get_results
from cocotb_tools.runner import get_runner

from hdl.feed import FeedHandler
from sim.verilated import verilog_ports

HERE = Path(__file__).resolve().parent
BUILD = HERE.parents[1] / "build" / "cocotb" / "feed_handler"
TOP = "feed_handler"


def _write_verilog(path: Path) -> None:
    component = FeedHandler()
    # Explicit ports: Amaranth's own port collection fails on the Const `ready` of the
    # always_ready streams (see sim.verilated.verilog_ports).
    text = verilog.convert(component, name=TOP, ports=verilog_ports(component), emit_src=False)
    # Unchanged text keeps its mtime, so Verilator and make can skip a rebuild.
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


def test_feed_handler_cocotb(monkeypatch):
    BUILD.mkdir(parents=True, exist_ok=True)
    # Several sessions may run the suite at once: they share this build folder.
    with open(BUILD.with_name(BUILD.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = _build_and_run(monkeypatch)
    num_tests, num_failed = get_results(results)
    assert (num_tests, num_failed) == (1, 0), f"see the cocotb log above and {results}"


def _build_and_run(monkeypatch) -> Path:
    source = BUILD / f"{TOP}.v"
    _write_verilog(source)
    # The runner passes this process's sys.path to the simulator as PYTHONPATH; importlib mode
    # does not put this folder on it, so add it for the cocotb test module.
    monkeypatch.syspath_prepend(str(HERE))

    runner = get_runner("verilator")
    runner.build(
        sources=[source],
        hdl_toplevel=TOP,
        build_dir=BUILD,
        # DESIGN.md §6: what Amaranth-generated Verilog needs under cocotb.
        timescale=("1ns", "1ps"),
        build_args=["-Wno-fatal"],
    )
    return Path(runner.test(
        test_module="feed_cocotb",
        hdl_toplevel=TOP,
        build_dir=BUILD,
        test_dir=BUILD,
        timescale=("1ns", "1ps"),
    ))
