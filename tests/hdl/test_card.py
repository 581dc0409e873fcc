"""The card in Verilator, configured and read over its register bus only (`sim.card_rtl`): a
strategy loaded through registers (`host.card_config.registers`) makes the card send the same
order frames as the core driven on its ports (`sim.core_rtl.CoreRtl`) and as the models, byte
for byte; nothing staged acts before its commit; the kill switches stop orders; host ops move
positions; tops, latency, counters and events read back as the models say."""

import random
from dataclasses import replace

import pytest

from hdl.card import ALL_SLOTS, EVENT_DEPTH, EventKind
from hdl.formats import BOOK_BUY, BookParams, Reject
from host.card_config import registers
from host.config import CardConfig
from host.model import pack
from host.model.book import TopUpdate
from host.model.order_frame import OrderTemplate, order_frame
from host.model.orders import OrderFlow
from host.model.risk import RiskModel
from host.model.trigger import TriggerModel
from sim.card_rtl import CardProgram, CardRtl
from sim.core_rtl import CoreRtl, book_schedule, run_book_model
from sim.feed_rtl import Schedule
from sim.market import MARKET_SYMBOLS, PACKERS, market_stream
from sim.tick import touch_config

PARAMS = BookParams(slots=4, sets=16, ways=2, levels=4)
SYMBOLS = MARKET_SYMBOLS[:PARAMS.slots]
TEMPLATE = OrderTemplate(dst_mac=0x0A0B0C0D0E0F, src_ip=0x0A000001, src_port=5555, ttl=17,
                         display="N", capacity="P")
DRAIN = 64 + 130 * 16          # the order queue empties onto the line
EVENT_WORDS = 5
OP_CYCLES = 3                  # a host op is in `positions` from this many cycles after apply


@pytest.fixture(scope="module")
def rtl() -> CardRtl:
    return CardRtl.shared(PARAMS)


# The days below are short (< 1M cycles) against the token buckets' periods (>= 125,000 cycles
# a token, a bucket holding >= 4): a bucket never refills a token during a run, so the bus
# cycles a program spends between frames (which move the card's timeline off the schedule's)
# cannot change a decision.


def day(seed: int, n: int, *, gaps: float = 0.0, bad_fcs: float = 0.0,
        rate: int = 40, clear_at: float | None = None) -> tuple[Schedule, CardConfig]:
    """A day of `n` messages, with an end of messages (S 'C': every book cleared, certain
    again) after the fraction `clear_at` of them."""
    rng = random.Random(seed)
    messages = market_stream(seed, n, SYMBOLS, max_levels=PARAMS.levels, max_live=16,
                             table=(PARAMS.sets, PARAMS.ways))
    if clear_at is not None:
        at = int(n * clear_at)
        messages.insert(at, PACKERS["S"].pack(b"S", 0, 0, 0, 0, b"C"))
    sched = book_schedule(messages, list(SYMBOLS), rng=rng, max_per_frame=8, gaps=gaps,
                          bad_fcs=bad_fcs)
    config = touch_config(run_book_model(sched, PARAMS).updates, SYMBOLS, rng, rate=rate)
    return sched, config


def load(p: CardProgram, sched: Schedule, config: CardConfig, *, commit: bool = True,
         **kw: object) -> None:
    """The card's configuration for `sched` and `config`, through registers."""
    p.write("net.own_mac", sched.own_mac)
    for name, value in registers(config, TEMPLATE, regmap=p.regmap, **kw):
        if commit or not name.endswith(".commit"):
            p.write(name, value)
    for i, s in enumerate(sched.subscriptions):
        if s is not None:
            for name, value in (("valid", 1), ("group", s.group), ("port", s.port),
                                ("session", int.from_bytes(s.session, "big")),
                                ("next_seq", s.next_seq)):
                p.write(f"subscriptions[{i}].{name}", value)
            if commit:
                p.write(f"subscriptions[{i}].commit", 0)


def traffic(p: CardProgram, sched: Schedule, reads_per_gap: int = 0) -> list[int]:
    """The schedule's frames with their gaps; in each gap, `reads_per_gap` event reads (bus
    cycles taken out of the idle gap, so the frames keep the schedule's spacing)."""
    handles = []
    for b in sched.bursts:
        assert not b.writes
        n = min(reads_per_gap, b.idle_before // EVENT_WORDS)
        handles += [p.read("events.data") for _ in range(n)]
        p.idle(b.idle_before - n * EVENT_WORDS)
        p.gmii(b.data, error_at=b.error_at)
    return handles


def model_events(updates: list[TopUpdate], config: CardConfig,
                 risk: RiskModel | None = None) -> tuple[list[tuple], list[tuple]]:
    """(decisions, flips) as the card's events show them: (kind, slot, side, qty, price,
    reason, index) for each risk decision, (kind, slot, index) for each uncertainty change."""
    triggers, risk = TriggerModel(config), risk or RiskModel(config)
    decisions, flips = [], []
    was = [False] * PARAMS.slots
    for u in updates:
        kind = EventKind.UNCERTAIN if u.uncertain else EventKind.CERTAIN
        if u.clear:
            if any(w != u.uncertain for w in was):
                flips.append((kind, ALL_SLOTS, u.index))
            was = [u.uncertain] * PARAMS.slots
        elif was[u.slot] != u.uncertain:
            flips.append((kind, u.slot, u.index))
            was[u.slot] = u.uncertain
        for it in triggers.update(u):
            reason = risk.check(it, u, u.rx_cycle)
            decisions.append((EventKind.ORDER_SENT if reason is Reject.NONE
                              else EventKind.ORDER_REJECTED, it.slot, int(it.side == "S"),
                              it.qty, it.price, reason, it.index))
    return decisions, flips


def split(events: list[dict[str, int]]) -> tuple[list[tuple], list[tuple], int]:
    """Read events as (decisions, flips, gaps), in the model_events form."""
    decisions, flips, gaps = [], [], 0
    for e in events:
        kind = EventKind(e["kind"])
        if kind in (EventKind.ORDER_SENT, EventKind.ORDER_REJECTED):
            decisions.append((kind, e["slot"], e["side"], e["qty"], e["price"],
                              Reject(e["reason"]), e["index"]))
        elif kind in (EventKind.UNCERTAIN, EventKind.CERTAIN):
            flips.append((kind, e["slot"], e["index"]))
        else:
            assert kind is EventKind.GAP
            gaps += 1
    return decisions, flips, gaps


def orders_after(updates: list[TopUpdate], config: CardConfig, start: int, shift: int,
                 next_ref: int = 1, kill: tuple[int, ...] = (),
                 kill_card_from: int | None = None) -> tuple[list[bytes], OrderFlow]:
    """The model's order frames for the updates from schedule cycle `start` on, which the card
    saw `shift` cycles later than the schedule says (bus accesses in between); slots `kill`
    killed, the card killed from schedule cycle `kill_card_from`."""
    flow = OrderFlow(config, TEMPLATE)
    flow.next_ref = next_ref
    for slot in kill:
        flow.risk.kill[slot] = True
    sent = []
    for u in updates:
        if u.rx_cycle < start:
            continue
        if kill_card_from is not None and u.rx_cycle >= kill_card_from:
            flow.risk.kill_card = True
        sent += flow.update(replace(u, rx_cycle=u.rx_cycle + shift))
    return [pack.with_fcs(order_frame(TEMPLATE, o.user_ref, o.side, o.qty, o.symbol, o.price))
            for o in sent], flow


def halves(sched: Schedule) -> tuple[Schedule, Schedule, int]:
    """The schedule's first and second halves, and the schedule cycle the second starts."""
    half = len(sched.bursts) // 2
    return (replace(sched, bursts=sched.bursts[:half]),
            replace(sched, bursts=sched.bursts[half:]), sched.start_cycles()[half])


def words(value: int, n: int) -> list[int]:
    return [value >> 32 * i & 0xFFFF_FFFF for i in range(n)]


def test_strategy_over_registers_is_the_core_on_its_ports(rtl: CardRtl) -> None:
    sched, config = day(11, 4000, gaps=0.01, bad_fcs=0.01, clear_at=0.7)
    model = run_book_model(sched, PARAMS, config, TEMPLATE)
    core = CoreRtl.shared(PARAMS).run(sched, config, TEMPLATE)
    assert model.orders is not None and core.orders is not None

    p = rtl.program()
    load(p, sched, config)
    during = traffic(p, sched, reads_per_gap=2)
    p.idle(DRAIN)
    counters = {name: p.read(name) for name in (
        "feed.frames_ok", "feed.gaps", "risk.killed", "risk.tx_frames",
        "risk.trigger_overruns", "book.updates", "events.overflow")}
    counters["risk.decisions"] = p.read("risk.decisions[0]", words=len(Reject))
    tops = [{name: p.read(f"tops[{s}].{name}") for name in (
        "bid_px", "bid_qty", "ask_px", "ask_qty", "uncertain", "halted", "state", "locate")}
        for s in range(PARAMS.slots)]
    opens = [(p.read(f"positions[{s}].open_buy"), p.read(f"positions[{s}].open_sell"))
             for s in range(PARAMS.slots)]
    latency = [{name: p.read(f"latency[{k}].{name}") for name in ("count", "last", "min", "max")}
               | {"bins": p.read(f"latency[{k}].bins[0]", words=32)} for k in range(2)]
    after = [p.read("events.data") for _ in range(EVENT_DEPTH + 1)]
    r = rtl.run(p)

    # The frames: the core's and the models', byte for byte (template from registers too).
    assert r.frames == core.orders.frames == model.orders.frames
    assert len(r.frames) >= 10, model.orders.counters
    n = {name: r.value(h) for name, h in counters.items()}
    decided = words(n["risk.decisions"], len(Reject))
    assert decided[Reject.NONE] == len(r.frames) == n["risk.tx_frames"]
    assert {k.name.lower(): v for k, v in zip(Reject, decided, strict=True)
            if k is not Reject.NONE and v} == model.orders.counters["rejects"]
    assert n["feed.frames_ok"] == model.counters["frames_ok"]
    assert n["feed.gaps"] == model.counters["gaps"] >= 1
    assert n["book.updates"] == model.book["updates"]
    assert n["risk.killed"] == n["risk.trigger_overruns"] == n["events.overflow"] == 0

    # Tops: each slot's last update (a clear: every slot's).
    want = [dict.fromkeys(tops[0], 0) | {"state": ord("T")} for _ in range(PARAMS.slots)]
    for u in model.updates:
        row = {"bid_px": u.bid_px, "bid_qty": u.bid_qty, "ask_px": u.ask_px,
               "ask_qty": u.ask_qty, "uncertain": int(u.uncertain), "halted": int(u.halted),
               "state": ord(u.state), "locate": u.locate}
        for s in range(PARAMS.slots) if u.clear else (u.slot,):
            want[s] = row
    assert [{k: r.value(h) for k, h in t.items()} for t in tops] == want

    # Open orders: every sent order, nothing filled.
    sent = model.orders.sent
    assert [(r.value(b), r.value(s)) for b, s in opens] == [
        (sum(o.qty for o in sent if o.slot == i and o.side == "B"),
         sum(o.qty for o in sent if o.slot == i and o.side == "S"))
        for i in range(PARAMS.slots)]

    # Latency: the core's samples, by kind.
    for kind, row in enumerate(latency):
        cycles = [c for add, c in core.orders.latency if add == (kind == 0)]
        got = {k: r.value(h) for k, h in row.items()}
        bins = [0] * 32
        for c in cycles:
            bins[min(c, 31)] += 1
        assert got == {"count": len(cycles), "last": cycles[-1] if cycles else 0,
                       "min": min(cycles, default=0xFFFF), "max": max(cycles, default=0),
                       "bins": sum(b << 32 * i for i, b in enumerate(bins))}, kind

    # Events: read in gaps and at the end, none lost, in order within each source.
    events = [rtl.regmap.decode_event(r.value(h)) for h in during + after]
    assert rtl.regmap.decode_event(r.value(after[-1]))["kind"] == EventKind.NONE.value
    events = [e for e in events if e["kind"] != EventKind.NONE.value]
    decisions, flips, gaps = split(events)
    want_decisions, want_flips = model_events(model.updates, config)
    assert decisions == want_decisions
    assert flips == want_flips
    assert {k for k, *_ in flips} == {EventKind.UNCERTAIN, EventKind.CERTAIN}
    assert (EventKind.CERTAIN, ALL_SLOTS) in {(k, slot) for k, slot, _ in flips}
    assert gaps == model.counters["gaps"]
    # FIFO order is the order things happened (sources of one cycle: decision, flip, gap).
    cycles = [e["cycle"] for e in events]
    assert cycles == sorted(cycles)


def test_nothing_staged_acts_before_its_commit(rtl: CardRtl) -> None:
    """Feed and watchlist committed, the strategy, limits and template only staged: the books
    update, no trigger fires. Then committed: orders, from the committed UserRefNum on."""
    sched, config = day(12, 3000, rate=1000)
    first, second, start = halves(sched)
    model = run_book_model(sched, PARAMS)

    p = rtl.program()
    load(p, sched, config, commit=False, next_user_ref=77)
    for name in ["subscriptions[0].commit", *(f"watchlist[{s}].commit" for s in range(4))]:
        p.write(name, 0)
    traffic(p, first)
    p.idle(DRAIN)
    staged = p.read("triggers[1].buy_below")
    live = [p.read(name, live=True) for name in (
        "triggers[1].buy_below", "triggers[1].armed", "limits.max_order_qty", "order.dst_mac")]
    ttl = p.read("order.ttl", live=True)
    updates, decisions = p.read("book.updates"), p.read("risk.decisions[none]")
    event = p.read("events.data")
    ref_staged = p.read("order.user_ref_next")
    p.write("triggers[2].armed", 0)             # staged too: slot 2 never fires
    for name in ["limits.commit", *(f"triggers[{s}].commit" for s in range(4)), "order.commit"]:
        p.write(name, 0)
    third, fourth, _ = halves(second)
    traffic(p, third)
    p.write("order.commit", 0)                  # no next_user_ref written: the count goes on
    traffic(p, fourth)
    p.idle(DRAIN)
    ref_end = p.read("order.user_ref_next")
    r = rtl.run(p)

    assert r.value(staged) == config.instruments[1].buy_below
    assert [r.value(h) for h in live] == [0, 0, 0, 0] and r.value(ttl) == 64
    assert r.value(updates) > 0
    assert r.value(decisions) == 0 and r.value(event) == 0
    disarmed = replace(config, instruments=tuple(
        replace(inst, buy_below=None, sell_above=None) if slot == 2 else inst
        for slot, inst in enumerate(config.instruments)))
    want, _ = orders_after(model.updates, disarmed, start, 0, next_ref=77)
    assert len(want) > 4 and r.frames == want
    # The UserRefNum the card shows next: the staged 77 did not count; after the orders, the
    # one after the last frame's (the commit without next_user_ref in between kept counting).
    assert (r.value(ref_staged), r.value(ref_end)) == (1, 77 + len(want))
    armed, _ = orders_after(model.updates, config, start, 0, next_ref=77)
    assert armed != want            # slot 2 armed would have sent orders


def test_kill_switches(rtl: CardRtl) -> None:
    """Slot 1 killed from the start: its intents are refused; the card-wide kill set between
    the two halves of the day stops every order from then on."""
    sched, config = day(13, 3000, rate=1000)
    first, second, start = halves(sched)
    model = run_book_model(sched, PARAMS)

    p = rtl.program()
    load(p, sched, config)
    p.write("triggers[1].kill", 1)
    traffic(p, first)
    p.idle(DRAIN)           # the queue empties: a kill would discard what waits there
    p.write("limits.kill", 1)
    traffic(p, second)
    p.idle(DRAIN)
    decisions = p.read("risk.decisions[0]", words=len(Reject))
    killed = p.read("risk.killed")
    r = rtl.run(p)

    want, flow = orders_after(model.updates, config, 0, 0, kill=(1,), kill_card_from=start)
    assert want and r.frames == want
    decided = words(r.value(decisions), len(Reject))
    assert decided[Reject.KILL_INSTRUMENT] == flow.risk.count["kill_instrument"] > 0
    assert decided[Reject.KILL_CARD] == flow.risk.count["kill_card"] > 0
    assert decided[Reject.NONE] == len(want)
    assert r.value(killed) == 0


def test_host_ops_move_positions(rtl: CardRtl) -> None:
    p = rtl.program()

    def op(kind: int, slot: int, side: int, qty: int) -> None:
        for name, value in (("kind", kind), ("slot", slot), ("side", side), ("qty", qty)):
            p.write(f"host_op.{name}", value)
        p.write("host_op.apply", 0)
        p.idle(OP_CYCLES - 1)

    reads = []
    op(1, 2, BOOK_BUY, 300)                       # fill 300 bought: position +300
    reads.append(p.read("positions[2].position"))
    op(1, 2, 1, 500)                              # fill 500 sold: -200
    reads.append(p.read("positions[2].position"))
    op(2, 3, 0, (-1234) & 0xFFFF_FFFF)            # load -1234
    reads.append(p.read("positions[3].position"))
    op(0, 2, 0, 10)                               # release: no open order, stays 0
    reads.append(p.read("positions[2].open_buy"))
    reads.append(p.read("positions[2].position"))
    reads.append(p.read("positions[0].position"))
    # Not sooner: the read in the cycle before still sees the position before the op.
    p.write("host_op.qty", 7).write("host_op.kind", 2).write("host_op.slot", 3)
    p.write("host_op.apply", 0)
    p.idle(OP_CYCLES - 2)
    reads.append(p.read("positions[3].position"))
    reads.append(p.read("positions[3].position"))
    r = rtl.run(p)
    assert [r.value(h) for h in reads] == [300, (-200) & 0xFFFF_FFFF, (-1234) & 0xFFFF_FFFF,
                                          0, (-200) & 0xFFFF_FFFF, 0, (-1234) & 0xFFFF_FFFF, 7]


def test_event_overflow_is_counted_and_the_oldest_kept(rtl: CardRtl) -> None:
    """Nobody reads during a day with more events than the FIFO holds: the first EVENT_DEPTH
    stay (each source's in its order), the rest are counted as lost; then the FIFO reads
    empty, and a fill is applied to an order's slot."""
    sched, config = day(14, 4000, gaps=0.02, rate=1000)
    model = run_book_model(sched, PARAMS, config, TEMPLATE)
    assert model.orders is not None
    p = rtl.program()
    load(p, sched, config)
    traffic(p, sched)
    p.idle(DRAIN)
    level, overflow = p.read("events.level"), p.read("events.overflow")
    events = [p.read("events.data") for _ in range(EVENT_DEPTH + 2)]
    level_after = p.read("events.level")
    o = model.orders.sent[0]
    side = int(o.side == "S")
    p.write("host_op.kind", 1).write("host_op.slot", o.slot).write("host_op.side", side)
    p.write("host_op.qty", 1).write("host_op.apply", 0)
    p.idle(OP_CYCLES - 1)
    position = p.read(f"positions[{o.slot}].position")
    still_open = p.read(f"positions[{o.slot}].{('open_buy', 'open_sell')[side]}")
    r = rtl.run(p)

    read = [rtl.regmap.decode_event(r.value(h)) for h in events]
    assert [e["kind"] for e in read[EVENT_DEPTH:]] == [EventKind.NONE.value] * 2
    decisions, flips, gaps = split(read[:EVENT_DEPTH])
    want_decisions, want_flips = model_events(model.updates, config)
    total = len(want_decisions) + len(want_flips) + model.counters["gaps"]
    assert total > EVENT_DEPTH + 10
    assert r.value(level) == EVENT_DEPTH and r.value(level_after) == 0
    assert r.value(overflow) == total - EVENT_DEPTH
    assert decisions == want_decisions[:len(decisions)]
    assert flips == want_flips[:len(flips)]
    assert gaps <= model.counters["gaps"]
    opened = sum(x.qty for x in model.orders.sent if (x.slot, x.side) == (o.slot, o.side))
    assert r.value(position) == (1 if side == BOOK_BUY else 0xFFFF_FFFF)
    assert r.value(still_open) == opened - 1
