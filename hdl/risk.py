"""The risk gate: every order intent in, sent or refused with a reason (twin of
`host.model.risk`, whose docstring is the specification; reasons in `hdl.formats.Reject` order).

Nothing reaches the order builder except through `order`, and `order` is only driven here, in
the cycle the gate decides NONE. The gate takes one intent at a time, in a pipeline:

    S0  accept the intent (only when the order queue has room, so a sent order is never lost);
        the decision is made 4 cycles later
    S1  the slot's limits, position, open orders and bucket; qty x price as four 16 x 16
        products; cycles since each bucket's last take
    S2  the notional, |price - reference_px|, the exposure that way; each bucket's credit
    S3  each check as a flag
    S4  the reason: switches as they are now, the flags in order; a sent order takes a token
        from both buckets and counts as open

Exposure "that way" is position + open buys + qty for a buy and -position + open sells + qty
for a sell: MAX_POSITION is exposure > max_position, and REDUCE_ONLY (an order that would not
reduce) is exposure > 0 in both directions. An intent of 0 shares is refused as MAX_QTY (the
models never make one; registers could).

Token buckets (card-wide and per slot) are kept as the model keeps them: a credit in cycles and
the cycle it was taken at; a token costs `rate_period` cycles of credit, which grows by one a
cycle up to `rate_cap`. An intent is checked at its own message's RX cycle (`rx_cycle`), as in
the model, so the decision does not depend on how long the gate took: two intents of one update
(buy, then sell) see the same cycle, the second after the first's take. A bucket with period 0
has no tokens: all-zero registers block everything.

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


class _Bucket(data.Struct):
    credit: RISK_CREDIT_BITS    # cycles of credit at `at`
    at: 48                      # RX cycle of the intent that last took a token (0 after load)


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

        # -- rate buckets: credit, and the RX cycle of the intent that last took a token ----
        card_bucket = Signal(_Bucket)
        buckets = Signal(data.ArrayLayout(_Bucket, W))
        with m.If(self.load):
            m.d.sync += [card_bucket.credit.eq(self.card.rate_cap), card_bucket.at.eq(0)]
            m.d.sync += [buckets[i].credit.eq(self.limits[i].rate_cap) for i in range(W)]
            m.d.sync += [buckets[i].at.eq(0) for i in range(W)]

        # -- the pipeline ------------------------------------------------------------------------
        v = Signal(4)                                   # an intent in S1..S4
        busy = v.any()
        m.d.comb += self.intent.ready.eq(~busy & self.order.ready)
        m.d.sync += v.eq(Cat(self.intent.valid & self.intent.ready, v[:3]))
        it = Signal(Intent)
        with m.If(self.intent.valid & self.intent.ready):
            m.d.sync += it.eq(self.intent.payload)
        buy = it.side == BOOK_BUY

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
        # Buckets: [card, slot]. The model's has_token: credit' = min(cap, credit + cycles since).
        slot_bucket = data.View(_Bucket, select(m, buckets, it.slot, "slot_bucket"))
        rate = [(card_bucket, self.card.rate_period, self.card.rate_cap),
                (slot_bucket, lim.rate_period, lim.rate_cap)]
        since = [Signal(RISK_CREDIT_BITS + 1, name=f"since{k}") for k in range(2)]
        for k, (b, _, _) in enumerate(rate):
            gone = Signal(49, name=f"gone{k}")
            m.d.comb += gone.eq(it.rx_cycle - b.at)
            # Clamped: past 2**32 cycles any bucket is full (its cap is at most CARD_CLOCK_HZ).
            m.d.sync += since[k].eq(Mux(gone[48], 0, Mux(gone[32:48].any(), 1 << 32, gone[:32])))

        # S2
        notional = Signal(RISK_NOTIONAL_BITS)
        off = Signal(RISK_PRICE_BITS + 1)               # |price - reference_px|
        exposure = Signal(signed(RISK_QTY_BITS + 3))
        diff = Signal(signed(RISK_PRICE_BITS + 1))
        m.d.comb += diff.eq(it.price - s_lim.reference_px)
        credit = [Signal(RISK_CREDIT_BITS, name=f"credit{k}") for k in range(2)]
        period = [Signal(RISK_CREDIT_BITS, name=f"period{k}") for k in range(2)]
        for k, (b, per, cap) in enumerate(rate):
            grown = Signal(RISK_CREDIT_BITS + 2, name=f"grown{k}")
            m.d.comb += grown.eq(b.credit + since[k])
            m.d.sync += [credit[k].eq(Mux(grown > cap, cap, grown)), period[k].eq(per)]
        m.d.sync += [
            notional.eq(prod[0] + ((prod[1] + prod[2]) << 16) + (prod[3] << 32)),
            off.eq(Mux(diff < 0, -diff, diff)),
            exposure.eq(Mux(buy, pos, -pos) + way + it.qty),
        ]

        # S3
        flags = Signal(data.StructLayout({
            "reduce": 1, "qty": 1, "notional": 1, "collar": 1, "position": 1, "token": 2}))
        m.d.sync += [flags.token[k].eq((period[k] != 0) & (credit[k] >= period[k]))
                     for k in range(2)]
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
            (Reject.RATE_CARD, ~flags.token[0]),
            (Reject.RATE_INSTRUMENT, ~flags.token[1]),
        ]
        assert [r for r, _ in checks] == list(Reject)[1:], "checks must follow Reject's order"
        reason = Signal(Reject)
        with m.If(checks[0][1]):
            m.d.comb += reason.eq(checks[0][0])
        for r, failed in checks[1:]:
            with m.Elif(failed):
                m.d.comb += reason.eq(r)

        decide = v[3]
        take = Signal()                                 # S4 sent an order
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
        # A take: both buckets keep their credit at this intent's cycle, less a token.
        with m.If(take & ~self.load):
            m.d.sync += [card_bucket.credit.eq(credit[0] - period[0]),
                         card_bucket.at.eq(it.rx_cycle)]
            for i in range(W):
                with m.If(it.slot == i):
                    m.d.sync += [buckets[i].credit.eq(credit[1] - period[1]),
                                 buckets[i].at.eq(it.rx_cycle)]

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
