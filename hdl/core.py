"""The card's core: GMII in, market data to orders, GMII out.

    gmii -> FeedHandler -> OrderBook -> update -> Trigger -> RiskGate -> order queue
         -> OrderBuilder -> TxArbiter (orders first; host frames when idle) -> MacTx -> gmii_tx

The configuration inputs (triggers, limits, switches, the order template, watchlist and
subscriptions) come from the register bank; the outputs (updates, decisions, counters, latency)
go to it and to the simulation harnesses.

Orders that passed the risk gate wait in a small queue while the line is busy (a frame is 92
bytes and the MAC's gap 12, so an order takes 125 cycles of line; updates can come every 14). A
queued order starts only when the TX arbiter would take its first byte in the same cycle
(`TxArbiter.order_free`): the builder never holds a frame back from the wire, so the kill
switch has only the queue to empty. A set kill switch (the card's, or the order's instrument's)
discards the head of the queue every cycle, counted in `killed`: from the cycle the switch is
seen, no order frame starts. A discarded order stays open in the risk gate's exposure until the
host releases it (exposure is never understated).

Tick-to-trade latency is sampled when an order frame's first byte is taken by the MAC: the
cycles from its triggering message's last byte on the RX pins (`rx_cycle`, the feed handler's
clock) to that byte on the TX stream (MacTx's sink; its first preamble byte is on the TX pins
`MacTx.LATENCY` later).
"""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.beats import TxBeat, beats
from hdl.book import OrderBook, TopUpdate, WatchWrite
from hdl.feed import Counters, FeedHandler, SubscriptionWrite
from hdl.formats import (
    BOOK_COUNTERS,
    LATENCY_KINDS,
    RISK_POSITION_BITS,
    RISK_QTY_BITS,
    BookParams,
    Drop,
    Reject,
)
from hdl.latency import KindStats, LatencyCounters
from hdl.mac_rx import GmiiRx
from hdl.mac_tx import GmiiTx, MacTx
from hdl.order_builder import OrderBuilder, TemplateLayout
from hdl.risk import CardLimits, Decision, HostOp, RiskGate, SlotLimits
from hdl.trigger import Intent, Trigger, TriggerConfig, select
from hdl.tx_arbiter import TxArbiter

__all__ = ["Core", "SentOrder", "ORDER_QUEUE"]

ORDER_QUEUE = 16        # orders waiting for the line
FCS_RING = 64           # frames whose verdicts are kept (a power of two)


class SentOrder(data.Struct):
    """An order whose frame started: the intent, and the cycle its first byte went to the MAC."""
    intent: Intent
    tx_cycle: 48


class Core(wiring.Component):
    def __init__(self, book: BookParams | None = None):
        self.book_params = p = book or BookParams()
        W = p.slots
        super().__init__({
            "gmii": In(GmiiRx),
            "gmii_tx": Out(GmiiTx),
            "own_mac": In(48),
            "sub_write": In(beats(SubscriptionWrite)),
            "watch_write": In(beats(WatchWrite)),
            # Tick-to-trade configuration.
            "triggers": In(data.ArrayLayout(TriggerConfig, W)),
            "card_limits": In(CardLimits),
            "slot_limits": In(data.ArrayLayout(SlotLimits, W)),
            # Pulsed with every change of the triggers or limits (the risk gate recomputes what
            # it derives from them, and its token buckets start full).
            "limits_load": In(1),
            "kill_card": In(1), "kill": In(W),
            "fcs_safe": In(1),              # orders wait for their frame's good FCS
            "reduce_only_card": In(1), "reduce_only": In(W),
            "host_op": In(stream.Signature(HostOp)),
            # (Not `template`: a C++ keyword, which Verilator renames.)
            "order_template": In(TemplateLayout),
            "next_user_ref": In(32), "set_user_ref": In(1),
            "host_tx": In(stream.Signature(TxBeat)),     # frames the host injects
            # Out.
            "update": Out(beats(TopUpdate)),
            "decision": Out(beats(Decision)),
            "sent": Out(beats(SentOrder)),
            "counters": Out(Counters),
            "book_counters": Out(data.ArrayLayout(32, len(BOOK_COUNTERS))),
            "risk_counters": Out(data.ArrayLayout(32, len(Reject))),
            "latency": Out(data.ArrayLayout(KindStats, len(LATENCY_KINDS))),
            "position": Out(data.ArrayLayout(signed(RISK_POSITION_BITS), W)),
            "open": Out(data.ArrayLayout(data.ArrayLayout(RISK_QTY_BITS, 2), W)),
            "tx_frames": Out(32), "tx_underruns": Out(32),
            "trigger_overruns": Out(32), "killed": Out(32),
            "bad_frame_orders": Out(32),    # cut-through: sent from a frame then dropped
            "fcs_discarded": Out(32),       # FCS-safe: not sent, their frame was dropped
        })

    def elaborate(self, platform):
        m = Module()
        W = self.book_params.slots
        m.submodules.feed = feed = FeedHandler()
        m.submodules.book = book = OrderBook(self.book_params)
        wiring.connect(m, wiring.flipped(self.gmii), feed.gmii)
        wiring.connect(m, wiring.flipped(self.sub_write), feed.sub_write)
        wiring.connect(m, wiring.flipped(self.watch_write), book.watch_write)
        m.d.comb += feed.own_mac.eq(self.own_mac)
        wiring.connect(m, feed.message, book.message)
        wiring.connect(m, feed.head, book.head)
        m.d.comb += book.early_price.eq(feed.early_price)
        wiring.connect(m, feed.verdict, book.verdict)
        wiring.connect(m, feed.gap, book.gap)
        wiring.connect(m, feed.counters, wiring.flipped(self.counters))
        m.d.comb += self.book_counters.eq(book.counters)

        # The book's updates go out and to the triggers.
        m.submodules.trigger = trigger = Trigger(W)
        m.d.comb += [
            self.update.valid.eq(book.update.valid), self.update.payload.eq(book.update.payload),
            trigger.update.valid.eq(book.update.valid),
            trigger.update.payload.eq(book.update.payload),
            trigger.config.eq(self.triggers), trigger.next_slot.eq(book.next_slot),
            self.trigger_overruns.eq(trigger.overruns),
        ]

        m.submodules.gate = gate = RiskGate(W)
        wiring.connect(m, trigger.intent, gate.intent)
        wiring.connect(m, wiring.flipped(self.host_op), gate.host_op)
        m.d.comb += [
            gate.card.eq(self.card_limits), gate.limits.eq(self.slot_limits),
            *[gate.order_qty[i].eq(self.triggers[i].order_qty) for i in range(W)],
            gate.load.eq(self.limits_load), gate.next_slot.eq(book.next_slot),
            gate.update.valid.eq(book.update.valid), gate.update.payload.eq(book.update.payload),
            gate.kill_card.eq(self.kill_card), gate.kill.eq(self.kill),
            gate.reduce_only_card.eq(self.reduce_only_card),
            gate.reduce_only.eq(self.reduce_only),
            self.decision.valid.eq(gate.decision.valid),
            self.decision.payload.eq(gate.decision.payload),
            self.risk_counters.eq(gate.counters),
            self.position.eq(gate.position), self.open.eq(gate.open),
        ]

        # The order queue. An order decided while the queue is empty may start in the same
        # cycle without entering it; otherwise it waits its turn.
        m.submodules.queue = queue = fifo.SyncFIFO(width=len(gate.order.payload.as_value()),
                                                   depth=ORDER_QUEUE)
        direct = ~queue.r_rdy
        head = data.View(Intent, Mux(direct, gate.order.payload.as_value(), queue.r_data))
        waiting = Mux(direct, gate.order.valid, queue.r_rdy)

        m.submodules.builder = builder = OrderBuilder()
        m.submodules.arbiter = arbiter = TxArbiter()
        m.submodules.mac_tx = mac_tx = MacTx()
        killed = waiting & (self.kill_card | self.kill.bit_select(head.slot, 1))

        # The verdicts of the recent frames, by frame number (`Intent.frame`): known and good.
        # A verdict sets its frame's entry and clears the one half the ring ahead, which its
        # frame cannot have reached yet. An order more than half the ring older than the
        # frames' verdicts is stale: the ring no longer knows its frame.
        verdict = feed.verdict
        known, good = Signal(FCS_RING), Signal(FCS_RING)
        early = Signal(data.ArrayLayout(range(ORDER_QUEUE + 2), FCS_RING))  # sent unverified
        next_frame = Signal(16)
        k = next_frame[:FCS_RING.bit_length() - 1]
        h_at = head.frame[:FCS_RING.bit_length() - 1]
        age = Signal(16)
        m.d.comb += age.eq(next_frame - head.frame)
        stale = age > FCS_RING // 2
        h_known = known.bit_select(h_at, 1) & ~stale
        h_bad = (h_known & ~good.bit_select(h_at, 1)) | stale
        h_pending = ~known.bit_select(h_at, 1) & ~stale
        # FCS-safe: an order waits for its frame's verdict, and goes only if the frame was good.
        hold = self.fcs_safe & h_pending
        unsafe = waiting & ~killed & self.fcs_safe & h_bad
        start = waiting & ~killed & ~hold & ~unsafe & arbiter.order_free & builder.sink.ready
        m.d.comb += [
            builder.template.eq(self.order_template),
            builder.next_user_ref.eq(self.next_user_ref),
            builder.set_user_ref.eq(self.set_user_ref),
            builder.sink.valid.eq(start),
            builder.sink.payload.side.eq(head.side),
            builder.sink.payload.qty.eq(head.qty),
            builder.sink.payload.price.eq(head.price),
            builder.sink.payload.symbol.eq(select(m, book.symbols, head.slot, "order_symbol")),
            queue.w_data.eq(gate.order.payload),
            queue.w_en.eq(gate.order.valid & ~(direct & (start | killed | unsafe))),
            gate.order.ready.eq(queue.w_rdy),
            queue.r_en.eq(~direct & (start | killed | unsafe)),
        ]
        with m.If(killed):
            m.d.sync += self.killed.eq(self.killed + 1)
        with m.If(unsafe):
            m.d.sync += self.fcs_discarded.eq(self.fcs_discarded + 1)

        # Cut-through: an order sent from a frame whose verdict then (or already) says dropped
        # is counted in `bad_frame_orders` (the card acted on a frame it should not have).
        now_bad = start & h_bad
        later = start & h_pending
        late_bad = Signal(range(ORDER_QUEUE + 3))
        with m.If(verdict.valid):
            bad = verdict.payload.drop != Drop.NONE
            m.d.sync += [known.bit_select(k, 1).eq(1), good.bit_select(k, 1).eq(~bad),
                         known.bit_select(k ^ (FCS_RING // 2), 1).eq(0),
                         early[k ^ (FCS_RING // 2)].eq(0), next_frame.eq(next_frame + 1)]
            with m.If(bad):
                # This frame's orders sent before now, and one sent in this very cycle.
                m.d.comb += late_bad.eq(early[k] + (later & (h_at == k)))
        with m.If(later & ~(verdict.valid & (h_at == k))):
            m.d.sync += early[h_at].eq(early[h_at] + 1)
        with m.If(now_bad | (late_bad != 0)):
            m.d.sync += self.bad_frame_orders.eq(self.bad_frame_orders + now_bad + late_bad)
        wiring.connect(m, builder.source, arbiter.orders)
        wiring.connect(m, wiring.flipped(self.host_tx), arbiter.host)
        wiring.connect(m, arbiter.source, mac_tx.sink)
        wiring.connect(m, mac_tx.gmii, wiring.flipped(self.gmii_tx))
        m.d.comb += [self.tx_frames.eq(mac_tx.frames), self.tx_underruns.eq(mac_tx.underruns)]

        # A frame starts in the cycle its request is taken (builder and arbiter add no cycle).
        started = start
        m.submodules.latency = latency = LatencyCounters()
        elapsed = Signal(49)
        m.d.comb += [
            elapsed.eq(feed.cycle - head.rx_cycle),
            latency.sample.valid.eq(started),
            latency.sample.payload.kind.eq(~head.add),
            latency.sample.payload.cycles.eq(Mux(elapsed[16:].any(), 0xFFFF, elapsed[:16])),
            self.latency.eq(latency.stats),
            self.sent.valid.eq(started),
            self.sent.payload.intent.eq(head),
            self.sent.payload.tx_cycle.eq(feed.cycle),
        ]
        return m
