"""The risk gate: every order intent in, sent or refused with a reason (twin of
`host.model.risk`, whose docstring is the specification; reasons in `hdl.formats.Reject` order).

Nothing reaches the order builder except through `order`, and `order` is only driven here, in
the cycle the gate decides NONE. The gate takes one intent at a time (and only when the order
queue has room, so a sent order is never lost), on one of two paths:

* Fast (`LATENCY`, the cycle after acceptance): in the acceptance cycle the gate checks
  sufficient conditions for "every check passes": switches clear, not halted or uncertain,
  0 < qty <= min(max_order_qty, order_qty), reference_px - collar <= price <= reference_px +
  collar, the exposure within max_position (and <= 0 under reduce-only), a token in both
  buckets (checked the cycle before, at the RX cycle the book names for its next update:
  `OrderBook.next_rx_cycle`, which is the update's own; were it earlier, the check would only
  be stricter), and the slot's `notional_safe` flag: order_qty x (reference_px + collar) <=
  max_order_notional, which, with the collar and qty checks, bounds qty x price without a
  multiplication in the path. Then it decides NONE at once.
* Exact (`EXACT_LATENCY`) for every other intent, in a pipeline:
      S1  qty x price as four 16 x 16 products; the card's token check; the slot's limits,
          position, open orders and bucket selected by the intent's slot and registered
          (nothing changes them while the gate is busy)
      S2  the notional, |price - reference_px|, the exposure that way, the slot's token check
      S3  each check as a flag, with the reduce-only switches as they were the cycle before
      S4  the first reason that applies, with the card's kill switch as it is now and the
          slot's as it was the cycle before (as the fast path and the order queue read an
          instrument's kill switch: no frame starts from the cycle after it is set)
  It finds NONE too when only `notional_safe` stood in the way.
So the fast path changes when a decision is made, never what it is.

`notional_safe` is computed per slot by one pipelined multiplier going round the slots; `load`
(which must accompany any change of the limits or of `order_qty`: `hdl.core.Core` says so)
clears every flag until the multiplier has been round again, about `slots` + 4 cycles.

Exposure "that way" is position + open buys + qty for a buy and -position + open sells + qty
for a sell: MAX_POSITION is exposure > max_position, and REDUCE_ONLY (an order that would not
reduce) is exposure > 0 in both directions. An intent of 0 shares is refused as MAX_QTY (the
models never make one; registers could).

Token buckets (card-wide and per slot), as the model keeps them but in one number: `full_at`,
the cycle from which the bucket is full. The credit at cycle c is cap - max(0, full_at - c); a
token costs `rate_period` cycles of credit, so there is one when c + cap >= full_at + period,
and taking it makes full_at = max(c, full_at) + period. An intent is checked at its own
message's RX cycle (`rx_cycle`), as in the model, so a decision does not depend on how long the
gate took: two intents of one update (buy, then sell) see the same cycle, the second after the
first's take. A bucket with period 0, or a cap below its period, has no tokens: all-zero
registers block everything. `load` makes every bucket full.

Positions and open orders change only through `host_op` (the host's fills, releases and
position loads), applied while no intent is in flight or being offered, so that the snapshot
an intent is checked on stays true until its decision. Each new value (a bucket after a take,
open orders, a position) is computed once, for the one slot concerned, and loaded into its row.
"""

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.beats import beats
from hdl.book import TopUpdate
from hdl.formats import (
    BOOK_BUY,
    BOOK_SELL,
    RISK_CREDIT_BITS,
    RISK_NOTIONAL_BITS,
    RISK_POSITION_BITS,
    RISK_PRICE_BITS,
    RISK_QTY_BITS,
    HostOpKind,
    Reject,
)
from hdl.logic import count_later, or_tree
from hdl.trigger import Intent, Terms, select

__all__ = ["CardLimits", "SlotLimits", "HostOp", "Decision", "RiskGate", "reached"]


class CardLimits(data.Struct):
    max_order_qty: RISK_QTY_BITS
    max_order_notional: RISK_NOTIONAL_BITS
    rate_period: RISK_CREDIT_BITS       # cycles per token: CARD_CLOCK_HZ // orders per second
    rate_cap: RISK_CREDIT_BITS          # a full bucket: orders per second x rate_period


class SlotLimits(data.Struct):
    max_position: RISK_POSITION_BITS    # unsigned, < 2**(RISK_POSITION_BITS - 1)
    reference_px: RISK_PRICE_BITS
    collar: RISK_PRICE_BITS
    rate_period: RISK_CREDIT_BITS
    rate_cap: RISK_CREDIT_BITS


class HostOp(data.Struct):
    kind: range(len(HostOpKind))
    slot: 8
    side: 1
    qty: RISK_QTY_BITS


class Decision(data.Struct):
    """The gate's verdict on one intent; `reason` NONE means the order went to the builder."""
    intent: Intent
    reason: Reject


_QTY_MAX = (1 << RISK_QTY_BITS) - 1


_CYCLE = 49                     # rx_cycle (48 bits) plus a period: full_at never wraps


class _Rows:
    """A number per slot in LUT RAM: one write port, and a read port (a copy of the RAM) for
    each `read`. Yosys maps it to TRELLIS_DPR16X4 cells (16 rows x 4 bits each). The gate's
    state per slot (open orders, positions, buckets) was flip-flop rows: each reader was a
    16-way select of them (~5 LUT4 a bit), and each row computed its own next value beside it
    (so that no select fed back), 4,500 LUT4 for positions and open orders alone: the gate was
    the core's largest block. A read port costs ~1.5 LUT4 a bit, and the next value is computed
    once. Written and read as the rows were: a write shows from the next cycle."""

    def __init__(self, m: Module, name: str, shape, slots: int):
        self._m = m
        self._mem = memory.Memory(shape=shape, depth=1 << max(1, (slots - 1).bit_length()),
                                  init=[])
        m.submodules[name] = self._mem
        self.write = self._mem.write_port()

    def read(self, addr):
        port = self._mem.read_port(domain="comb")
        self._m.d.comb += port.addr.eq(addr)
        return port.data


def reached(rx, thr):
    """rx >= thr (thr signed, `_CYCLE` + 2 bits; rx a 48-bit cycle), as three 24-bit compares
    side by side, not one 52-bit carry chain: it is on the acceptance cycle's longest path."""
    assert len(rx) == 48 and len(thr) == _CYCLE + 2
    t = thr[:48]
    hi_gt, hi_ge = rx[24:] > t[24:], rx[24:] >= t[24:]
    return thr[-1] | ((thr[48:-1] == 0) & (hi_gt | (hi_ge & (rx[:24] >= t[:24]))))


class RiskGate(wiring.Component):
    LATENCY = 1                 # fast path: cycles from accepting an intent to its decision
    EXACT_LATENCY = 4           # exact path

    def __init__(self, slots: int):
        self.slots = slots
        super().__init__({
            "intent": In(stream.Signature(Intent)),
            # The intent's price and qty were it of either side (`Trigger.terms`): the gate
            # takes them from here, by the intent's side, and ignores the payload's own.
            "terms": In(data.ArrayLayout(Terms, 2)),
            "fire": In(2),              # `Trigger.fire`: a fresh offer is buy's if fire[0]
            "order": Out(stream.Signature(Intent)),     # sent: to the order queue
            "decision": Out(beats(Decision)),           # every verdict, sent or not
            "card": In(CardLimits),
            "limits": In(data.ArrayLayout(SlotLimits, slots)),
            "order_qty": In(data.ArrayLayout(RISK_QTY_BITS, slots)),   # the triggers' own
            "kill_card": In(1), "kill": In(slots),
            "reduce_only_card": In(1), "reduce_only": In(slots),
            "load": In(1),              # limits changed: buckets full, notional_safe redone
            "host_op": In(stream.Signature(HostOp)),
            "next_slot": In(range(slots)),  # the slot of the book's message now (fast path)
            # The RX cycle of the book's next update, the cycle before it is valid
            # (`OrderBook.next_rx_cycle`): the fast path's token checks run a cycle early on it.
            "next_rx_cycle": In(48),
            "update": In(beats(TopUpdate)), # what the triggers see (fast path; host ops wait)
            # Indexed by Reject; a verdict shows two cycles after its decision.
            "counters": Out(data.ArrayLayout(32, len(Reject))),
            "position": Out(data.ArrayLayout(signed(RISK_POSITION_BITS), slots)),
            "open": Out(data.ArrayLayout(data.ArrayLayout(RISK_QTY_BITS, 2), slots)),
        })

    def elaborate(self, platform):
        m = Module()
        W = self.slots
        position, open_ = self.position, self.open
        card = self.card

        # -- notional_safe: order_qty x (reference_px + collar) <= max_order_notional ----------
        nsafe, nvalid = Signal(W), Signal(W)
        # `rr` turns round the slots; `rr_lim` and `rr_qty` hold its slot's row. The row is
        # gathered from registers alone, in two stages: `ahead`, one-hot, names the slot `rr`
        # will name in two cycles, and picks its row in each group of four slots into a part
        # (AND-OR); a cycle later the parts are ORed. (A select by `rr`'s next value, a compare
        # and the load's OR ahead of a 16-way multiplexer by the limits registers, led the
        # placed core: `gate.rr_lim`, docs/book-timing.md.) A load does not restart `rr`: it
        # empties the pipeline, and `pv` marks a product only when no load came from the cycle
        # its row was read on.
        rr = Signal(range(W))
        ahead = Signal(W, init=1 << (2 % W))
        m.d.sync += [rr.eq(Mux(rr == W - 1, 0, rr + 1)), ahead.eq(ahead.rotate_left(1))]
        pv = Signal(4)                                  # the row's and the multiplier's stages
        p_slot = [Signal(range(W), name=f"ns_slot{k}") for k in range(3)]
        p_qty, p_hi = Signal(RISK_QTY_BITS), Signal(RISK_PRICE_BITS + 1)
        p_prod = [Signal(34, name=f"ns_prod{k}") for k in range(4)]
        p_sum = Signal(RISK_QTY_BITS + RISK_PRICE_BITS + 1)
        rr_lim = Signal(SlotLimits)
        rr_qty = Signal(RISK_QTY_BITS)
        groups = [range(g, min(g + 4, W)) for g in range(0, W, 4)]
        part_lim = [Signal(SlotLimits, name=f"ns_limits{g}") for g in range(len(groups))]
        part_qty = [Signal(RISK_QTY_BITS, name=f"ns_qty{g}") for g in range(len(groups))]
        for group, lim, qty in zip(groups, part_lim, part_qty, strict=True):
            m.d.sync += [
                lim.eq(or_tree([Mux(ahead[i], self.limits[i].as_value(), 0) for i in group])),
                qty.eq(or_tree([Mux(ahead[i], self.order_qty[i], 0) for i in group]))]
        m.d.sync += [rr_lim.eq(or_tree([v.as_value() for v in part_lim])),
                     rr_qty.eq(or_tree(part_qty))]
        m.d.sync += [
            pv.eq(Cat(1, pv[:3])), p_slot[0].eq(rr), p_slot[1].eq(p_slot[0]),
            p_slot[2].eq(p_slot[1]),
            p_qty.eq(rr_qty),
            p_hi.eq(rr_lim.reference_px + rr_lim.collar),
            p_prod[0].eq(p_qty[:16] * p_hi[:16]), p_prod[1].eq(p_qty[:16] * p_hi[16:]),
            p_prod[2].eq(p_qty[16:] * p_hi[:16]), p_prod[3].eq(p_qty[16:] * p_hi[16:]),
            p_sum.eq(p_prod[0] + ((p_prod[1] + p_prod[2]) << 16) + (p_prod[3] << 32)),
        ]
        with m.If(pv[3]):
            for i in range(W):
                with m.If(p_slot[2] == i):
                    m.d.sync += [nsafe[i].eq(p_sum <= card.max_order_notional), nvalid[i].eq(1)]
        with m.If(self.load):
            # In-flight products may be of the old limits: start again from an empty pipeline.
            m.d.sync += [nvalid.eq(0), pv.eq(0)]

        # -- token buckets -----------------------------------------------------------------------
        card_full = Signal(_CYCLE)
        # Each slot's full_at, in LUT RAM; `full_ok` marks a row written since the last load
        # (`load` empties every bucket at once: full_at 0, which a RAM cannot write in a cycle).
        full = _Rows(m, "full", _CYCLE, W)
        full_ok = Signal(W)

        def full_at(slot):
            return Mux(full_ok.bit_select(slot, 1), full.read(slot), 0)

        # Positions and open orders (each side), in LUT RAM; `position` and `open` are
        # flip-flop copies for the host, written with them and never read here.
        rows_pos = _Rows(m, "positions", signed(RISK_POSITION_BITS), W)
        rows_open = [_Rows(m, f"open_{side}", RISK_QTY_BITS, W) for side in ("buy", "sell")]

        def has_token(c, full_at, period, cap):
            return (period != 0) & (cap >= period) & (c + cap >= full_at + period)

        with m.If(self.load):
            m.d.sync += [card_full.eq(0), full_ok.eq(0)]

        # -- the slot ahead: its limits and state, selected before its intent comes -----------
        # `next_slot` is the slot of the message the book is working on, which is the slot of
        # its update from at least a cycle before the update is valid (`OrderBook.next_slot`).
        # Two register stages select and then derive what the fast checks compare with, so
        # the acceptance cycle only compares. They see the state two cycles late, the token
        # checks (a cycle ahead, below) three: `changed` keeps the fast path off for three
        # cycles after anything changes it (a decision, a host op, a load). A held intent of
        # another slot simply takes the exact path.
        changed = Signal(3)
        # The switches per slot are selected ahead too: a change of them counts, from the
        # cycle it is seen (a register sees it from the next).
        last_kill, last_reduce = Signal(W), Signal(W)
        m.d.sync += [last_kill.eq(self.kill), last_reduce.eq(self.reduce_only)]
        switched = Signal()
        m.d.comb += switched.eq((self.kill != last_kill) | (self.reduce_only != last_reduce))
        p1_slot = Signal(range(W))
        p1_lim = Signal(SlotLimits)
        p1_pos = Signal(signed(RISK_POSITION_BITS))
        p1_open = Signal(data.ArrayLayout(RISK_QTY_BITS, 2))
        p1_full = Signal(_CYCLE)
        p1_oq = Signal(RISK_QTY_BITS)
        p1_flags = Signal(data.StructLayout({"ns": 1, "kill": 1, "reduce": 1}))
        ns = self.next_slot
        m.d.sync += [
            p1_slot.eq(ns),
            p1_lim.eq(select(m, self.limits, ns, "p1_limits")),
            p1_pos.eq(rows_pos.read(ns)),
            p1_open.eq(Cat(rows_open[0].read(ns), rows_open[1].read(ns))),
            p1_full.eq(full_at(ns)),
            p1_oq.eq(select(m, self.order_qty, ns, "p1_order_qty")),
            p1_flags.ns.eq(nvalid.bit_select(ns, 1) & nsafe.bit_select(ns, 1)),
            p1_flags.kill.eq(self.kill.bit_select(ns, 1)),
            p1_flags.reduce.eq(self.reduce_only.bit_select(ns, 1)),
        ]
        p2_slot = Signal(range(W))
        p2_lo = Signal(signed(RISK_PRICE_BITS + 2))     # reference_px - collar
        p2_hi = Signal(RISK_PRICE_BITS + 1)             # reference_px + collar
        p2_thr = Signal(signed(_CYCLE + 2))             # full_at + period - cap: a token from
        p2_tok = Signal()                               # this RX cycle on, if tok
        p2_room = Signal(data.ArrayLayout(signed(RISK_QTY_BITS + 3), 2))    # qty <= room
        p2_rroom = Signal(data.ArrayLayout(signed(RISK_QTY_BITS + 3), 2))   # reduce-only
        p2_oq = Signal(RISK_QTY_BITS)
        p2_flags = Signal.like(p1_flags)
        p2_full = Signal(_CYCLE)                        # for a fast take's write-back
        p2_period = Signal(RISK_CREDIT_BITS)
        card_thr = Signal(signed(_CYCLE + 2))
        card_tok = Signal()
        # The order is min(order_qty, touched shares), so a bound on it holds when it holds
        # for either: the order_qty half is known ahead.
        oq_ok = Signal(data.StructLayout({"nonzero": 1, "max": 1, "room": 2, "rroom": 2}))
        base = [p1_pos + p1_open[0], -p1_pos + p1_open[1]]     # exposure before the order
        m.d.sync += [
            p2_slot.eq(p1_slot), p2_oq.eq(p1_oq), p2_flags.eq(p1_flags),
            p2_full.eq(p1_full), p2_period.eq(p1_lim.rate_period),
            p2_lo.eq(p1_lim.reference_px - p1_lim.collar),
            p2_hi.eq(p1_lim.reference_px + p1_lim.collar),
            p2_thr.eq(p1_full + p1_lim.rate_period - p1_lim.rate_cap),
            p2_tok.eq((p1_lim.rate_period != 0) & (p1_lim.rate_cap >= p1_lim.rate_period)),
            *[p2_room[k].eq(p1_lim.max_position - base[k]) for k in range(2)],
            *[p2_rroom[k].eq(-base[k]) for k in range(2)],
            oq_ok.nonzero.eq(p1_oq != 0), oq_ok.max.eq(p1_oq <= card.max_order_qty),
            *[oq_ok.room[k].eq(p1_oq <= p1_lim.max_position - base[k]) for k in range(2)],
            *[oq_ok.rroom[k].eq(p1_oq <= -base[k]) for k in range(2)],
            card_thr.eq(card_full + card.rate_period - card.rate_cap),
            card_tok.eq((card.rate_period != 0) & (card.rate_cap >= card.rate_period)),
        ]

        # -- acceptance and the fast path ----------------------------------------------------
        fast = Signal()                                 # an intent decided by the fast path
        acc = Signal()                                  # an intent accepted last cycle
        # An intent in S1..S4 of the exact path. S1 is an accepted intent the fast path did not
        # decide: from two registers, so that the fast checks' compares reach one register
        # (`fast`) and not also a second of their own (the exact path's first stage had its
        # own cone of them, and both were the order decision's critical endpoints).
        v_later = Signal(3)                             # S2..S4
        v = Cat(acc & ~fast, v_later)
        wb = Signal()                                   # a sent order's state written back
        # Not busy (no intent in `fast`, `v` or `wb`), as a register of its own, loaded a cycle
        # ahead: `ready` then waits on one gate, not on an OR of the stages.
        idle = Signal(init=1)
        m.d.comb += self.intent.ready.eq(idle & self.order.ready)
        accept = self.intent.valid & self.intent.ready
        x = self.intent.payload
        # The fast checks of each side's possible intent, on the update itself (the buy side
        # touches the ask, the sell side the bid), beside the triggers' own compares.
        u = self.update.payload
        # The token checks, the cycle before the update, on its RX cycle as the book names it
        # then, and on the thresholds of the slot then in p2, which must stay there (p1 holds
        # the same slot): in the acceptance cycle their 48-bit compares were the order
        # decision's longest path (8.5 ns routed).
        tok_ok = Signal()
        m.d.sync += tok_ok.eq((p1_slot == p2_slot) & p2_tok & reached(self.next_rx_cycle, p2_thr)
                              & card_tok & reached(self.next_rx_cycle, card_thr))
        common = Signal()
        m.d.comb += common.eq(
            ~changed.any() & ~switched & (u.slot == p2_slot)
            & ~self.kill_card & ~p2_flags.kill & ~u.halted & ~u.uncertain & p2_flags.ns
            & tok_ok)
        reduce = self.reduce_only_card | p2_flags.reduce
        side_ok = Signal(2)
        for k, (px, qty) in enumerate(((u.ask_px, u.ask_qty), (u.bid_px, u.bid_qty))):
            m.d.comb += side_ok[k].eq(
                oq_ok.nonzero & (qty != 0)
                & (oq_ok.max | (qty <= card.max_order_qty))
                & (px >= p2_lo) & (px <= p2_hi)
                & (oq_ok.room[k] | (qty <= p2_room[k]))
                & ~(reduce & ~(oq_ok.rroom[k] | (qty <= p2_rroom[k]))))
        # Which path the offer takes, as a function of the fire bits themselves (a fresh offer
        # is buy's if buy fires, else sell's if sell fires; a held one is always valid, and
        # takes the exact path): the offer's side and `valid` are built from the fire bits a
        # level or two further on, and the compares behind them are the slowest inputs here.
        fb, fs = self.fire[BOOK_BUY], self.fire[BOOK_SELL]
        ok = [common & side_ok[k] for k in range(2)]
        # `fast` as a register per side, each an AND with the fire bits in it: ABC puts a late
        # input of an AND at its last level. As one register of (fb & ok0) | (~fb & fs & ok1),
        # four levels of logic followed the triggers' compares (7.8-8.5 ns routed, 118-128
        # MHz by seed); per side, one or two (126.8-137.6 MHz; docs/book-timing.md).
        fast_side = Signal(2)
        m.d.comb += fast.eq(fast_side.any())
        m.d.sync += [
            fast_side[0].eq(self.intent.ready & x.fresh & fb & ok[0]),
            fast_side[1].eq(self.intent.ready & x.fresh & ~fb & fs & ok[1]),
            acc.eq(accept), v_later.eq(v[:3])]
        # `it` is the intent taken: `it_r` with the price and qty of its side, picked from both
        # sides' (`it_terms`) by the registered side. The offer's side waits on the triggers'
        # compares; both sides' terms do not, so only one bit of `it` is late.
        it_r = Signal(Intent)
        it_terms = Signal(data.ArrayLayout(Terms, 2))
        it = Signal(Intent)
        buy = it_r.side == BOOK_BUY
        m.d.comb += [
            it.eq(it_r),
            it.price.eq(Mux(buy, it_terms[BOOK_BUY].price, it_terms[BOOK_SELL].price)),
            it.qty.eq(Mux(buy, it_terms[BOOK_BUY].qty, it_terms[BOOK_SELL].qty)),
        ]
        # The same from S2 on, registered (`it` holds while the gate is busy).
        it_pq = Signal(Terms)
        m.d.sync += [it_pq.price.eq(it.price), it_pq.qty.eq(it.qty)]
        # An intent's slot is below `slots` (the triggers make none else): index with the low
        # bits only, so the selects need no check of the high ones.
        it_slot = it.slot[:max(1, (W - 1).bit_length())]
        # Loaded whenever the gate is free, not only on acceptance: then its enable is a
        # register's, not the end of the triggers' compares. Nothing reads it while free.
        with m.If(idle):
            m.d.sync += [it_r.eq(x), it_terms.eq(self.terms)]

        # The intent's slot: its limits and state, selected from the registered intent (for the
        # exact path, and for the fast decision's own updates).
        sel_lim = data.View(SlotLimits, select(m, self.limits, it_slot, "slot_limits"))
        sel_way = Mux(buy, rows_open[0].read(it_slot), rows_open[1].read(it_slot))
        sel_full = full_at(it_slot)
        lim = Signal(SlotLimits)
        pos = Signal(signed(RISK_POSITION_BITS))
        way = Signal(RISK_QTY_BITS)                     # open orders the intent's way
        slot_full = Signal(_CYCLE)
        m.d.sync += [lim.eq(sel_lim), pos.eq(rows_pos.read(it_slot)),
                     way.eq(sel_way), slot_full.eq(sel_full)]

        # -- the exact path ------------------------------------------------------------------
        # S1 (`lim`, `pos`, `way`, `slot_full` load in it: the intent's slot's, from S2 on)
        prod = [Signal(32, name=f"prod{i}") for i in range(4)]
        q, p = it.qty, it.price
        token = [Signal(name="token_card"), Signal(name="token_slot")]
        m.d.sync += [
            prod[0].eq(q[:16] * p[:16]), prod[1].eq(q[:16] * p[16:]),
            prod[2].eq(q[16:] * p[:16]), prod[3].eq(q[16:] * p[16:]),
            token[0].eq(has_token(it.rx_cycle, card_full, card.rate_period, card.rate_cap)),
        ]
        # The slot's, in S2 (`slot_full` and `lim` are its from then), registered for S3: left
        # combinational, its two adders and compare ran on into S3's OR (`clear`).
        m.d.sync += token[1].eq(has_token(it.rx_cycle, slot_full, lim.rate_period,
                                          lim.rate_cap))

        # S2
        notional = Signal(RISK_NOTIONAL_BITS)
        off = Signal(RISK_PRICE_BITS + 1)               # |price - reference_px|
        exposure = Signal(signed(RISK_QTY_BITS + 3))
        diff = Signal(signed(RISK_PRICE_BITS + 1))
        m.d.comb += diff.eq(it_pq.price - lim.reference_px)
        m.d.sync += [
            notional.eq(prod[0] + ((prod[1] + prod[2]) << 16) + (prod[3] << 32)),
            off.eq(Mux(diff < 0, -diff, diff)),
            exposure.eq(Mux(buy, pos, -pos) + way + it_pq.qty),
        ]

        # The slot's switches, selected by the intent's slot (stable from S1) in every cycle
        # and registered. Selected in S4 itself, the 16-way selects ran ahead of the order's
        # valid, which fans out over the whole order queue: they led the placed core
        # (`reduce_only[5]` -> `gate.flags` -> `decision.valid` -> `out.r_ptr`,
        # docs/book-timing.md).
        slot_kill, slot_reduce = Signal(), Signal()
        m.d.sync += [slot_kill.eq(self.kill.bit_select(it_slot, 1)),
                     slot_reduce.eq(self.reduce_only.bit_select(it_slot, 1))]

        # S3: each check that can fail as a flag, and `clear`, none of them (nor halted or
        # uncertain) - both registered from the same values, so that S4's reason and its take
        # agree; the take then waits on the kill switches alone.
        fails = data.StructLayout({
            "reduce": 1, "qty": 1, "notional": 1, "collar": 1, "position": 1, "rate": 2})
        fail, flags = Signal(fails), Signal(fails)
        clear = Signal()
        m.d.comb += [
            fail.reduce.eq((exposure > 0) & (self.reduce_only_card | slot_reduce)),
            fail.qty.eq((it_pq.qty == 0) | (it_pq.qty > card.max_order_qty)),
            fail.notional.eq(notional > card.max_order_notional),
            fail.collar.eq(off > lim.collar),
            fail.position.eq(exposure > lim.max_position),
            fail.rate.eq(~Cat(token)),
        ]
        m.d.sync += [flags.eq(fail),
                     clear.eq(~(fail.as_value().any() | it.halted | it.uncertain))]

        # S4: the first reason that applies, in Reject order.
        checks = [
            (Reject.KILL_CARD, self.kill_card),
            (Reject.KILL_INSTRUMENT, slot_kill),
            (Reject.HALTED, it.halted),
            (Reject.UNCERTAIN, it.uncertain),
            (Reject.REDUCE_ONLY, flags.reduce),
            (Reject.MAX_QTY, flags.qty),
            (Reject.MAX_NOTIONAL, flags.notional),
            (Reject.COLLAR, flags.collar),
            (Reject.MAX_POSITION, flags.position),
            (Reject.RATE_CARD, flags.rate[0]),
            (Reject.RATE_INSTRUMENT, flags.rate[1]),
        ]
        assert [r for r, _ in checks] == list(Reject)[1:], "checks must follow Reject's order"
        exact = Signal(Reject)
        with m.If(checks[0][1]):
            m.d.comb += exact.eq(checks[0][0])
        for r, failed in checks[1:]:
            with m.Elif(failed):
                m.d.comb += exact.eq(r)

        # -- the decision ----------------------------------------------------------------------
        decide = fast | v[3]
        reason = Signal(Reject)
        take = Signal()                                 # an order is sent
        m.d.comb += [
            reason.eq(Mux(fast, Reject.NONE, exact)),
            self.decision.valid.eq(decide),
            self.decision.payload.intent.eq(it),
            self.decision.payload.reason.eq(reason),
            take.eq(fast | (v[3] & clear & ~self.kill_card & ~slot_kill)),
            self.order.valid.eq(take),
            self.order.payload.eq(it),
        ]
        # Counted a cycle later, one event per reason: the reason's priority chain ahead of a
        # select into eleven 32-bit adders was one of the placed core's longest paths.
        count_later(m, [decide & (reason == r) for r in Reject], self.counters)
        # A take is written back the cycle after the decision (`wb`); the gate stays busy
        # through it, so the next intent sees it. A bucket's new full_at, max(rx, full_at) +
        # period, is a compare and an add: both are done before the write-back, from registers,
        # so `wb` only picks one of two sums and loads it into the slot's row:
        # * card: in the decision cycle, from `card_full`, which nothing else changes by then
        #   (a load then or in `wb` cancels the write-back).
        # * slot: full_at + period ahead of the decision (`early`), from the snapshot the path
        #   took (fast: the p2 stage's, checked unchanged by `changed` at acceptance; exact:
        #   `slot_full`, refreshed each cycle while busy); rx + period in the decision cycle.
        #   A load since acceptance (`since`) may have changed the limits and has emptied every
        #   bucket (full_at 0): then the new full_at is rx + period.
        # Limits change only with a load (`hdl.core.Core`), so a period read in any cycle
        # since the last load is the one in force.
        since = Signal()
        with m.If(idle):
            m.d.sync += since.eq(self.load)
        with m.Elif(self.load):
            m.d.sync += since.eq(1)
        f_early, e_early = Signal(_CYCLE), Signal(_CYCLE)       # full_at + period: fast, exact
        f_later, e_later = Signal(), Signal()                   # rx > full_at
        # The fast slot's period, read in the acceptance cycle: a load in that very cycle
        # (which `changed` cannot see yet) brings the new one, which `since` then applies.
        f_period = Signal(RISK_CREDIT_BITS)
        with m.Switch(p2_slot):
            for i in range(W):
                with m.Case(i):
                    m.d.sync += f_period.eq(self.limits[i].rate_period)
        m.d.sync += [
            # In the acceptance cycle (a fast intent's rx_cycle is its update's).
            f_early.eq(p2_full + p2_period), f_later.eq(u.rx_cycle > p2_full),
            # In S3 (the exact intent's `slot_full` and `lim` are stable from S2).
            e_early.eq(slot_full + lim.rate_period), e_later.eq(it.rx_cycle > slot_full),
        ]
        wb_slot, wb_side = Signal(range(W)), Signal()
        wb_way, wb_qty = Signal(RISK_QTY_BITS), Signal(RISK_QTY_BITS)
        wb_late, wb_early, wb_later = Signal(_CYCLE), Signal(_CYCLE), Signal()
        wbc_late, wbc_early, wbc_later = Signal(_CYCLE), Signal(_CYCLE), Signal()
        # Busy next cycle: an acceptance, the exact path's stages, a write-back.
        m.d.sync += idle.eq(~(accept | v[:3].any() | (take & ~self.load)))
        m.d.sync += [
            wb.eq(take & ~self.load), wb_slot.eq(it.slot), wb_side.eq(it.side),
            wb_way.eq(sel_way), wb_qty.eq(it.qty),
            wb_late.eq(it.rx_cycle + Mux(fast, f_period, lim.rate_period)),
            wb_early.eq(Mux(fast, f_early, e_early)),
            wb_later.eq(since | Mux(fast, f_later, e_later)),
            wbc_late.eq(it.rx_cycle + card.rate_period),
            wbc_early.eq(card_full + card.rate_period),
            wbc_later.eq(it.rx_cycle > card_full),
        ]
        wb_opened = Signal(RISK_QTY_BITS + 1)          # saturates: never understated
        m.d.comb += wb_opened.eq(wb_way + wb_qty)

        slot_full_new = Signal(_CYCLE)
        m.d.comb += slot_full_new.eq(Mux(wb_later, wb_late, wb_early))
        m.d.comb += [full.write.addr.eq(wb_slot), full.write.data.eq(slot_full_new),
                     full.write.en.eq(wb & ~self.load)]
        with m.If(wb & ~self.load):
            m.d.sync += [card_full.eq(Mux(wbc_later, wbc_late, wbc_early)),
                         full_ok.bit_select(wb_slot, 1).eq(1)]

        # Open orders and positions: a sent order opens; the host's ops close or load.
        op = self.host_op.payload
        do_op = self.host_op.valid & self.host_op.ready
        m.d.sync += changed.eq(Cat(wb | do_op | self.load | switched, changed[:2]))
        # An intent goes first: its snapshot must not miss a host op. So an op waits while an
        # intent is offered or may be: a held one (not `fresh`), and in any update's cycle,
        # the only cycle a fresh one comes in (`fresh` is the triggers' "nothing held", driven
        # whether or not an intent is valid). Not on `intent.valid` itself: that is the end of
        # the triggers' compares, and through `ready` into every row's op it led the placed
        # core (`trigger.cfg.sell_on` -> `host_op.ready` -> `position`, docs/book-timing.md).
        m.d.comb += self.host_op.ready.eq(idle & ~self.update.valid & x.fresh)
        # The op's row is read by the op's slot and its new value computed once (the rows are
        # LUT RAM, `_Rows`). A slot beyond the table is no slot: its op changes nothing.
        op_row = op.slot[:max(1, (W - 1).bit_length())]
        op_here = do_op & (op.slot < W)
        for side in (BOOK_BUY, BOOK_SELL):
            w, mine = rows_open[side].write, rows_open[side].read(op_row)
            m.d.comb += [
                w.addr.eq(Mux(wb, wb_slot, op_row)),
                w.data.eq(Mux(wb, Mux(wb_opened[-1], _QTY_MAX, wb_opened[:RISK_QTY_BITS]),
                              Mux(mine > op.qty, mine - op.qty, 0))),
                w.en.eq((wb & (wb_side == side))
                        | (op_here & (op.side == side) & (op.kind != HostOpKind.POSITION))),
            ]
        w, mine = rows_pos.write, rows_pos.read(op_row)
        m.d.comb += [
            w.addr.eq(op_row),
            w.data.eq(Mux(op.kind == HostOpKind.POSITION, op.qty,
                          Mux(op.side == BOOK_BUY, mine + op.qty, mine - op.qty))),
            w.en.eq(op_here & (op.kind != HostOpKind.RELEASE)),
        ]
        # The host's copies, loaded with the rows.
        for i in range(W):
            for side in (BOOK_BUY, BOOK_SELL):
                w = rows_open[side].write
                with m.If(w.en & (w.addr == i)):
                    m.d.sync += open_[i][side].eq(w.data)
            with m.If(rows_pos.write.en & (rows_pos.write.addr == i)):
                m.d.sync += position[i].eq(rows_pos.write.data)
        return m
