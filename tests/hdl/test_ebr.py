"""`hdl.ebr.RegisteredRam`: its simulated behaviour against a plain Python memory (four cycles
from address to data, a write seen by reads addressed from the cycle after it on), and its ECP5
form: the DP16KD blocks, their output registers on, each block's own copies of the read
address and the write, and every data and address bit on the pin Yosys' own mapping uses
(512 x 36, 1,024 x 18 and 2,048 x 9)."""

import random

import pytest
from amaranth import Const, Instance, Signal, Value
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hdl.ebr import RegisteredRam
from tools.synth import ECP5_SYNTH

WIDTH, DEPTH = 80, 64


def test_reads_four_cycles_after_their_address() -> None:
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
            # The block reads the cycle after the address (its copy's cycle), when this cycle's
            # write lands too: the memory as it is before this cycle's write.
            expect = expect[1:] + [mem[raddr]]
            if wen:
                mem[waddr] = wdata
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _bits(value) -> list[tuple[str, int] | int]:
    """Each bit of a port expression: ("name", index) of a signal's bit, or a constant bit."""
    v = Value.cast(value)
    if isinstance(v, Const):
        return [(v.value >> i) & 1 for i in range(len(v))]
    if isinstance(v, Signal):
        return [(v.name, i) for i in range(len(v))]
    if hasattr(v, "parts"):                       # a Cat
        return [b for part in v.parts for b in _bits(part)]
    return _bits(v.value)[v.start:v.stop]         # a slice


def _bit_source(value) -> tuple[str, int] | int:
    """Which bit a 1-bit port expression is."""
    (bit,) = _bits(value)
    return bit


@pytest.mark.parametrize("depth, bits_per, abits", [(512, 36, 9), (1024, 18, 10),
                                                     (2048, 9, 11)])
def test_ecp5_form_is_dp16kd_with_output_registers(depth, bits_per, abits) -> None:
    """512 x 36 blocks (pseudo dual port) up to 512 deep, 1,024 x 18 and 2,048 x 9 (true dual
    port) up to 1,024 and 2,048: every pin as Yosys' own mapping has it, each block with its
    own registered copy of the read address and of its write."""
    width = 137                                   # about the order table's entry
    dut = RegisteredRam(width, depth)
    frag = Fragment.get(dut, ECP5_SYNTH)
    cells = [sub for sub, _, _ in frag.subfragments if isinstance(sub, Instance)]
    blocks = [c for c in cells if c.type == "DP16KD"]
    assert len(blocks) == -(-width // bits_per)
    # The copies: one flip-flop per bit (`hdl.copies`), each block's read address and write.
    flops = {_bit_source(c.ports["Q"][0]): _bit_source(c.ports["D"][0])
             for c in cells if c.type == "FD1S3AX"}
    want_flops = {}
    for k in range(len(blocks)):
        want_flops |= {(f"read_addr_copy{k}", i): ("read_addr", i) for i in range(abits)}
        wc = f"write{k}_copy0"
        want_flops[(wc, 0)] = ("write_en", 0)
        want_flops |= {(wc, 1 + i): ("write_addr", i) for i in range(abits)}
        for i in range(bits_per):
            bit = bits_per * k + i
            want_flops[(wc, 1 + abits + i)] = (
                ("write_data", bit) if bit < width else 0)
    assert flops == want_flops
    wide = bits_per == 36
    low = 14 - abits
    for k, inst in enumerate(blocks):
        p = inst.parameters
        assert (p["DATA_WIDTH_A"], p["DATA_WIDTH_B"]) == (bits_per, bits_per)
        assert (p["REGMODE_A"], p["REGMODE_B"]) == ("OUTREG", "OUTREG")
        ports = {name: value for name, (value, _) in inst.ports.items()}
        wc = f"write{k}_copy0"
        # Data in: DIA then (36 wide) DIB; out: DOA then DOB, or (18 or 9 wide) DOB alone.
        pins_in = [f"DIA{i}" for i in range(min(bits_per, 18))] + [
            f"DIB{i}" for i in range(bits_per - 18)]
        for i, pin in enumerate(pins_in):
            assert _bit_source(ports[pin]) == (wc, 1 + abits + i), (k, pin)
        if not wide:
            assert not any(pin.startswith(("DIB", "DOA")) for pin in ports)
        # The address on pins 13 down; below them 0 or port A's byte enables (4 at 36 wide,
        # where WEA stays 1; 2 at 18), which carry the write enable.
        for i in range(abits):
            assert _bit_source(ports[f"ADA{low + i}"]) == (wc, 1 + i)
            assert _bit_source(ports[f"ADB{low + i}"]) == (f"read_addr_copy{k}", i)
        for i in range(low):
            assert _bit_source(ports[f"ADB{i}"]) == 0
            enables = {36: 4, 18: 2}.get(bits_per, 0)
            assert _bit_source(ports[f"ADA{i}"]) == ((wc, 0) if i < enables else 0)
        assert _bit_source(ports["WEA"]) == (1 if wide else (wc, 0))
        assert Value.cast(ports["WEB"]).value == 0
