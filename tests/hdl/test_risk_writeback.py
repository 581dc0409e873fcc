"""The risk gate's token-bucket write-back against `host.model.risk` when a limits load (which
makes every bucket full, and may change the rates) lands while an intent is in flight: in its
acceptance cycle or in any cycle of the exact path before its decision. The gate computes a
take's new full_at ahead of the write-back from a snapshot of the bucket; such a load makes the
snapshot stale, and the take must start from the full bucket at the new rate, as the model does
when the load comes before the check. Later intents, close together, show the bucket by which
of them the throttle refuses."""

import random

import pytest
from amaranth import Module, Signal, signed
from amaranth.sim import Simulator

from hdl.formats import Reject
from hdl.risk import _CYCLE, RiskGate, reached
from host.config import CardConfig, Instrument, Limits
from host.model.book import TopUpdate
from host.model.risk import Bucket, RiskModel
from host.model.trigger import TriggerModel
from sim.tick import TickPath

SLOTS = 2
CLOCK = 600
PX = 1_000_000


def config(rate: int, notional: int) -> CardConfig:
    inst = Instrument("S0", min_qty=0, order_qty=100, max_position=10**6, reference_px=PX,
                      collar=10_000, buy_below=PX, max_orders_per_second=rate)
    return CardConfig(Limits(1000, notional, 100), (inst,))


def run(fast: bool, load_at: int, new_rate: int) -> list[tuple[int, Reject]]:
    """Buy intents at `fires` (cycles from the first update); a load `load_at` cycles after the
    second intent's update (its acceptance), which sets the slot's rate to `new_rate`."""
    # The fast path needs order_qty x (reference_px + collar) within max_order_notional.
    notional = 10**12 if fast else 100 * PX
    before, after = config(3, notional), config(new_rate, notional)
    fires = [0, 40, *range(60, 200, 20)]
    loaded = fires[1] + load_at
    dut = TickPath(SLOTS)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    model_t, model_r = TriggerModel(before), RiskModel(before, clock_hz=CLOCK)
    want: list[Reject] = []
    got: list[tuple[int, Reject]] = []
    gate = dut.gate

    async def bench(ctx):
        dut.configure(ctx, before, CLOCK)
        ctx.set(gate.order.ready, 1)
        ctx.set(gate.load, 1)
        await ctx.tick()
        ctx.set(gate.load, 0)
        # Long enough for notional_safe to be worked out for every slot.
        await ctx.tick().repeat(20)
        # An update on each fire cycle (ask at the threshold) and one between (no ask), so
        # that each fire is an edge.
        events = sorted({c for f in fires for c in (f, f + 10)})
        index = 0
        for cycle in range(fires[-1] + 20):
            if cycle == loaded:
                dut.configure(ctx, after, CLOCK)
            ctx.set(gate.load, cycle == loaded)
            on = cycle in fires
            if cycle in events:
                u = TopUpdate(0, 7, 0, 0, PX if on else 0, 100 if on else 0, False, False, "T",
                              index, cycle)
                index += 1
                for intent in model_t.update(u):
                    # The model checks the in-flight intent after the load when the gate's
                    # load comes before its decision (the check itself passes either way).
                    if cycle == fires[1]:
                        model_r.card_bucket = Bucket(after.limits.max_orders_per_second, CLOCK)
                        model_r.buckets = [Bucket(new_rate, CLOCK)]
                    want.append(model_r.check(intent, u, u.rx_cycle))
                ctx.set(dut.trigger.update.payload, {
                    "slot": 0, "locate": 7, "ask_px": u.ask_px, "ask_qty": u.ask_qty,
                    "state": ord("T"), "index": u.index, "rx_cycle": u.rx_cycle})
            ctx.set(dut.trigger.update.valid, cycle in events)
            ctx.set(dut.trigger.next_slot, 0)
            ctx.set(gate.next_rx_cycle, cycle + 1)      # the book names it a cycle early
            if ctx.get(gate.decision.valid):
                got.append((cycle, Reject(ctx.get(gate.decision.payload.reason))))
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    assert [r for _, r in got] == want
    return got


@pytest.mark.parametrize("new_rate", [3, 2, 5])
@pytest.mark.parametrize("fast, load_at", [(True, 0), (False, 0), (False, 1), (False, 2),
                                           (False, 3)])
def test_load_while_a_take_is_in_flight(fast: bool, load_at: int, new_rate: int) -> None:
    got = run(fast, load_at, new_rate)
    # The in-flight intent took the path meant (decided 1 or 4 cycles after its update) and
    # was sent; the throttle refuses some of the later, close intents: the bucket's state
    # after the take is visible.
    assert got[1] == (40 + (RiskGate.LATENCY if fast else RiskGate.EXACT_LATENCY), Reject.NONE)
    assert got[0][1] is Reject.NONE
    assert Reject.RATE_INSTRUMENT in [r for _, r in got[2:]]


def test_token_check_split_compare_is_greater_or_equal() -> None:
    """`hdl.risk.reached` (the fast path's token check, three 24-bit compares side by side) is
    exactly rx >= thr for a signed threshold, at the 24-bit seams and the extremes."""
    rx, thr = Signal(48), Signal(signed(_CYCLE + 2))
    out = Signal()
    m = Module()
    m.d.comb += out.eq(reached(rx, thr))
    lo, hi = -(1 << (_CYCLE + 1)), (1 << (_CYCLE + 1)) - 1
    seams = [0, 1, (1 << 24) - 1, 1 << 24, (1 << 24) + 1, (1 << 48) - 1, 1 << 48, lo, hi, -1]
    rng = random.Random(3)
    cases = [(r, t) for r in seams if 0 <= r < 1 << 48 for t in seams]
    cases += [(r, r + d) for r in (0, 5 << 24, (1 << 48) - 1) for d in (-1, 0, 1, 1 << 24)
              if lo <= r + d <= hi]
    for _ in range(400):
        r = rng.getrandbits(48)
        t = r + rng.choice([0, 1, -1, rng.randint(-(1 << 30), 1 << 30),
                            (rng.randint(-3, 3) << 24)])
        cases.append((r, max(lo, min(hi, t))))

    async def bench(ctx):
        for r, t in cases:
            ctx.set(rx, r)
            ctx.set(thr, t)
            assert ctx.get(out) == int(r >= t), (r, t)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
