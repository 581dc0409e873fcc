"""The latency counters in Amaranth's simulator against `host.model.latency`, on random samples
of both kinds, including ones past the last bin and saturated ones."""

import random

from amaranth.sim import Simulator

from hdl.formats import LATENCY_BINS, LATENCY_KINDS
from hdl.latency import LatencyCounters
from host.model.latency import CYCLE_MAX, KindStats, LatencyModel


def test_counters_match_the_model() -> None:
    rng = random.Random(1)
    samples = [(rng.randrange(len(LATENCY_KINDS)),
                rng.choice([0, 3, 5, 8, LATENCY_BINS - 1, LATENCY_BINS, 500, CYCLE_MAX,
                            rng.randrange(LATENCY_BINS)]))
               for _ in range(300)]
    model = LatencyModel()
    for kind, cycles in samples:
        model.sample(LATENCY_KINDS[kind], cycles)
    dut = LatencyCounters()
    got: dict[str, KindStats] = {}

    async def bench(ctx):
        for s in LATENCY_KINDS:
            assert ctx.get(dut.stats[LATENCY_KINDS.index(s)].min) == CYCLE_MAX
        for kind, cycles in samples:
            ctx.set(dut.sample.payload, {"kind": kind, "cycles": cycles})
            ctx.set(dut.sample.valid, rng.random() < 0.7)
            if not ctx.get(dut.sample.valid):
                await ctx.tick()
                ctx.set(dut.sample.valid, 1)
            await ctx.tick()
        ctx.set(dut.sample.valid, 0)
        await ctx.tick()
        for i, name in enumerate(LATENCY_KINDS):
            st = dut.stats[i]
            got[name] = KindStats(ctx.get(st.count), ctx.get(st.last), ctx.get(st.min),
                                  ctx.get(st.max),
                                  [ctx.get(st.histogram[b]) for b in range(LATENCY_BINS)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == model.stats
    assert all(s.count for s in got.values())
