"""`hdl.ebr.RegisteredRam`: its simulated behaviour against a plain Python memory (two cycles
from address to data, a write seen by reads from the next cycle on), and its ECP5 form: the
DP16KD blocks, their output registers on, and every data and address bit on the pin Yosys'
own 512 x 36 mapping uses."""

import random

from amaranth import Const, Instance, Signal, Value
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hdl.ebr import EBR_WIDTH, RegisteredRam
from tools.synth import ECP5_SYNTH

WIDTH, DEPTH = 80, 64


def test_reads_two_cycles_after_their_address() -> None:
    rng = random.Random(3)
    dut = RegisteredRam(WIDTH, DEPTH)
    mem = [0] * DEPTH
    steps = [(rng.randrange(DEPTH), rng.random() < 0.4, rng.randrange(DEPTH),
              rng.getrandbits(WIDTH)) for _ in range(2000)]

    async def bench(ctx):
        expect: list[int | None] = [None, None]
        for raddr, wen, waddr, wdata in steps:
            ctx.set(dut.read_addr, raddr)
            ctx.set(dut.write_en, wen)
            ctx.set(dut.write_addr, waddr)
            ctx.set(dut.write_data, wdata)
            if expect[0] is not None:
                assert ctx.get(dut.read_data) == expect[0]
            # The read takes the memory as it is before this cycle's write.
            expect = [expect[1], mem[raddr]]
            if wen:
                mem[waddr] = wdata
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
    blocks = [sub for sub, _, _ in frag.subfragments if isinstance(sub, Instance)]
    assert len(blocks) == -(-width // EBR_WIDTH)
    for k, inst in enumerate(blocks):
        assert inst.type == "DP16KD"
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
        for i in range(9):
            assert _bit_source(ports[f"ADA{5 + i}"]) == ("write_addr", i)
            assert _bit_source(ports[f"ADB{5 + i}"]) == ("read_addr", i)
        for i in range(4):
            assert _bit_source(ports[f"ADA{i}"]) == ("write_en", 0)
        assert Value.cast(ports["WEB"]).value == 0
