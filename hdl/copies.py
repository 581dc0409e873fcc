"""Registered copies of one value, kept apart by synthesis: one per group of far-apart readers.

Why: nextpnr places a logic cell where its nets pull it. The order table's 32 ways each compare
their block RAM's entry with the same key, slot, generation and top prices; with one register
for each of those, read by all 32, the compare logic was placed in the middle of the chip,
about 100 tiles from the block RAM rows (docs/book-timing.md). With a copy per way, each copy
can sit by its way's compare logic, and only the copy's own input crosses the chip, on a path
that does nothing else.

Yosys' `opt_merge` folds flip-flops with the same inputs into one, which would undo the copies.
It merges only Yosys' internal cell types, so on ECP5 each copied bit is an FD1S3AX instance
(a plain D flip-flop of the Lattice library; `synth_ecp5` maps it to TRELLIS_FF). Anywhere else
(simulation) the copies are plain registers.
"""

from amaranth import ClockSignal, Instance, Signal, Value

__all__ = ["copies", "is_ecp5"]


def is_ecp5(platform) -> bool:
    """Elaborating for an ECP5 (tools/synth.py's platform, or an Amaranth LatticeECP5Platform)."""
    return str(getattr(platform, "device", "")).startswith("LFE5")


def copies(m, platform, value, n: int, name: str) -> list[Signal]:
    """`n` registers that each load `value` every cycle (so they are one cycle behind it)."""
    value = Value.cast(value)
    out = [Signal(len(value), name=f"{name}{i}") for i in range(n)]
    for i, q in enumerate(out):
        if is_ecp5(platform):
            for k in range(len(value)):
                m.submodules[f"{name}{i}_{k}"] = Instance(
                    "FD1S3AX", p_GSR="DISABLED", i_CK=ClockSignal(), i_D=value[k], o_Q=q[k])
        else:
            m.d.sync += q.eq(value)
    return out
