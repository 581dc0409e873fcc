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

from amaranth import Cat, ClockSignal, Instance, Signal, Value

__all__ = ["copies", "window", "is_ecp5"]


def is_ecp5(platform) -> bool:
    """Elaborating for an ECP5 (tools/synth.py's platform, or an Amaranth LatticeECP5Platform)."""
    return str(getattr(platform, "device", "")).startswith("LFE5")


def _kept(m, platform, q: Signal, d, name: str) -> None:
    """q loads d every cycle, in flip-flops of its own on ECP5."""
    if is_ecp5(platform):
        for k in range(len(q)):
            m.submodules[f"{name}_{k}"] = Instance(
                "FD1S3AX", p_GSR="DISABLED", i_CK=ClockSignal(), i_D=d[k], o_Q=q[k])
    else:
        m.d.sync += q.eq(d)


def copies(m, platform, value, n: int, name: str) -> list[Signal]:
    """`n` registers that each load `value` every cycle (so they are one cycle behind it)."""
    value = Value.cast(value)
    out = [Signal(len(value), name=f"{name}{i}") for i in range(n)]
    for i, q in enumerate(out):
        _kept(m, platform, q, value, f"{name}{i}")
    return out


def window(m, platform, byte, n: int, name: str) -> Signal:
    """The `n` bytes before `byte`, the latest lowest: a shift register that takes `byte` every
    cycle, in flip-flops of its own. Each block on the receive byte path (Ethernet, IPv4, UDP,
    MoldUDP64) shifts such a window from the same byte as the ITCH decoder's, whose window is
    also the message's body: merged by Yosys, they were one chain, placed beside the book that
    reads the body, and the filters' compares and the cut-through valid chain reached it across
    the chip (3.2 ns of the routed core's critical path; docs/book-timing.md, "Nineteenth
    session"). Kept apart, each block's window sits by its own logic."""
    out = Signal(8 * n, name=name)
    _kept(m, platform, out, Cat(byte, out)[:8 * n], name)
    return out
