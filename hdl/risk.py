"""The risk gate: every order intent in, sent or refused with a reason (twin of
`host.model.risk`, whose docstring is the specification; reasons in `hdl.formats.Reject` order).

Nothing reaches the order builder except through `order`, and `order` is only driven here, in
the cycle the gate decides NONE. The gate takes one intent at a time, in a pipeline:

    S0  accept the intent (only when the order queue has room, so a sent order is never lost);
        the decision is made 4 cycles later
    S1  the slot's limits, position and open orders; qty x price as four 16 x 16 products
    S2  the notional, |price - reference_px|, the exposure that way
    S3  each check as a flag
    S4  the reason: switches and rate buckets as they are now, the flags in order; a sent order
        takes a token from both buckets and counts as open

Exposure "that way" is position + open buys + qty for a buy and -position + open sells + qty
for a sell: MAX_POSITION is exposure > max_position, and REDUCE_ONLY (an order that would not
reduce) is exposure > 0 in both directions. An intent of 0 shares is refused as MAX_QTY (the
models never make one; registers could).

Token buckets (card-wide and per slot) are credits in cycles, as in the model: +1 a cycle up to
`rate_cap`, a token is `rate_period` cycles. The model checks an intent at its message's RX cycle
and the gate a fixed number of cycles later; credits only see differences between decisions, so
they agree. A bucket with period 0 has no tokens: all-zero registers block everything.

Positions and open orders change only through `host_op` (the host's fills, releases and
position loads), applied while no intent is in flight so that S1's snapshot stays true until S4.
"""

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.beats import beats
from hdl.formats import (
    BOOK_BUY,
    RISK_CREDIT_BITS,
    RISK_NOTIONAL_BITS,
    RISK_POSITION_BITS,
    RISK_PRICE_BITS,
    RISK_QTY_BITS,
    Reject,
)
from hdl.trigger import Intent, select

__all__ = ["CardLimits", "SlotLimits", "HostOp", "Decision", "RiskGate"]


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


class HostOpKind(enum.Enum, shape=2):
    RELEASE = 0                 # qty of an open order is gone (cancelled, expired)
    FILL = 1                    # qty of an open order filled: it moves to the position
    POSITION = 2                # load the position (qty as a signed value)


class HostOp(data.Struct):
    kind: HostOpKind
    slot: 8
    side: 1
    qty: RISK_QTY_BITS


class Decision(data.Struct):
    """The gate's verdict on one intent; `reason` NONE means the order went to the builder."""
    intent: Intent
    reason: Reject


_QTY_MAX = (1 << RISK_QTY_BITS) - 1


class RiskGate(wiring.Component):
    LATENCY = 4                 # cycles from accepting an intent to its decision
    def __init__(self, slots: int):
        self.slots = slots
        super().__init__({
            "intent": In(stream.Signature(Intent)),
            "order": Out(stream.Signature(Intent)),     # sent: to the order queue
            "decision": Out(beats(Decision)),           # every verdict, sent or not
            "card": In(CardLimits),
            "limits": In(data.ArrayLayout(SlotLimits, slots)),
            "kill_card": In(1), "kill": In(slots),
            "reduce_only_card": In(1), "reduce_only": In(slots),
            "load": In(1),              # limits changed: every bucket starts full again
            "host_op": In(stream.Signature(HostOp)),
            "counters": Out(data.ArrayLayout(32, len(Reject))),    # indexed by Reject
            "position": Out(data.ArrayLayout(signed(RISK_POSITION_BITS), slots)),
            "open": Out(data.ArrayLayout(data.ArrayLayout(RISK_QTY_BITS, 2), slots)),
        })

    def elaborate(self, platform):
        m = Module()
        W = self.slots
        position, open_ = self.position, self.open

        # -- rate buckets --------------------------------------------------------------------
        take = Signal()                                 # S4 sent an order
        taken_slot = Signal(range(W))

        def bucket(credit, period, cap, taking):
            with m.If(self.load):
                m.d.sync += credit.eq(cap)
            with m.Elif(taking):
                # Credit after the take, then this cycle's +1: the model's "credit - period"
                # at the check, growing from there (it is below cap, as period >= 1).
                m.d.sync += credit.eq(credit - period + 1)
            with m.Elif(credit < cap):
                m.d.sync += credit.eq(credit + 1)
            with m.Else():
                m.d.sync += credit.eq(cap)
            return (period != 0) & (credit >= period)

        card_credit = Signal(RISK_CREDIT_BITS)
        card_token = bucket(card_credit, self.card.rate_period, self.card.rate_cap, take)
        slot_token = Signal(W)
        for i in range(W):
            credit = Signal(RISK_CREDIT_BITS, name=f"credit{i}")
            lim = self.limits[i]
            m.d.comb += slot_token[i].eq(
                bucket(credit, lim.rate_period, lim.rate_cap, take & (taken_slot == i)))

        # -- the pipeline ------------------------------------------------------------------------
        v = Signal(4)                                   # an intent in S1..S4
        busy = v.any()
        m.d.comb += self.intent.ready.eq(~busy & self.order.ready)
        m.d.sync += v.eq(Cat(self.intent.valid & self.intent.ready, v[:3]))
        it = Signal(Intent)
        with m.If(self.intent.valid & self.intent.ready):
            m.d.sync += it.eq(self.intent.payload)
        buy = it.side == BOOK_BUY
        m.d.comb += taken_slot.eq(it.slot)

        # S1
        lim = data.View(SlotLimits, select(m, self.limits, it.slot, "slot_limits"))
        pos = Signal(signed(RISK_POSITION_BITS))
        way = Signal(RISK_QTY_BITS)                     # open orders the intent's way
        s_lim = Signal(SlotLimits)
        prod = [Signal(32, name=f"prod{i}") for i in range(4)]
        q, p = it.qty, it.price
        slot_open = select(m, open_, it.slot, "slot_open")
        m.d.sync += [
            pos.eq(select(m, position, it.slot, "slot_position")),
            way.eq(Mux(buy, slot_open[0], slot_open[1])),
            s_lim.eq(lim),
            prod[0].eq(q[:16] * p[:16]), prod[1].eq(q[:16] * p[16:]),
            prod[2].eq(q[16:] * p[:16]), prod[3].eq(q[16:] * p[16:]),
        ]

        # S2
        notional = Signal(RISK_NOTIONAL_BITS)
        off = Signal(RISK_PRICE_BITS + 1)               # |price - reference_px|
        exposure = Signal(signed(RISK_QTY_BITS + 3))
        diff = Signal(signed(RISK_PRICE_BITS + 1))
        m.d.comb += diff.eq(it.price - s_lim.reference_px)
        m.d.sync += [
            notional.eq(prod[0] + ((prod[1] + prod[2]) << 16) + (prod[3] << 32)),
            off.eq(Mux(diff < 0, -diff, diff)),
            exposure.eq(Mux(buy, pos, -pos) + way + it.qty),
        ]

        # S3
        flags = Signal(data.StructLayout({
            "reduce": 1, "qty": 1, "notional": 1, "collar": 1, "position": 1}))
        m.d.sync += [
            flags.reduce.eq(exposure > 0),
            flags.qty.eq((it.qty == 0) | (it.qty > self.card.max_order_qty)),
            flags.notional.eq(notional > self.card.max_order_notional),
            flags.collar.eq(off > s_lim.collar),
            flags.position.eq(exposure > s_lim.max_position),
        ]

        # S4: the first reason that applies, in Reject order.
        reduce_only = self.reduce_only_card | self.reduce_only.bit_select(it.slot, 1)
        checks = [
            (Reject.KILL_CARD, self.kill_card),
            (Reject.KILL_INSTRUMENT, self.kill.bit_select(it.slot, 1)),
            (Reject.HALTED, it.halted),
            (Reject.UNCERTAIN, it.uncertain),
            (Reject.REDUCE_ONLY, reduce_only & flags.reduce),
            (Reject.MAX_QTY, flags.qty),
            (Reject.MAX_NOTIONAL, flags.notional),
            (Reject.COLLAR, flags.collar),
            (Reject.MAX_POSITION, flags.position),
            (Reject.RATE_CARD, ~card_token),
            (Reject.RATE_INSTRUMENT, ~slot_token.bit_select(it.slot, 1)),
        ]
        assert [r for r, _ in checks] == list(Reject)[1:], "checks must follow Reject's order"
        reason = Signal(Reject)
        with m.If(checks[0][1]):
            m.d.comb += reason.eq(checks[0][0])
        for r, failed in checks[1:]:
            with m.Elif(failed):
                m.d.comb += reason.eq(r)

        decide = v[3]
        m.d.comb += [
            self.decision.valid.eq(decide),
            self.decision.payload.intent.eq(it),
            self.decision.payload.reason.eq(reason),
            take.eq(decide & (reason == Reject.NONE)),
            self.order.valid.eq(take),
            self.order.payload.eq(it),
        ]
        with m.If(decide):
            m.d.sync += self.counters[reason].eq(self.counters[reason] + 1)

        # Open orders and positions: a sent order opens; the host's ops close or load.
        sums = Signal(RISK_QTY_BITS + 1)
        op = self.host_op.payload
        m.d.comb += self.host_op.ready.eq(~busy)
        for i in range(W):
            for side in (0, 1):
                o = open_[i][side]
                with m.If(take & (it.slot == i) & (it.side == side)):
                    # Saturates: exposure may be overstated, never understated.
                    m.d.comb += sums.eq(o + it.qty)
                    m.d.sync += o.eq(Mux(sums[-1], _QTY_MAX, sums[:RISK_QTY_BITS]))
                with m.If(self.host_op.valid & ~busy & (op.slot == i) & (op.side == side)
                          & (op.kind != HostOpKind.POSITION)):
                    m.d.sync += o.eq(Mux(o > op.qty, o - op.qty, 0))
            with m.If(self.host_op.valid & ~busy & (op.slot == i)):
                with m.If(op.kind == HostOpKind.FILL):
                    m.d.sync += position[i].eq(Mux(op.side == BOOK_BUY, position[i] + op.qty,
                                                   position[i] - op.qty))
                with m.If(op.kind == HostOpKind.POSITION):
                    m.d.sync += position[i].eq(op.qty)
        return m
