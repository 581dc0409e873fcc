"""`hdl.ebr.RegisteredRam`: its simulated behaviour against a plain Python memory (three cycles
from address to data, a write seen by reads addressed in its own cycle on), and its ECP5 form:
the DP16KD blocks, their output registers on, each block's own copy of the read address, and
every data and address bit on the pin Yosys' own 512 x 36 mapping uses."""

import random

from amaranth import Const, Instance, Signal, Value
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hdl.ebr import EBR_WIDTH, RegisteredRam
from tools.synth import ECP5_SYNTH

WIDTH, DEPTH = 80, 64


def test_reads_three_cycles_after_their_address() -> None:
    rng = random.Random(3)
    dut = RegisteredRam(WIDTH, DEPTH)
    mem = [0] * DEPTH
    steps = [(rng.randrange(DEPTH), rng.random() < 0.4, rng.randrange(DEPTH),
              rng.getrandbits(WIDTH)) for _ in range(2000)]

    async def bench(ctx):
        expect: list[int | None] = [None] * RegisteredRam.LATENCY
        for raddr, wen, waddr, wdata in steps:
            ctx.set(dut.read_addr, raddr)
            ctx.set(dut.write_en, wen)
            ctx.set(dut.write_addr, waddr)
            ctx.set(dut.write_data, wdata)
            if expect[0] is not None:
                assert ctx.get(dut.read_data) == expect[0]
            # The block reads the cycle after the address (its copy's cycle): the memory as it
            # is after this cycle's write.
            if wen:
                mem[waddr] = wdata
            expect = expect[1:] + [mem[raddr]]
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _bit_source(value) -> tuple[str, int] | int:
    """Which bit a 1-bit port expression is: ("name", index) of a signal slice, or a constant."""
    v = Value.cast(value)
    if isinstance(v, Const):
        return v.value
    if isinstance(v, Signal):
        return (v.name, 0)
    return (v.value.name, v.start)


def test_ecp5_form_is_dp16kd_with_output_registers() -> None:
    width = 137                                   # the order table's entry, 4 blocks
    dut = RegisteredRam(width, 512)
    frag = Fragment.get(dut, ECP5_SYNTH)
    cells = [sub for sub, _, _ in frag.subfragments if isinstance(sub, Instance)]
    blocks = [c for c in cells if c.type == "DP16KD"]
    assert len(blocks) == -(-width // EBR_WIDTH)
    # Each block's copy of the read address: one flip-flop per bit, loading `read_addr`.
    flops = {_bit_source(c.ports["Q"][0]): _bit_source(c.ports["D"][0])
             for c in cells if c.type == "FD1S3AX"}
    assert flops == {(f"read_addr_copy{k}", i): ("read_addr", i)
                     for k in range(len(blocks)) for i in range(9)}
    for k, inst in enumerate(blocks):
        p = inst.parameters
        assert (p["DATA_WIDTH_A"], p["DATA_WIDTH_B"]) == (36, 36)
        assert (p["REGMODE_A"], p["REGMODE_B"]) == ("OUTREG", "OUTREG")
        ports = {name: value for name, (value, _) in inst.ports.items()}
        for i in range(36):
            pin = f"DIA{i}" if i < 18 else f"DIB{i - 18}"
            bit = 36 * k + i
            want = ("write_data", bit) if bit < width else 0
            got = _bit_source(ports[pin])
            assert got == want, (k, pin, got, want)
        # Address bits 5-13 carry the set; port A's 0-3 its byte enables (the write enable).
        # The read address is the block's own copy (`hdl.copies`: one FD1S3AX per bit).
        for i in range(9):
            assert _bit_source(ports[f"ADA{5 + i}"]) == ("write_addr", i)
            assert _bit_source(ports[f"ADB{5 + i}"]) == (f"read_addr_copy{k}", i)
        for i in range(4):
            assert _bit_source(ports[f"ADA{i}"]) == ("write_en", 0)
        assert Value.cast(ports["WEB"]).value == 0
