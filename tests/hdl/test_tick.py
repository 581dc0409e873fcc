"""Triggers and the risk gate in Amaranth's simulator, against `host.model.trigger` and
`host.model.risk`: every decision (intent, reason) the same and in the same order, the same
positions, open orders and counters, over random limits, random top-of-book streams, host fills
and releases, and kill and reduce-only switches."""

import random

import pytest
from amaranth.sim import Simulator

from hdl.formats import BOOK_BUY, HostOpKind, Reject
from hdl.risk import HostOp
from host.config import CardConfig, Instrument, Limits
from host.model.book import TopUpdate
from host.model.risk import RiskModel
from host.model.trigger import TriggerModel
from sim.tick import TickPath

SLOTS = 4
CLOCK = 600          # a slow card clock: the throttle bites within a short run
GATE_DEPTH = 5       # cycles from an update to its decisions being done


def random_config(rng: random.Random) -> CardConfig:
    mid = 1_000_000
    instruments = []
    for i in range(rng.randint(1, SLOTS)):
        instruments.append(Instrument(
            symbol=f"S{i}", min_qty=rng.choice([0, 100, 300]),
            order_qty=rng.choice([100, 250, 1000]), max_position=rng.choice([0, 500, 3000]),
            reference_px=mid, collar=rng.choice([0, 5000, 50000]),
            buy_below=rng.choice([None, mid - 1000, mid + 2000]),
            sell_above=rng.choice([None, mid + 1000, mid - 2000]),
            max_orders_per_second=rng.choice([None, 2, 5])))
    return CardConfig(Limits(max_order_qty=rng.choice([200, 800]),
                             max_order_notional=rng.choice([150_000_000, 1_000_000_000]),
                             max_orders_per_second=rng.choice([3, 10])), tuple(instruments))


def random_updates(rng: random.Random, n: int, slots: int) -> list[TopUpdate]:
    out = []
    for index in range(n):
        if rng.random() < 0.02:
            out.append(TopUpdate(0, 0, 0, 0, 0, 0, False, False, "T", index, 0, clear=True))
            continue
        # On a 1000 grid, so prices land exactly on the thresholds and collar edges too.
        px = [0 if rng.random() < 0.1 else 1_000_000 + 1000 * rng.randint(-6, 6) for _ in "ba"]
        qty = [0 if p == 0 else rng.choice([50, 100, 200, 400, 700, 1200]) for p in px]
        halted = rng.random() < 0.05
        out.append(TopUpdate(rng.randrange(slots + 1) % SLOTS, 7, px[0], qty[0], px[1], qty[1],
                             rng.random() < 0.05, halted, "H" if halted else "T", index, 0))
    return out


def run(config: CardConfig, updates: list[TopUpdate], rng: random.Random,
        ops: bool = True, gaps: list[int] | None = None,
        first: tuple[tuple[HostOpKind, int, str, int], ...] = (),
        reduce_only: int = 0, loads: tuple[int, ...] = ()) -> list[tuple]:
    """Drive both (update k followed by gaps[k] idle cycles, random without `gaps`; host ops
    `first` before the first; `reduce_only` slots; a reload of the limits before each update
    in `loads`); compare decisions, state and counters; return the decisions."""
    dut = TickPath(SLOTS)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    model_t, model_r = TriggerModel(config), RiskModel(config, clock_hz=CLOCK)
    want: list[tuple] = []
    got: list[tuple] = []
    gate = dut.gate

    async def bench(ctx):
        dut.configure(ctx, config, CLOCK)
        ctx.set(gate.order.ready, 1)
        def ahead(i: int) -> None:
            """The book names the next update's slot early (`OrderBook.next_slot`)."""
            if i < len(updates):
                ctx.set(dut.trigger.next_slot, updates[i].slot)

        ctx.set(gate.load, 1)
        ahead(0)
        await ctx.tick()
        ctx.set(gate.load, 0)
        ctx.set(gate.reduce_only, reduce_only)
        model_r.reduce_only = [bool(reduce_only >> i & 1) for i in range(len(config.instruments))]
        cycle = 1

        async def host_op(kind: HostOpKind, slot: int, side: str, qty: int) -> None:
            """A fill or release, in the model and on the gate's host_op (one cycle)."""
            (model_r.fill if kind is HostOpKind.FILL else model_r.release)(slot, side, qty)
            ctx.set(gate.host_op.payload, HostOp.const(
                {"kind": kind, "slot": slot, "side": side == "S", "qty": qty}))
            ctx.set(gate.host_op.valid, 1)
            await ctx.tick()
            ctx.set(gate.host_op.valid, 0)

        for op in first:
            await host_op(*op)
            cycle += 1
        for u in updates:
            # Between updates (gate idle): host ops and switches, in both.
            if ops and rng.random() < 0.2:
                await host_op(rng.choice([HostOpKind.RELEASE, HostOpKind.FILL]),
                              rng.randrange(len(config.instruments)), rng.choice("BS"),
                              rng.choice([50, 100, 600]))
                cycle += 1
            if ops and rng.random() < 0.05:
                model_r.kill_card = not model_r.kill_card
                ctx.set(gate.kill_card, model_r.kill_card)
            if ops and rng.random() < 0.05:
                slot = rng.randrange(len(config.instruments))
                model_r.reduce_only[slot] = not model_r.reduce_only[slot]
                ctx.set(gate.reduce_only, sum(1 << s for s, on in enumerate(model_r.reduce_only)
                                              if on))
            if ops and rng.random() < 0.05:
                slot = rng.randrange(len(config.instruments))
                model_r.kill[slot] = not model_r.kill[slot]
                ctx.set(gate.kill, sum(1 << s for s, on in enumerate(model_r.kill) if on))
            if u.index in loads:
                # The host's commit of the same limits: every bucket full again, as a new
                # model's.
                fresh = RiskModel(config, clock_hz=CLOCK)
                model_r.card_bucket, model_r.buckets = fresh.card_bucket, fresh.buckets
                ctx.set(gate.load, 1)
                await ctx.tick()
                ctx.set(gate.load, 0)
                cycle += 1
            u = TopUpdate(u.slot, u.locate, u.bid_px, u.bid_qty, u.ask_px, u.ask_qty,
                          u.uncertain, u.halted, u.state, u.index, cycle, u.clear)
            for intent in model_t.update(u):
                reason = model_r.check(intent, u, u.rx_cycle)
                want.append((intent.slot, intent.side, intent.qty, intent.price, intent.index,
                             reason))
            ctx.set(dut.trigger.update.payload, {
                "slot": u.slot, "locate": u.locate, "bid_px": u.bid_px, "bid_qty": u.bid_qty,
                "ask_px": u.ask_px, "ask_qty": u.ask_qty, "uncertain": u.uncertain,
                "halted": u.halted, "clear": u.clear, "state": ord(u.state), "index": u.index,
                "rx_cycle": u.rx_cycle})
            ctx.set(dut.trigger.update.valid, 1)
            await ctx.tick()
            ctx.set(dut.trigger.update.valid, 0)
            ahead(u.index + 1)
            gap = gaps[u.index] if gaps else rng.randint(14, 30)
            await ctx.tick().repeat(gap)
            cycle += 1 + gap
        await ctx.tick().repeat(GATE_DEPTH + 1)
        await read(ctx)

    async def watch(ctx):
        async for _, _, valid, payload in ctx.tick().sample(gate.decision.valid,
                                                            gate.decision.payload):
            if valid:
                it = payload.intent
                got.append((it.slot, "B" if it.side == BOOK_BUY else "S", it.qty, it.price,
                            it.index, Reject(payload.reason)))

    state: dict[str, object] = {}

    async def read(ctx):
        n = len(config.instruments)
        state["position"] = [ctx.get(gate.position[i]) for i in range(n)]
        state["open"] = [[ctx.get(gate.open[i][s]) for s in (0, 1)] for i in range(n)]
        state["counters"] = {r.name.lower(): ctx.get(gate.counters[r]) for r in Reject}

    async def rx_ahead(ctx):
        """The book names an update's RX cycle the cycle before it (`next_rx_cycle`); here an
        update's RX cycle is the cycle it is valid in, counted as `bench` counts them."""
        ctx.set(gate.next_rx_cycle, 1)
        n = 0
        async for _ in ctx.tick():
            n += 1
            ctx.set(gate.next_rx_cycle, n + 1)

    sim.add_testbench(bench)
    sim.add_testbench(watch, background=True)
    sim.add_testbench(rx_ahead, background=True)
    sim.run()
    assert got == want
    assert state["position"] == model_r.position
    assert state["open"] == model_r.open
    assert state["counters"] == model_r.count
    return got


@pytest.mark.parametrize("seed", range(6))
def test_gateware_decides_as_the_models(seed: int) -> None:
    rng = random.Random(seed)
    config = random_config(rng)
    run(config, random_updates(rng, 400, len(config.instruments)), rng)


@pytest.mark.parametrize("delta", [299, 300])
def test_throttle_to_the_cycle(delta: int) -> None:
    """Rate 2 a "second" of CLOCK cycles: a bucket of 2 tokens, one every 300 cycles. Orders at
    cycles 0 and 40 leave 40 cycles of credit; the third is refused at 299 and sent at 300."""
    inst = Instrument("S0", min_qty=0, order_qty=100, max_position=10_000,
                      reference_px=1_000_000, collar=10_000, buy_below=1_000_000)
    config = CardConfig(Limits(100, 10**12, 2), (inst,))

    def update(index: int, on: bool) -> TopUpdate:
        return TopUpdate(0, 7, 0, 0, 1_000_000 if on else 0, 100 if on else 0, False, False,
                         "T", index, 0)

    updates = [update(i, i % 2 == 0) for i in range(5)]
    # Update k + 1 comes 1 + gaps[k] cycles after update k: fires at 0, 40 and delta.
    gaps = [19, 19, 19, delta - 61, 20]
    got = run(config, updates, random.Random(0), ops=False, gaps=gaps)
    third = Reject.RATE_CARD if delta < 300 else Reject.NONE
    assert [r for *_, r in got] == [Reject.NONE, Reject.NONE, third]


def test_a_reload_fills_every_bucket() -> None:
    """The instrument's bucket: 2 tokens, one per 300 cycles. Fires at 0 and 40 empty it and
    the one at 80 is refused; a reload of the limits before the fourth fills it again (the
    gate keeps each slot's bucket in LUT RAM, which a load cannot clear in a cycle)."""
    inst = Instrument("S0", min_qty=0, order_qty=100, max_position=10_000,
                      reference_px=1_000_000, collar=10_000, buy_below=1_000_000,
                      max_orders_per_second=2)
    config = CardConfig(Limits(100, 10**12, 100), (inst,))
    updates = [TopUpdate(0, 7, 0, 0, 1_000_000 if i % 2 == 0 else 0, 100 if i % 2 == 0 else 0,
                         False, False, "T", i, 0) for i in range(7)]
    got = run(config, updates, random.Random(0), ops=False, gaps=[19] * 7, loads=(5,))
    assert [r for *_, r in got] == [Reject.NONE, Reject.NONE, Reject.RATE_INSTRUMENT,
                                    Reject.NONE]


def test_reduce_only_allows_exactly_flat() -> None:
    """Short 100 (a sell filled) and reduce-only: buying 100 makes flat and is sent; the next
    100 would go long (with the first still open) and is refused."""
    inst = Instrument("S0", min_qty=0, order_qty=100, max_position=10_000,
                      reference_px=1_000_000, collar=10_000, buy_below=1_000_000)
    config = CardConfig(Limits(1000, 10**12, 100), (inst,))
    updates = [TopUpdate(0, 7, 0, 0, 1_000_000 if i % 2 == 0 else 0, 100 if i % 2 == 0 else 0,
                         False, False, "T", i, 0) for i in range(3)]
    got = run(config, updates, random.Random(0), ops=False, gaps=[20] * 3,
              first=((HostOpKind.FILL, 0, "S", 100),), reduce_only=1)
    assert [r for *_, r in got] == [Reject.NONE, Reject.REDUCE_ONLY]


def test_both_sides_of_one_update_are_checked_at_its_cycle():
    """A crossed strategy fires buy and sell on one update; the model checks both at the
    update's RX cycle, the sell after the buy's take. Bucket: 2 tokens, one per 300 cycles.
    Update 0 takes both; 598 cycles later the buy finds 598 cycles of credit and takes 300, and
    the sell finds 298: refused, however long after the buy the gate looks at it."""
    inst = Instrument("S0", min_qty=0, order_qty=100, max_position=10_000,
                      reference_px=1_000_000, collar=10_000, buy_below=1_000_000,
                      sell_above=999_000)
    config = CardConfig(Limits(100, 10**12, 2), (inst,))

    def update(index: int, on: bool) -> TopUpdate:
        px = (999_000, 1_000_000) if on else (0, 0)
        return TopUpdate(0, 7, px[0], 100 * on, px[1], 100 * on, False, False, "T", index, 0)

    got = run(config, [update(0, True), update(1, False), update(2, True)], random.Random(0),
              ops=False, gaps=[19, 577, 20])
    assert [(side, r) for _, side, *_, r in got] == [
        ("B", Reject.NONE), ("S", Reject.NONE), ("B", Reject.NONE), ("S", Reject.RATE_CARD)]


@pytest.mark.parametrize("side", "BS")
@pytest.mark.parametrize("reduce", [False, True])
@pytest.mark.parametrize("over", [0, 1])
def test_exposure_bounds_to_the_share(side: str, reduce: bool, over: int) -> None:
    """Two orders of 100 the same way, the first still open when the second comes: the second's
    exposure that way (position + open + order) lands exactly on its bound (sent) or one share
    over it (refused). The bound is max_position, or 0 under reduce-only with the position the
    other way. The touched level shows 5,000 shares, far over what is left, so the bound on
    order_qty alone decides (the gate's `oq_ok`, checked ahead of the update)."""
    buy = side == "B"
    inst = Instrument("S0", min_qty=0, order_qty=100,
                      max_position=10_000 if reduce else 500 - over, reference_px=1_000_000,
                      collar=10_000, buy_below=1_000_000 if buy else None,
                      sell_above=None if buy else 1_000_000)
    config = CardConfig(Limits(1000, 10**12, 100), (inst,))
    # Under reduce-only the position is against the orders (200 - over), else with them (300).
    toward = "S" if buy == reduce else "B"
    fill = (HostOpKind.FILL, 0, toward, 200 - over if reduce else 300)

    def update(index: int, on: bool) -> TopUpdate:
        px, qty = (1_000_000, 5000) if on else (0, 0)
        bid, ask = ((0, 0), (px, qty)) if buy else ((px, qty), (0, 0))
        return TopUpdate(0, 7, *bid, *ask, False, False, "T", index, 0)

    got = run(config, [update(i, i % 2 == 0) for i in range(3)], random.Random(0), ops=False,
              gaps=[20] * 3, first=(fill,), reduce_only=int(reduce))
    refused = Reject.REDUCE_ONLY if reduce else Reject.MAX_POSITION
    assert [r for *_, r in got] == [Reject.NONE, refused if over else Reject.NONE]
