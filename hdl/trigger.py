"""Triggers: top-of-book updates in, order intents out (the twin of `host.model.trigger`).

Per watched instrument (slot) and side, a condition on the slot's new top of book:

    buy:  buy_on  and 0 < ask_px <= buy_below  and ask_qty >= min_qty
    sell: sell_on and 0 < bid_px and bid_px >= sell_above and bid_qty >= min_qty

An intent is made when a condition *becomes* true (edge-triggered: `was` keeps each condition
as the slot's last update left it; a clear makes them all false). The intent is an
immediate-or-cancel order at the touched price for min(order_qty, touched shares); the risk gate
(`hdl.risk`) decides what becomes of it. An intent is offered in its update's own cycle; the gate
takes one intent at a time: when one update fires both sides (a crossed configuration), buy goes
first and sell waits in its own register. A fire that finds its side's register still full (the gate
held up by a full order queue) is lost and counted in `overruns`: the models have no such
limit, so a test seeing one knows the card fell behind, not that it disagreed.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.beats import beats
from hdl.book import TopUpdate
from hdl.formats import BOOK_BUY, BOOK_SELL, RISK_PRICE_BITS, RISK_QTY_BITS

__all__ = ["TriggerConfig", "Intent", "Terms", "Trigger", "select"]


class TriggerConfig(data.Struct):
    """One slot's trigger, as the host loads it (`host.config.Instrument`)."""
    buy_on: 1                     # buy_below is set
    buy_below: RISK_PRICE_BITS
    sell_on: 1                    # sell_above is set
    sell_above: RISK_PRICE_BITS
    min_qty: RISK_QTY_BITS
    order_qty: RISK_QTY_BITS


class Intent(data.Struct):
    """An order the triggers want; `halted` and `uncertain` are the causing update's."""
    slot: 8
    side: 1                       # BOOK_BUY or BOOK_SELL
    qty: RISK_QTY_BITS
    price: RISK_PRICE_BITS
    halted: 1
    uncertain: 1
    index: 32                     # the ITCH message whose update made it
    rx_cycle: 48
    add: 1                        # made by an add (A/F) rather than a removal (E/C/X/D/U)
    frame: 16                     # the frame that carried that message (`ItchMessage.frame`)
    fresh: 1                      # offered in its update's own cycle (the gate's fast path
                                  # checks it against that update)


class Terms(data.Struct):
    """An intent's price and qty."""
    price: RISK_PRICE_BITS
    qty: RISK_QTY_BITS


def select(m: Module, rows, index, name: str):
    """rows[index] as a Signal, from a Switch (a Value index into an ArrayLayout would be a
    shifter as wide as the whole array)."""
    out = Signal(rows.shape().elem_shape, name=name)
    with m.Switch(index):
        for i in range(len(rows)):
            with m.Case(i):
                m.d.comb += out.eq(rows[i])
    return out


class Trigger(wiring.Component):
    def __init__(self, slots: int):
        self.slots = slots
        super().__init__({
            "update": In(beats(TopUpdate)),
            "config": In(data.ArrayLayout(TriggerConfig, slots)),
            # The slot of the book's message now: the slot of its update from at least the
            # cycle before it is valid (`OrderBook.next_slot`), so its row is selected ahead.
            "next_slot": In(range(slots)),
            "intent": Out(stream.Signature(Intent)),
            # The offered intent's price and qty were it of either side (indexed by side):
            # the payload's are terms[payload.side]. These do not wait on the compares that
            # choose the side, so the gate registers both and picks by the side it registered.
            "terms": Out(data.ArrayLayout(Terms, 2)),
            # The sides whose condition became true with this update (indexed by side). A
            # fresh offer is buy's intent if fire[BOOK_BUY], else sell's: the gate's fast path
            # decides on these bits rather than on the payload's side and `valid` built from them.
            "fire": Out(2),
            "overruns": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        W = self.slots
        u, uv = self.update.payload, self.update.valid

        cfg = Signal(TriggerConfig)
        m.d.sync += cfg.eq(select(m, self.config, self.next_slot, "cfg_ahead"))
        buy = Signal()
        sell = Signal()
        m.d.comb += [
            buy.eq(cfg.buy_on & (u.ask_px != 0) & (u.ask_px <= cfg.buy_below)
                   & (u.ask_qty >= cfg.min_qty)),
            sell.eq(cfg.sell_on & (u.bid_px != 0) & (u.bid_px >= cfg.sell_above)
                    & (u.bid_qty >= cfg.min_qty)),
        ]
        # `was` takes an update's conditions a cycle late, from registers (so that the
        # compares load two flip-flops, not a row decoder), and the next update reads the
        # pending one through `last`.
        was = [Signal(W, name="was_buy"), Signal(W, name="was_sell")]
        ours = uv & ~u.clear & (u.slot < W)
        last = Signal(data.StructLayout({"ours": 1, "clear": 1, "slot": range(W),
                                         "cond": 2}))
        m.d.sync += [last.ours.eq(ours), last.clear.eq(uv & u.clear),
                     last.slot.eq(u.slot), last.cond.eq(Cat(buy, sell))]
        with m.If(last.ours):
            for side in (BOOK_BUY, BOOK_SELL):
                m.d.sync += was[side].bit_select(last.slot, 1).eq(last.cond[side])
        with m.If(last.clear):
            m.d.sync += [was[BOOK_BUY].eq(0), was[BOOK_SELL].eq(0)]
        was_now = [Mux(last.ours & (last.slot == u.slot), last.cond[side],
                       ~last.clear & was[side].bit_select(u.slot, 1))
                   for side in (BOOK_BUY, BOOK_SELL)]
        fire = [Signal(name="fire_buy"), Signal(name="fire_sell")]
        m.d.comb += [fire[BOOK_BUY].eq(ours & buy & ~was_now[BOOK_BUY]),
                     fire[BOOK_SELL].eq(ours & sell & ~was_now[BOOK_SELL]),
                     self.fire.eq(Cat(fire))]
        # A fresh intent is offered in its update's own cycle. What is not taken then waits in
        # its side's register; offers go oldest first, buy before sell.
        fresh = [Signal(Intent, name="fresh_buy"), Signal(Intent, name="fresh_sell")]
        for side, (px, qty) in ((BOOK_BUY, (u.ask_px, u.ask_qty)),
                                (BOOK_SELL, (u.bid_px, u.bid_qty))):
            f = fresh[side]
            m.d.comb += [
                f.slot.eq(u.slot), f.side.eq(side),
                f.qty.eq(Mux(qty < cfg.order_qty, qty, cfg.order_qty)), f.price.eq(px),
                f.halted.eq(u.halted), f.uncertain.eq(u.uncertain),
                f.index.eq(u.index), f.rx_cycle.eq(u.rx_cycle),
                f.add.eq((u.cause == ord("A")) | (u.cause == ord("F"))), f.frame.eq(u.frame),
                f.fresh.eq(1),
            ]
        held = [Signal(Intent, name="held_buy"), Signal(Intent, name="held_sell")]
        full = [Signal(name="full_buy"), Signal(name="full_sell")]
        # Offers go held buy, held sell, fresh buy, fresh sell. What the offer is and whether a
        # held one is taken depend on registers only (`full`, the gate's `ready`); the update's
        # compares reach only the fresh side's fields, `valid` and the registers' data, so the
        # acceptance cycle does not wait on a priority chain behind them.
        held_any = full[BOOK_BUY] | full[BOOK_SELL]
        held_first = [full[BOOK_BUY], ~full[BOOK_BUY] & full[BOOK_SELL]]
        offer_held = Signal(Intent)
        m.d.comb += [
            offer_held.eq(Mux(full[BOOK_BUY], held[BOOK_BUY], held[BOOK_SELL])),
            self.intent.valid.eq(held_any | fire[BOOK_BUY] | fire[BOOK_SELL]),
            self.intent.payload.eq(Mux(held_any, offer_held, fresh[BOOK_SELL])),
            self.intent.payload.fresh.eq(~held_any),
        ]
        # The offer's price and qty were it of either side, apart from the compares that
        # choose the side: the gate registers both and picks by the registered side.
        x = self.intent.payload
        for side in (BOOK_BUY, BOOK_SELL):
            m.d.comb += [
                self.terms[side].price.eq(Mux(held_any, offer_held.price, fresh[side].price)),
                self.terms[side].qty.eq(Mux(held_any, offer_held.qty, fresh[side].qty)),
            ]
        m.d.comb += [
            x.side.eq(Mux(held_any, offer_held.side, Mux(fire[BOOK_BUY], BOOK_BUY, BOOK_SELL))),
            x.price.eq(Mux(x.side == BOOK_BUY, self.terms[BOOK_BUY].price,
                           self.terms[BOOK_SELL].price)),
            x.qty.eq(Mux(x.side == BOOK_BUY, self.terms[BOOK_BUY].qty,
                         self.terms[BOOK_SELL].qty)),
        ]
        ready = self.intent.ready
        fresh_taken = [ready & ~held_any & fire[BOOK_BUY],
                       ready & ~held_any & ~fire[BOOK_BUY] & fire[BOOK_SELL]]
        overrun = Signal(2)
        for side in (BOOK_BUY, BOOK_SELL):
            # A free register (or one whose intent is taken now) loads the fresh intent, which
            # it keeps only if the side fired and its intent was not taken at once; a full one
            # not taken loses a fire.
            free = ~full[side] | (ready & held_first[side])
            with m.If(free):
                m.d.sync += [full[side].eq(fire[side] & ~fresh_taken[side]),
                             held[side].eq(fresh[side]), held[side].fresh.eq(0)]
            m.d.comb += overrun[side].eq(fire[side] & ~free)
        # Counted a cycle later, from a register: bookkeeping the triggers never read back.
        lost = Signal(2)
        m.d.sync += lost.eq(overrun)
        with m.If(lost.any()):
            m.d.sync += self.overruns.eq(self.overruns + lost[0] + lost[1])
        return m
