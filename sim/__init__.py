"""Simulation: cocotb helpers, the Verilator co-simulation server, exchange simulator, traffic."""
