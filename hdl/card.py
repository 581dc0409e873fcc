"""The card: the core (`hdl.core.Core`) behind its register bank, and the event FIFO.

    bus (host) -> RegisterBank(card_map) -> configuration ports of Core
                                          <- state ports of Core, `tops`, the event FIFO
    gmii -> Core -> gmii_tx

Ports: `bus` (the host's register bus, `hdl.regs.BusSignature`), `gmii` (RX pins), `gmii_tx`
(TX pins). What each register block does here (names: `hdl.regmap`):

| block            | wiring                                                                     |
|------------------|----------------------------------------------------------------------------|
| `net`            | `own_mac`, `fcs_safe`                                                      |
| `subscriptions`  | a row's commit: one `sub_write` beat with the row's live values             |
| `watchlist`      | a row's commit: one `watch_write` beat (slot = row) with its live values    |
| `limits`         | live values: `card_limits`; `reduce_only`, `kill` -> the card's switches     |
| `triggers`       | live values: `triggers` (buy/sell_enable ANDed with `armed`), `slot_limits`, |
|                  | `reduce_only` and `kill` per slot. A commit of `limits` or of any `triggers` |
|                  | row raises `limits_load`: every token bucket starts full                    |
| `host_op`        | `apply`: one `host_op` beat of the row's values, held until the gate takes it |
| `order`          | live values: `order_template`; a commit after a write of `next_user_ref`     |
|                  | pulses `set_user_ref` (a commit without one keeps the UserRefNum count);    |
|                  | `user_ref_next` reads the UserRefNum the next order frame takes            |
| `positions`      | the gate's `position` and `open` per slot                                  |
| `tops`           | registers here: each slot's last `update` (a clear: every slot's, quote 0)  |
| `feed`, `book`, `risk`, `latency` | the core's counters                                         |
| `events`         | the event FIFO (below)                                                    |

Commit beats are never lost: a commit strobe marks its row pending and the lowest pending row
goes out each cycle (a one-word bus commits at most one row a cycle, so none ever waits).

`host_op`: the risk gate takes an op only while no intent is in flight (`HostOp` changes
positions under its pipeline otherwise), so the op's values are latched at `apply` and offered
until `ready`: a few cycles at most. An idle gate shows the op in `positions` 3 cycles after the
bus write of `apply` (a read in the cycle after that write still sees the old value). An `apply`
while one still waits replaces it (the host cannot write the next op's registers that fast over
one-word accesses).

The host's own frames (`host_tx`) are tied off: injection over registers is not built yet.

Events (`Event`, pushed into a `SyncFIFO` of `EVENT_DEPTH`): every risk decision (ORDER_SENT or
ORDER_REJECTED with its reason), each MoldUDP64 gap (the feed's `gaps` counter moving), and a
slot's `uncertain` flag rising (UNCERTAIN) or falling (CERTAIN) between its updates; a clear
that changes any slot's flag is one event for every slot (`slot` = `ALL_SLOTS`). Sources can
coincide (a decision, an update and a gap in one cycle), so each has a one-event holding
register, emptied into the FIFO in that order of priority; each source makes at most one
event in 5 cycles (updates are >= 14 apart, decisions >= 5), so a holding register is always
empty again in time. A full FIFO drops the event and counts it in `events.overflow`.

Reading `events.data`'s low word pops: the read of the bus itself is decoded here, so the pop
happens at the edge that registers the read data (the bank's `data_read` strobe would come a
cycle later, and a second low-word read in the very next cycle would get the same event).
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, fifo, wiring
from amaranth.lib.wiring import In, Out

from hdl.beats import Subscription
from hdl.book import WatchWrite
from hdl.core import Core
from hdl.formats import BOOK_COUNTERS, LATENCY_KINDS, BookParams, Reject
from hdl.mac_rx import GmiiRx
from hdl.mac_tx import GmiiTx
from hdl.order_builder import TemplateLayout
from hdl.regmap import EVENT_BITS, card_map
from hdl.regs import BusSignature, RegisterBank

__all__ = ["Card", "Event", "EventKind", "EVENT_DEPTH", "ALL_SLOTS", "event_fields"]

# Events the host has not read yet. The host reads an event in ~5 word reads; bursts it cannot
# follow are short: decisions are bounded by the rate throttle, uncertainty flips by gaps and
# clears (one event per slot and flip), gaps by frames. 64 holds every slot of a 16-slot card
# flipping twice plus a throttle's burst of orders, in LUT RAM or one EBR column; beyond that
# the loss is counted (`overflow`) and the counters stay exact.
EVENT_DEPTH = 64
ALL_SLOTS = 255             # `Event.slot` of a clear's uncertainty change: every slot


class EventKind(enum.Enum, shape=3):
    NONE = 0                # no event: what an empty FIFO reads
    ORDER_SENT = 1
    ORDER_REJECTED = 2
    GAP = 3
    UNCERTAIN = 4
    CERTAIN = 5


class Event(data.Struct):
    """One card-to-host event, `EVENT_BITS` wide, the first field in the lowest bits (the JSON
    export's "event" gives each field's offset and width, `event_fields`):

    | field  | bits | ORDER_SENT / ORDER_REJECTED    | GAP   | UNCERTAIN / CERTAIN           |
    |--------|------|--------------------------------|-------|-------------------------------|
    | kind   | 3    | EventKind                      |       |                               |
    | side   | 1    | 0 buy, 1 sell                  | 0     | 0                             |
    | reason | 4    | hdl.formats.Reject (NONE sent) | 0     | 0                             |
    | slot   | 8    | the order's slot               | 0     | the slot; ALL_SLOTS: a clear  |
    | qty    | 32   | shares                         | 0     | 0                             |
    | price  | 32   | ITCH price                     | 0     | 0                             |
    | index  | 32   | the triggering ITCH message    | 0     | the message of the update     |
    | cycle  | 48   | of the decision                | of the gap | of the update            |

    `cycle` counts clock cycles from reset, the clock of the messages' `rx_cycle`.
    """
    kind: EventKind
    side: 1
    reason: Reject
    slot: 8
    qty: 32
    price: 32
    index: 32
    cycle: 48


assert Event.as_shape().size == EVENT_BITS, "hdl.regmap.EVENT_BITS is the size of an Event"


def event_fields() -> list[dict[str, object]]:
    """The Event layout as the JSON export gives it: name, offset, width, and for enumerated
    fields the names of their values (`values[v]`; None where a value has no name)."""
    out: list[dict[str, object]] = []
    enums = {"kind": EventKind, "reason": Reject}
    for name, field in data.Layout.cast(Event):
        entry: dict[str, object] = {"name": name, "offset": field.offset, "width": field.width}
        if name in enums:
            names: dict[int, str] = {int(v.value): v.name for v in enums[name]}
            entry["values"] = [names.get(v) for v in range(max(names) + 1)]
        out.append(entry)
    return out


def _pending_beats(m: Module, strobes: list, name: str) -> tuple[Signal, Signal]:
    """(valid, row): the lowest row whose commit strobe is high now or was not sent yet."""
    n = len(strobes)
    pending = Signal(n, name=f"{name}_pending")
    rows = Signal(n, name=f"{name}_rows")
    row = Signal(range(n), name=f"{name}_row")
    m.d.comb += rows.eq(pending | Cat(*strobes))
    for i in reversed(range(n)):
        with m.If(rows[i]):
            m.d.comb += row.eq(i)
    m.d.sync += pending.eq(rows & ~(Const(1, n) << row))
    return rows.any(), row


class Card(wiring.Component):
    def __init__(self, book: BookParams | None = None):
        self.book_params = book or BookParams()
        self.map = card_map(self.book_params)
        self._bank = RegisterBank(self.map)
        super().__init__({
            "bus": In(BusSignature(len(self._bank.bus.addr))),
            "gmii": In(GmiiRx),
            "gmii_tx": Out(GmiiTx),
        })

    def _word(self, block: str, reg: str) -> int:
        """Word address of register `reg` of row 0 of `block` (its staged copy if shadowed)."""
        pb = self.map[block]
        (p,) = (p for p in pb.registers if p.reg.name == reg)
        return pb.rows_at + p.offset

    def elaborate(self, platform):
        m = Module()
        W = self.book_params.slots
        m.submodules.bank = bank = self._bank
        m.submodules.core = core = Core(self.book_params)
        wiring.connect(m, wiring.flipped(self.bus), bank.bus)
        wiring.connect(m, wiring.flipped(self.gmii), core.gmii)
        wiring.connect(m, core.gmii_tx, wiring.flipped(self.gmii_tx))
        bus = self.bus

        # -- configuration ---------------------------------------------------------------------
        m.d.comb += [core.own_mac.eq(bank.net.own_mac), core.fcs_safe.eq(bank.net.fcs_safe)]

        subs = bank.subscriptions
        valid, row = _pending_beats(m, [r.commit for r in subs], "sub")
        m.d.comb += [core.sub_write.valid.eq(valid), core.sub_write.payload.index.eq(row)]
        sub_row = core.sub_write.payload.row
        with m.Switch(row):
            for i, r in enumerate(subs):
                with m.Case(i):
                    m.d.comb += [getattr(sub_row, name).eq(getattr(r, name))
                                 for name, _ in data.Layout.cast(Subscription)]

        watch = bank.watchlist
        valid, row = _pending_beats(m, [r.commit for r in watch], "watch")
        ww = core.watch_write.payload
        m.d.comb += [core.watch_write.valid.eq(valid), ww.slot.eq(row)]
        assert [n for n, _ in data.Layout.cast(WatchWrite)] == ["slot", "symbol", "enable"]
        with m.Switch(row):
            for i, r in enumerate(watch):
                with m.Case(i):
                    m.d.comb += [ww.symbol.eq(r.symbol), ww.enable.eq(r.enable)]

        lim = bank.limits
        m.d.comb += [
            core.card_limits.max_order_qty.eq(lim.max_order_qty),
            core.card_limits.max_order_notional.eq(lim.max_order_notional),
            core.card_limits.rate_period.eq(lim.rate_period),
            core.card_limits.rate_cap.eq(lim.rate_cap),
            core.reduce_only_card.eq(lim.reduce_only),
            core.kill_card.eq(lim.kill),
            core.limits_load.eq(lim.commit | Cat(*(t.commit for t in bank.triggers)).any()),
        ]
        for i, t in enumerate(bank.triggers):
            tc, sl = core.triggers[i], core.slot_limits[i]
            m.d.comb += [
                tc.buy_on.eq(t.buy_enable & t.armed), tc.buy_below.eq(t.buy_below),
                tc.sell_on.eq(t.sell_enable & t.armed), tc.sell_above.eq(t.sell_above),
                tc.min_qty.eq(t.min_qty), tc.order_qty.eq(t.order_qty),
                sl.max_position.eq(t.max_position), sl.reference_px.eq(t.reference_px),
                sl.collar.eq(t.collar), sl.rate_period.eq(t.rate_period),
                sl.rate_cap.eq(t.rate_cap),
                core.reduce_only[i].eq(t.reduce_only), core.kill[i].eq(t.kill),
            ]

        # host_op: latched at `apply`, offered until the gate takes it.
        op = bank.host_op
        op_pending = Signal()
        with m.If(core.host_op.ready):
            m.d.sync += op_pending.eq(0)
        with m.If(op.apply):
            m.d.sync += [
                op_pending.eq(1),
                core.host_op.payload.kind.eq(op.kind), core.host_op.payload.slot.eq(op.slot),
                core.host_op.payload.side.eq(op.side), core.host_op.payload.qty.eq(op.qty),
            ]
        m.d.comb += core.host_op.valid.eq(op_pending)

        order = bank.order
        for name, _ in data.Layout.cast(TemplateLayout):
            m.d.comb += getattr(core.order_template, name).eq(getattr(order, name))
        # The commit strobe cannot tell whether next_user_ref was staged: the write is seen on
        # the bus, so a template change alone never rewinds the UserRefNum count.
        ref_written = Signal()
        with m.If(order.commit):
            m.d.sync += ref_written.eq(0)
        with m.If(bus.w_stb & (bus.addr == self._word("order", "next_user_ref"))):
            m.d.sync += ref_written.eq(1)
        set_ref = order.commit & ref_written
        m.d.comb += [core.next_user_ref.eq(order.next_user_ref), core.set_user_ref.eq(set_ref)]
        m.d.comb += order.user_ref_next.eq(core.user_ref_next)     # the builder's own count

        m.d.comb += core.host_tx.valid.eq(0)

        # -- state -----------------------------------------------------------------------------
        m.d.comb += [
            bank.feed.frames_ok.eq(core.counters.frames_ok),
            bank.feed.gaps.eq(core.counters.gaps),
            bank.feed.drops.eq(core.counters.drops),
            bank.feed.messages_by_type.eq(core.counters.messages_by_type),
            *(getattr(bank.book, name).eq(core.book_counters[i])
              for i, name in enumerate(BOOK_COUNTERS)),
            bank.risk.decisions.eq(core.risk_counters),
            bank.risk.killed.eq(core.killed),
            bank.risk.trigger_overruns.eq(core.trigger_overruns),
            bank.risk.bad_frame_orders.eq(core.bad_frame_orders),
            bank.risk.fcs_discarded.eq(core.fcs_discarded),
            bank.risk.tx_frames.eq(core.tx_frames),
            bank.risk.tx_underruns.eq(core.tx_underruns),
        ]
        for i, p in enumerate(bank.positions):
            m.d.comb += [p.position.eq(core.position[i]), p.open_buy.eq(core.open[i][0]),
                         p.open_sell.eq(core.open[i][1])]
        assert len(bank.latency) == len(LATENCY_KINDS)
        for row, st in zip(bank.latency, core.latency, strict=True):
            m.d.comb += [row.count.eq(st.count), row.last.eq(st.last), row.min.eq(st.min),
                         row.max.eq(st.max), row.bins.eq(st.histogram)]

        # Tops: the bank's read-only inputs are registers here.
        u, uv = core.update.payload, core.update.valid
        tops = bank.tops
        for i, t in enumerate(tops):
            with m.If(uv & (u.clear | (u.slot == i))):
                m.d.sync += [
                    t.bid_px.eq(u.bid_px), t.bid_qty.eq(u.bid_qty),
                    t.ask_px.eq(u.ask_px), t.ask_qty.eq(u.ask_qty),
                    t.uncertain.eq(u.uncertain), t.halted.eq(u.halted),
                    t.state.eq(u.state), t.locate.eq(u.locate),
                ]

        # -- events ----------------------------------------------------------------------------
        cycle = Signal(48)
        m.d.sync += cycle.eq(cycle + 1)

        # Per source: (the event happens now, the event).
        d = core.decision.payload
        ev_decision = Signal(Event)
        m.d.comb += [
            ev_decision.kind.eq(Mux(d.reason == Reject.NONE, EventKind.ORDER_SENT,
                                    EventKind.ORDER_REJECTED)),
            ev_decision.side.eq(d.intent.side), ev_decision.reason.eq(d.reason),
            ev_decision.slot.eq(d.intent.slot), ev_decision.qty.eq(d.intent.qty),
            ev_decision.price.eq(d.intent.price), ev_decision.index.eq(d.intent.index),
            ev_decision.cycle.eq(cycle),
        ]

        was = Cat(*(t.uncertain for t in tops))
        flips = Signal()
        with m.If(u.clear):
            m.d.comb += flips.eq(was != u.uncertain.replicate(W))
        with m.Else():
            m.d.comb += flips.eq((u.slot < W) & (was.bit_select(u.slot, 1) != u.uncertain))
        ev_update = Signal(Event)
        m.d.comb += [
            ev_update.kind.eq(Mux(u.uncertain, EventKind.UNCERTAIN, EventKind.CERTAIN)),
            ev_update.slot.eq(Mux(u.clear, ALL_SLOTS, u.slot)),
            ev_update.index.eq(u.index), ev_update.cycle.eq(cycle),
        ]

        gaps_seen = Signal(32)
        m.d.sync += gaps_seen.eq(core.counters.gaps)
        ev_gap = Signal(Event)
        m.d.comb += [ev_gap.kind.eq(EventKind.GAP), ev_gap.cycle.eq(cycle)]

        sources = [(core.decision.valid, ev_decision), (uv & flips, ev_update),
                   (core.counters.gaps != gaps_seen, ev_gap)]

        m.submodules.events = events = fifo.SyncFIFO(width=EVENT_BITS, depth=EVENT_DEPTH)
        held = [Signal(Event, name=f"held{i}") for i in range(len(sources))]
        full = Signal(len(sources))
        # The first full holding register goes to the FIFO (or, the FIFO full, is dropped).
        out = Signal(range(len(sources)))
        for i in reversed(range(len(sources))):
            with m.If(full[i]):
                m.d.comb += out.eq(i)
        emptied = Signal(len(sources))
        m.d.comb += [
            emptied.eq(Mux(full.any(), Const(1, len(sources)) << out, 0)),
            events.w_en.eq(full.any()),
            events.w_data.eq(_pick(m, held, out)),
        ]
        lost = Signal(range(len(sources) + 2))
        lost_terms = [full.any() & ~events.w_rdy]
        for i, (now, ev) in enumerate(sources):
            with m.If(now):
                m.d.sync += [held[i].eq(ev), full[i].eq(1)]
            with m.Elif(emptied[i]):
                m.d.sync += full[i].eq(0)
            lost_terms.append(now & full[i] & ~emptied[i])
        m.d.comb += lost.eq(sum(lost_terms))

        overflow = bank.events.overflow
        m.d.sync += overflow.eq(overflow + lost)

        pop = bus.r_stb & (bus.addr == self._word("events", "data"))
        m.d.comb += [
            events.r_en.eq(pop),
            bank.events.data.eq(Mux(events.r_rdy, events.r_data, 0)),
            bank.events.level.eq(events.level),
        ]
        return m


def _pick(m: Module, values: list, index) -> Signal:
    """values[index] from a Switch."""
    out = Signal(len(values[0].as_value()), name="selected")
    with m.Switch(index):
        for i, v in enumerate(values):
            with m.Case(i):
                m.d.comb += out.eq(v)
    return out
