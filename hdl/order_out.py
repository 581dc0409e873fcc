"""The order output path: the risk gate's orders in, order frames on GMII TX out.

    gate.order -> order queue -> OrderBuilder -> TxArbiter (orders first; host frames when idle)
               -> MacTx -> gmii_tx

Orders that passed the risk gate wait in a small queue while the line is busy (a frame is 92
bytes and the MAC's gap 12, so an order takes 125 cycles of line; updates can come every 14). A
queued order starts only when the TX arbiter would take its first byte in the same cycle
(`TxArbiter.order_free`): the builder never holds a frame back from the wire, so the kill
switch has only the queue to empty. A set kill switch (the card's, or the order's instrument's)
discards the head of the queue every cycle, counted in `killed`: no order frame starts from the
cycle the card's switch is set, or from the cycle after an instrument's is (that one is read
through a register, with the candidate's slot, so the start reads one bit for it). A discarded
order stays open in the risk gate's exposure until the host releases it (exposure is never
understated). An order offered while the queue is empty may start in its own cycle without
entering it.

FCS: every frame ends in one verdict (`verdict`, in frame order), and an order carries the
number of its message's frame (`Intent.frame`: the verdicts before it). The verdicts of the
last FCS_RING frames are kept in a ring (known, good), read as it always was: an order whose
frame is more than half the ring older than the verdicts is stale (its frame is treated as
dropped). In FCS-safe mode (`fcs_safe`) an order waits for its frame's verdict and goes only if
the frame was good, else it is discarded (`fcs_discarded`); in cut-through mode an order sent
from a frame whose verdict then (or already) says dropped is counted in `bad_frame_orders`.

Timing: the start of a frame is one cycle's decision that fans out to the builder, the arbiter
and the MAC, so every term of it comes from registers. An order's FCS status (pending, good,
bad or stale) is a function of its frame and the verdicts so far, so it is computed once, when
the risk gate accepts the intent (`ahead`, at least one cycle before the gate can offer it as
an order), and then follows each verdict: only a verdict for the order's own ring entry (its
frame's: pending to good or bad) or for the entry half the ring away (the order becomes stale)
changes it. Each queued order carries its status in a shift register beside the queue's memory,
so the head's is always a register. The bookkeeping no decision needs in the same cycle (`sent`,
the latency sample, the counters, the cut-through accounting) runs on registered copies one to
three cycles later, and reports what the start cycle saw (`SentOrder.tx_cycle` is the start's).

Tick-to-trade latency is sampled when an order frame's first byte is taken by the MAC: the
cycles from its triggering message's last byte on the RX pins (`Intent.rx_cycle`, on `cycle`)
to that byte on the TX stream (MacTx's sink; its first preamble byte is on the TX pins
`MacTx.LATENCY` later). The builder and the arbiter add no cycle: the frame's first byte is
taken in the cycle its order starts.
"""

from amaranth import Array, Cat, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hdl.beats import TxBeat, beats
from hdl.formats import LATENCY_KINDS, BookParams, Drop
from hdl.itch import Verdict
from hdl.latency import KindStats, LatencyCounters
from hdl.mac_tx import GmiiTx, MacTx
from hdl.order_builder import OrderBuilder, TemplateLayout
from hdl.trigger import Intent, select
from hdl.tx_arbiter import TxArbiter

__all__ = ["OrderOut", "SentOrder", "ORDER_QUEUE", "FCS_RING"]

ORDER_QUEUE = 16        # orders waiting for the line (a power of two)
FCS_RING = 64           # frames whose verdicts are kept (a power of two)
_RING_BITS = FCS_RING.bit_length() - 1
_HALF = FCS_RING // 2


class SentOrder(data.Struct):
    """An order whose frame started: the intent, and the cycle its first byte went to the MAC."""
    intent: Intent
    tx_cycle: 48


class _Status(data.Struct):
    """An order's FCS status as the verdict ring says: pending (not `known`), good
    (`known` and `good`), bad (`known`, not `good`; `stale` too when the ring no longer knows
    its frame). `at` is its frame's ring entry, `slot` its instrument (the kill switches)."""
    known: 1
    good: 1
    stale: 1
    at: _RING_BITS
    slot: 8


class _Queued(data.Struct):
    """A queued order: the intent, and its instrument's symbol when the gate accepted it."""
    intent: Intent
    symbol: 64


class OrderOut(wiring.Component):
    """Ports:
    - `order`: the risk gate's orders; `ready` while the queue has room.
    - `ahead`: the intent the risk gate is offered, valid in every cycle it could accept one
      (its `intent.ready`: the last is the one it accepted). The gate offers an order only for
      the intent it accepted last, and at least one cycle later (`RiskGate`: one intent at a
      time, decided from registers), so its FCS status is registered by then.
    - `verdict`: the feed handler's frame verdicts; `cycle` its free-running cycle counter.
    - `kill_card`, `fcs_safe`: read in each start's cycle; `kill` (per slot): one cycle later.
    - `order_template`, `symbols` (by slot), `next_user_ref`, `set_user_ref`: the frames'. An
      order's symbol is its slot's in the cycle the gate accepted its intent (`ahead`), carried
      with it through the queue as its price and qty are.
    - `host_tx`: frames the host injects (sent when no order waits).
    - `gmii_tx`; `sent` (one cycle after the start), `latency` (stats), the counters.
    """

    def __init__(self, slots: int = BookParams().slots):
        self.slots = slots
        super().__init__({
            "order": In(stream.Signature(Intent)),
            "ahead": In(beats(Intent)),
            "verdict": In(beats(Verdict)),
            "cycle": In(48),
            "kill_card": In(1), "kill": In(slots),
            "fcs_safe": In(1),
            # (Not `template`: a C++ keyword, which Verilator renames.)
            "order_template": In(TemplateLayout),
            "symbols": In(data.ArrayLayout(64, slots)),
            "next_user_ref": In(32), "set_user_ref": In(1),
            "host_tx": In(stream.Signature(TxBeat)),
            "gmii_tx": Out(GmiiTx),
            "sent": Out(beats(SentOrder)),
            "latency": Out(data.ArrayLayout(KindStats, len(LATENCY_KINDS))),
            "tx_frames": Out(32), "tx_underruns": Out(32),
            "user_ref_next": Out(32),      # the UserRefNum the next order frame takes
            "killed": Out(32),
            "bad_frame_orders": Out(32),    # cut-through: sent from a frame then dropped
            "fcs_discarded": Out(32),       # FCS-safe: not sent, their frame was dropped
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.builder = builder = OrderBuilder()
        m.submodules.arbiter = arbiter = TxArbiter()
        m.submodules.mac_tx = mac_tx = MacTx()
        m.submodules.latency = latency = LatencyCounters()

        # -- the verdict ring --------------------------------------------------------------------
        # A verdict sets its frame's entry and clears the one half the ring ahead, which its
        # frame cannot have reached yet.
        verdict = self.verdict
        v_bad = verdict.payload.drop != Drop.NONE
        known, good = Signal(FCS_RING), Signal(FCS_RING)
        next_frame = Signal(16)
        k = next_frame[:_RING_BITS]
        with m.If(verdict.valid):
            m.d.sync += [known.bit_select(k, 1).eq(1), good.bit_select(k, 1).eq(~v_bad),
                         known.bit_select(k ^ _HALF, 1).eq(0), next_frame.eq(next_frame + 1)]
        # `next_frame`'s bits above the ring's, and that minus one, kept beside it (below).
        hi_now = next_frame[_RING_BITS:]
        hi_before = Signal(len(hi_now), init=-1 % 2 ** len(hi_now))
        with m.If(verdict.valid & (k == FCS_RING - 1)):
            m.d.sync += hi_before.eq(hi_now)

        def one_hot(slot: Value) -> Value:
            """`slot` as a mask of `self.slots` bits (none set for a slot out of range)."""
            return Cat(slot == i for i in range(self.slots))

        def follow(value: Value, name: str, at_k: Value | None = None,
                   at_half: Value | None = None) -> data.View:
            """`s` after this cycle's verdict (if any): its own entry's verdict makes a
            pending order good or bad; the entry half the ring away makes it stale (its frame
            is then more than half the ring older than the verdicts). `at_k`, `at_half`: the
            two comparisons of `s.at`, if they are at hand (registered)."""
            s = data.View(_Status, Value.cast(value))
            out = Signal(_Status, name=name)
            m.d.comb += out.eq(s)
            with m.If(verdict.valid & ~s.stale):
                with m.If(s.at == k if at_k is None else at_k):
                    m.d.comb += [out.known.eq(1), out.good.eq(~v_bad)]
                with m.Elif(s.at == (k ^ _HALF) if at_half is None else at_half):
                    m.d.comb += [out.known.eq(1), out.good.eq(0), out.stale.eq(1)]
            return out

        # -- the status of the intent the gate holds ---------------------------------------------
        # Computed from the ring when the gate accepts the intent; the gate's `order` is that
        # intent from the next cycle on.
        a_frame = self.ahead.payload.frame
        a_at = a_frame[:_RING_BITS]
        # Stale: (next_frame - a_frame) mod 2**16 > _HALF. Within _HALF behind, the frame's bits
        # above the ring's are `next_frame`'s, or one less when its ring bits are above
        # `next_frame`'s (the low subtract borrows), so the test is a subtract of the ring bits
        # and two equality compares against registers. As a 16-bit subtract and compare after
        # the triggers' select of the offered intent it led every seed of the small-table
        # core's route on d14a2e5 (docs/book-timing.md, "Twenty-first session").
        low = Signal(_RING_BITS + 1)        # the top bit: the borrow
        m.d.comb += low.eq(k - a_at)
        a_hi = a_frame[_RING_BITS:]
        a_stale = ~((low[:_RING_BITS] <= _HALF)
                    & Mux(low[_RING_BITS], a_hi == hi_before, a_hi == hi_now))
        a_status = Signal(_Status)
        m.d.comb += [
            a_status.stale.eq(a_stale),
            a_status.known.eq(known.bit_select(a_at, 1) | a_stale),
            a_status.good.eq(known.bit_select(a_at, 1) & good.bit_select(a_at, 1) & ~a_stale),
            a_status.at.eq(a_at), a_status.slot.eq(self.ahead.payload.slot),
        ]
        g = Signal(_Status)
        g_hot = Signal(self.slots)          # g.slot, one-hot (the kill switches)
        m.d.sync += g.eq(follow(Mux(self.ahead.valid, a_status, g), "g_next"))
        g_hot_next = Mux(self.ahead.valid, one_hot(self.ahead.payload.slot), g_hot)
        m.d.sync += g_hot.eq(g_hot_next)
        g_into = follow(g, "g_into")        # the gate's order's status after this cycle
        # The gate's order's symbol, selected when its intent is accepted, so that a frame's
        # start reads a register (or the queue's memory), not a 64-bit select of the slot
        # table by the candidate's slot.
        g_symbol = Signal(64)
        with m.If(self.ahead.valid):
            m.d.sync += g_symbol.eq(select(m, self.symbols, self.ahead.payload.slot, "a_symbol"))

        # -- the queue ---------------------------------------------------------------------------
        # The intents in a memory, the statuses in registers beside it (`at`: by address), each
        # following the verdicts. The gate's order is written at `w_ptr` whenever it is offered
        # and the queue has room; `w_ptr` moves on only if it stays (not started or discarded
        # while the queue was empty), so neither write depends on the start. The head's status
        # is kept apart in `h`, loaded from the entry behind it when the head leaves: the start
        # reads registers only. `q_valid` is a thermometer of the occupancy.
        mem = Memory(shape=_Queued, depth=ORDER_QUEUE, init=[])
        m.submodules.mem = mem
        wr, rd = mem.write_port(), mem.read_port(domain="comb")
        w_ptr, r_ptr = Signal(range(ORDER_QUEUE)), Signal(range(ORDER_QUEUE))
        r_next = Signal(range(ORDER_QUEUE), init=1)     # r_ptr + 1
        q_valid = Signal(ORDER_QUEUE)
        q = Array(Signal(_Status, name=f"q{i}") for i in range(ORDER_QUEUE))
        h, h_hot = Signal(_Status), Signal(self.slots)
        full, single = q_valid[-1], q_valid[0] & ~q_valid[1]
        write = self.order.valid & ~full
        m.d.comb += [
            rd.addr.eq(r_ptr), self.order.ready.eq(~full),
            wr.addr.eq(w_ptr), wr.data.intent.eq(self.order.payload),
            wr.data.symbol.eq(g_symbol), wr.en.eq(write),
        ]
        # Each entry's ring entry compared with the verdict's, registered (as the entry and
        # `next_frame` will be), so that following a verdict is one level of logic here. The
        # gate's order and the entry are compared apart, and `write` (the gate's order valid)
        # picks between the results last: choosing the `at` to compare first had hung every
        # entry's compares off that valid (`out.q*_at_k`, second in the placed core's longest
        # paths, docs/book-timing.md).
        k_next = Mux(verdict.valid, k + 1, k)[:_RING_BITS]
        g_at_k, g_at_half = g.at == k_next, g.at == (k_next ^ _HALF)
        q_next = []
        for i in range(ORDER_QUEUE):
            at_k, at_half = Signal(name=f"q{i}_at_k"), Signal(name=f"q{i}_at_half")
            q_next.append(follow(q[i], f"q{i}_next", at_k, at_half))
            written = write & (w_ptr == i)
            m.d.sync += [q[i].eq(Mux(written, g_into, q_next[i])),
                         at_k.eq(Mux(written, g_at_k, q[i].at == k_next)),
                         at_half.eq(Mux(written, g_at_half, q[i].at == (k_next ^ _HALF)))]

        # The candidate: the queue's head, or the gate's order while the queue is empty.
        direct = ~q_valid[0]
        head = data.View(Intent, Mux(direct, self.order.payload.as_value(),
                                     rd.data.intent.as_value()))
        head_symbol = Mux(direct, g_symbol, rd.data.symbol)
        # An instrument's kill switch as it was in the cycle before, for the candidate of now
        # (registered as `g_kill` and `h_kill` below); the card's as it is.
        g_kill, h_kill = Signal(), Signal()
        c_good = Mux(direct, g.good, h.good)
        c_known = Mux(direct, g.known, h.known)

        def fate(kill, status):
            """(start, killed, unsafe) of a candidate that is there. FCS-safe: an order waits
            for its frame's verdict, and goes only if the frame was good."""
            killed = self.kill_card | kill
            unsafe = ~killed & self.fcs_safe & status.known & ~status.good
            start = (~killed & (~self.fcs_safe | status.good)
                     & arbiter.order_free & builder.sink.ready)
            return start, killed, unsafe

        # The head's fate and the gate's order's apart, and the gate's order's `valid` ANDed
        # last: the head leaves (`pop`) on its own registers alone. As one fate of a candidate
        # that is there if `q_valid[0] | order.valid`, the gate's order's `valid` reached the
        # read pointer's and the next head's enables through five LUTs across the chip
        # (routed small-table core, docs/book-timing.md, "Twenty-second session").
        h_fate, g_fate = fate(h_kill, h), fate(g_kill, g)
        start, killed, unsafe = Signal(), Signal(), Signal()
        m.d.comb += [x.eq(Mux(direct, self.order.valid & gx, hx))
                     for x, gx, hx in zip((start, killed, unsafe), g_fate, h_fate, strict=True)]
        push = write & ~(direct & (g_fate[0] | g_fate[1] | g_fate[2]))
        pop = ~direct & (h_fate[0] | h_fate[1] | h_fate[2])
        with m.If(push):
            m.d.sync += w_ptr.eq(w_ptr + 1)
        with m.If(pop):
            m.d.sync += [r_ptr.eq(r_next), r_next.eq(r_next + 1)]
        for i in range(ORDER_QUEUE):
            above_valid = q_valid[i + 1] if i + 1 < ORDER_QUEUE else 0
            kept = Mux(pop, above_valid, q_valid[i])    # valid after the pop
            kept_below = Mux(pop, q_valid[i], q_valid[i - 1]) if i else 1
            m.d.sync += q_valid[i].eq(kept | (push & ~kept & kept_below))
        # The next head: the entry behind this one, or the gate's order if it enters behind the
        # last one or an empty queue. Each choice follows this cycle's verdict before `pop`
        # picks, so `pop` is the last multiplexer on the way.
        # The one-hot slot of the entry behind the head is kept in a register too (`b_hot`),
        # for the kill switches: loaded when that entry is written or the head moves on.
        r_after = Signal(range(ORDER_QUEUE), init=2)    # r_next + 1
        with m.If(pop):
            m.d.sync += r_after.eq(r_after + 1)
        b_hot = Signal(self.slots)
        double = q_valid[1] & ~q_valid[2]
        m.d.sync += b_hot.eq(Mux(pop, Mux(write & double, g_hot, one_hot(Array(q)[r_after].slot)),
                                 Mux(write & single, g_hot, b_hot)))
        behind = Array(q_next)[r_next]      # after this cycle's verdict
        behind_hot = b_hot
        h_stay = Mux(direct, g_into, follow(h, "h_next"))
        m.d.sync += [
            h.eq(Mux(pop, Mux(single, g_into, behind), h_stay)),
            h_hot.eq(Mux(pop, Mux(single, g_hot, behind_hot), Mux(direct, g_hot, h_hot))),
            g_kill.eq((self.kill & g_hot_next).any()),
            h_kill.eq(Mux(pop, Mux(single, (self.kill & g_hot).any(),
                                   (self.kill & behind_hot).any()),
                          Mux(direct, (self.kill & g_hot).any(), (self.kill & h_hot).any()))),
        ]

        # -- the frame ---------------------------------------------------------------------------
        m.d.comb += [
            builder.template.eq(self.order_template),
            builder.next_user_ref.eq(self.next_user_ref),
            builder.set_user_ref.eq(self.set_user_ref),
            builder.sink.valid.eq(start),
            builder.sink.payload.side.eq(head.side),
            builder.sink.payload.qty.eq(head.qty),
            builder.sink.payload.price.eq(head.price),
            builder.sink.payload.symbol.eq(head_symbol),
        ]
        wiring.connect(m, builder.source, arbiter.orders)
        wiring.connect(m, wiring.flipped(self.host_tx), arbiter.host)
        wiring.connect(m, arbiter.source, mac_tx.sink)
        wiring.connect(m, mac_tx.gmii, wiring.flipped(self.gmii_tx))
        m.d.comb += [self.tx_frames.eq(mac_tx.frames), self.tx_underruns.eq(mac_tx.underruns),
                     self.user_ref_next.eq(builder.user_ref_next)]

        # -- bookkeeping, one cycle later --------------------------------------------------------
        # Registered copies of what the start cycle saw (the candidate is loaded every cycle,
        # so only the one-bit events depend on `start`).
        s_start, s_killed, s_unsafe = Signal(), Signal(), Signal()
        s_intent, s_cycle = Signal(Intent), Signal(48)
        s_bad, s_pending = Signal(), Signal()       # the started order's frame: bad, no verdict
        m.d.sync += [
            s_start.eq(start), s_killed.eq(killed), s_unsafe.eq(unsafe),
            s_intent.eq(head), s_cycle.eq(self.cycle),
            s_bad.eq(c_known & ~c_good), s_pending.eq(~c_known),
        ]
        m.d.comb += [
            self.sent.valid.eq(s_start),
            self.sent.payload.intent.eq(s_intent),
            self.sent.payload.tx_cycle.eq(s_cycle),
        ]
        with m.If(s_killed):
            m.d.sync += self.killed.eq(self.killed + 1)
        with m.If(s_unsafe):
            m.d.sync += self.fcs_discarded.eq(self.fcs_discarded + 1)

        # The latency sample, one more cycle later (a 48-bit subtraction of its own).
        elapsed = Signal(49)
        m.d.comb += elapsed.eq(s_cycle - s_intent.rx_cycle)
        m.d.sync += [
            latency.sample.valid.eq(s_start),
            latency.sample.payload.kind.eq(~s_intent.add),
            latency.sample.payload.cycles.eq(Mux(elapsed[16:].any(), 0xFFFF, elapsed[:16])),
        ]
        m.d.comb += self.latency.eq(latency.stats)

        # Cut-through: an order sent from a frame whose verdict then (or already) says dropped
        # is counted in `bad_frame_orders` (the card acted on a frame it should not have).
        # `early` counts each frame's orders sent before its verdict. This runs one cycle late
        # on the start's registered status and a registered copy of the verdict, exactly as it
        # would have in time.
        d_valid, d_bad, d_k = Signal(), Signal(), Signal(_RING_BITS)
        m.d.sync += [d_valid.eq(verdict.valid), d_bad.eq(v_bad), d_k.eq(k)]
        h_at = s_intent.frame[:_RING_BITS]
        now_bad = s_start & s_bad
        later = s_start & s_pending
        early = Signal(data.ArrayLayout(range(ORDER_QUEUE + 2), FCS_RING))  # sent unverified
        with m.If(d_valid):
            m.d.sync += early[d_k ^ _HALF].eq(0)
        for j in range(FCS_RING):
            # Each entry counts up on its own (no read multiplexer before the adder); a count
            # in the cycle of the clear wins, as it did.
            with m.If(later & (h_at == j) & ~(d_valid & (d_k == j))):
                m.d.sync += early[j].eq(early[j] + 1)
        # The frame's orders sent before its bad verdict, and one sent in that very cycle,
        # registered apart and added one cycle later (after the ring's multiplexer), then
        # counted one more cycle later (after that adder).
        e_early = Signal(range(ORDER_QUEUE + 2))
        e_same, e_bad, e_now = Signal(), Signal(), Signal()
        m.d.sync += [e_early.eq(early[d_k]), e_same.eq(later & (h_at == d_k)),
                     e_bad.eq(d_valid & d_bad), e_now.eq(now_bad)]
        bad_add = Signal(range(ORDER_QUEUE + 4))
        m.d.sync += bad_add.eq(e_now + Mux(e_bad, e_early + e_same, 0))
        with m.If(bad_add != 0):
            m.d.sync += self.bad_frame_orders.eq(self.bad_frame_orders + bad_add)
        return m
