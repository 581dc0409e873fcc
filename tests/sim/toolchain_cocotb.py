"""cocotb side of test_toolchain.py (runs inside Verilator, not collected by pytest)."""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge


@cocotb.test()
async def counter_counts(dut):
    cocotb.start_soon(Clock(dut.clk, 8, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 10)
    # Sample mid-cycle so the 10th edge's update has certainly landed.
    await FallingEdge(dut.clk)
    assert int(dut.count.value) == 10, int(dut.count.value)
