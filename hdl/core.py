"""The card's core: GMII in, market data to orders, GMII out.

    gmii -> FeedHandler -> OrderBook -> update -> Trigger -> RiskGate -> OrderOut -> gmii_tx

OrderOut (`hdl.order_out`) is everything after the gate: the order queue, the kill switches and
the FCS checks, OrderBuilder -> TxArbiter (orders first; host frames when idle) -> MacTx, the
tick-to-trade latency counters and the order accounting. It is a block of its own so that it
can be synthesised and routed on its own.

The configuration inputs (triggers, limits, switches, the order template, watchlist and
subscriptions) come from the register bank; the outputs (updates, decisions, counters, latency)
go to it and to the simulation harnesses. `sent` reports an order one cycle after its frame
started (`SentOrder.tx_cycle` is the start's cycle), the latency counters two, `killed` and
`fcs_discarded` one cycle after the discard, `bad_frame_orders` three. OrderOut takes the
feed's frame verdicts a cycle after the feed gives them. An instrument's kill switch acts one
cycle after it is set; the card's in its own cycle.
"""

from amaranth import Module, signed
from amaranth.lib import data, stream, wiring
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
    Reject,
)
from hdl.latency import KindStats
from hdl.mac_rx import GmiiRx
from hdl.mac_tx import GmiiTx
from hdl.order_builder import TemplateLayout
from hdl.order_out import ORDER_QUEUE, OrderOut, SentOrder
from hdl.risk import CardLimits, Decision, HostOp, RiskGate, SlotLimits
from hdl.trigger import Trigger, TriggerConfig

__all__ = ["Core", "SentOrder", "ORDER_QUEUE", "feed_the_book"]


def feed_the_book(m: Module, feed: FeedHandler, book: OrderBook) -> None:
    """The feed handler's decoded messages, heads, early fields, verdicts and gaps into the
    book (the core's wiring, and `make bench`'s feed handler + book)."""
    wiring.connect(m, feed.message, book.message)
    wiring.connect(m, feed.head, book.head)
    m.d.comb += [book.early_price.eq(feed.early_price), book.early_d.eq(feed.early_d),
                 book.early_af.eq(feed.early_af), book.early_ref.eq(feed.early_ref),
                 book.early_stock.eq(feed.early_stock)]
    wiring.connect(m, feed.verdict, book.verdict)
    wiring.connect(m, feed.gap, book.gap)


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
            "user_ref_next": Out(32),      # the UserRefNum the next order frame takes
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
        feed_the_book(m, feed, book)
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
        m.d.comb += [gate.terms.eq(trigger.terms), gate.fire.eq(trigger.fire)]
        wiring.connect(m, wiring.flipped(self.host_op), gate.host_op)
        m.d.comb += [
            gate.card.eq(self.card_limits), gate.limits.eq(self.slot_limits),
            *[gate.order_qty[i].eq(self.triggers[i].order_qty) for i in range(W)],
            gate.load.eq(self.limits_load), gate.next_slot.eq(book.next_slot),
            gate.next_rx_cycle.eq(book.next_rx_cycle),
            gate.update.valid.eq(book.update.valid), gate.update.payload.eq(book.update.payload),
            gate.kill_card.eq(self.kill_card), gate.kill.eq(self.kill),
            gate.reduce_only_card.eq(self.reduce_only_card),
            gate.reduce_only.eq(self.reduce_only),
            self.decision.valid.eq(gate.decision.valid),
            self.decision.payload.eq(gate.decision.payload),
            self.risk_counters.eq(gate.counters),
            self.position.eq(gate.position), self.open.eq(gate.open),
        ]

        # Everything after the gate: the order queue, the frames, the TX MAC, the accounting.
        # `ahead` is the intent the gate is offered in each cycle it could accept one: the last
        # is the one it accepted, whose `order` comes later. (Not `intent.valid` too: it is the
        # end of the triggers' compares, and into the status of the gate's order it was among
        # the placed core's longest paths, docs/book-timing.md.)
        m.submodules.out = out = OrderOut(W)
        wiring.connect(m, gate.order, out.order)
        # The frames' verdicts reach the order queue a cycle late, through a register of their
        # own: from the feed's decoder across the chip into every queued order's FCS status they
        # were among the placed core's longest paths (docs/book-timing.md). A frame's verdict
        # comes after its last message, so an FCS-safe order waits one cycle more for it.
        m.d.sync += [out.verdict.valid.eq(feed.verdict.valid),
                     out.verdict.payload.eq(feed.verdict.payload)]
        m.d.comb += [
            out.ahead.valid.eq(gate.intent.ready),
            out.ahead.payload.eq(trigger.intent.payload),
            out.cycle.eq(feed.cycle),
            out.kill_card.eq(self.kill_card), out.kill.eq(self.kill),
            out.fcs_safe.eq(self.fcs_safe),
            out.order_template.eq(self.order_template), out.symbols.eq(book.symbols),
            out.next_user_ref.eq(self.next_user_ref), out.set_user_ref.eq(self.set_user_ref),
            self.sent.valid.eq(out.sent.valid), self.sent.payload.eq(out.sent.payload),
            self.latency.eq(out.latency),
            self.tx_frames.eq(out.tx_frames), self.tx_underruns.eq(out.tx_underruns),
            self.user_ref_next.eq(out.user_ref_next),
            self.killed.eq(out.killed), self.bad_frame_orders.eq(out.bad_frame_orders),
            self.fcs_discarded.eq(out.fcs_discarded),
        ]
        wiring.connect(m, wiring.flipped(self.host_tx), out.host_tx)
        wiring.connect(m, out.gmii_tx, wiring.flipped(self.gmii_tx))
        return m
