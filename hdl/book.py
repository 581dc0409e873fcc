"""The order book: decoded ITCH messages in, top-of-book updates out.

The semantics (watchlist, order table, price levels with orphans, clearing, uncertainty) are
specified by `host.model.book`, whose docstring is the reference; this file says how the card
does it in a few cycles.

Storage:
* The order table is `ways` memories of `sets` entries (block RAM), read together at the set
  `order_hash(ref)`. An entry holds the reference without the set bits (they are implied),
  instrument, side, price, remaining shares and the generation it was written in.
* The books are one row per watched instrument (bid and ask side: levels best first, orphan
  count and cut price), in a memory read asynchronously (LUT RAM), so a row is in a register one
  cycle after the message arrives.

A message is finished before the next can arrive: on the 8-bit datapath an ITCH message takes
at least 14 cycles (12 bytes and a 2-byte length), and the longest path below takes 4. So one
message is in flight, stage by stage (t0 is the cycle the decoded message is valid, two after
its last byte was on the pins):

    t0  find the slot (symbol or locate CAM); read the book row and the order's table set
    t1  A/F: add to the level; H: trading state; table hit/free from the set     -> update
    t2  A/F: write the new entry.  E/C/X/D/U: remove from the level, write the entry -> update
    t3  U: add the new order (its set was read at t1, with t2's write forwarded)  -> update

The update is registered: valid at t2 for A/F/H (4 cycles after the last byte), t3 for
E/C/X/D (5) and t4 for U (6).
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hdl.beats import beats
from hdl.formats import (
    BOOK_CLEAR_EVENTS,
    BOOK_COUNT_BITS,
    BOOK_GEN_BITS,
    BOOK_QTY_BITS,
    BookParams,
    Drop,
)
from hdl.itch import ItchMessage, Verdict
from hdl.moldudp64 import GapReport

__all__ = ["WatchWrite", "TopUpdate", "OrderBook", "BOOK_COUNTERS", "Level"]

BOOK_COUNTERS = ("updates", "unknown_ref", "clamped", "rejected", "duplicate_ref", "table_full",
                 "level_overflow", "clears")
BUY, SELL = 0, 1
TRADING = ord("T")


class WatchWrite(data.Struct):
    """Host write of one watchlist row; it restarts that slot's book (uncertain until a clear)."""
    slot: 8
    symbol: 64            # big-endian ASCII, space padded, as ITCH carries it
    enable: 1


class TopUpdate(data.Struct):
    """The top of book of one instrument after a message changed it (see host.model.book)."""
    slot: 8
    locate: 16
    bid_px: 32
    bid_qty: BOOK_QTY_BITS
    ask_px: 32
    ask_qty: BOOK_QTY_BITS
    uncertain: 1
    halted: 1
    clear: 1              # an S emptied every book; slot, locate and quote are 0
    state: 8              # trading state letter
    index: 32             # index of the causing ITCH message
    rx_cycle: 48          # RX cycle of its last byte


class Level(data.Struct):
    valid: 1
    px: 32
    qty: BOOK_QTY_BITS
    count: BOOK_COUNT_BITS


def side_layout(levels: int) -> data.StructLayout:
    return data.StructLayout({
        "levels": data.ArrayLayout(Level, levels),     # best first, valid ones first
        "orphans": BOOK_COUNT_BITS,
        "cut": 32,
    })


def entry_layout(p: BookParams) -> data.StructLayout:
    return data.StructLayout({
        "tag": 64 - ceil_log2(p.sets),     # the reference's bits above the set index
        "slot": range(p.slots),
        "side": 1,
        "px": 32,
        "shares": BOOK_QTY_BITS,
        "gen": BOOK_GEN_BITS,
    })


def order_hash(ref, sets: int):
    """`hdl.formats.order_hash` in gateware: XOR of the reference's log2(sets)-bit chunks."""
    bits = ceil_log2(sets)
    out = ref[:bits]
    for lo in range(bits, 64, bits):
        out = out ^ ref[lo:min(lo + bits, 64)]
    return out


def _better(is_bid, a, b):
    return Mux(is_bid, a > b, a < b)


class _SideOp:
    """Combinational edit of one side of a book row; `out` is the side afterwards."""

    def __init__(self, m: Module, levels: int, side, is_bid, name: str):
        self.m, self.n, self.side, self.is_bid = m, levels, side, is_bid
        self.out = Signal(side_layout(levels), name=f"{name}_out")
        self.taint = Signal(name=f"{name}_taint")       # the side can no longer vouch
        m.d.comb += self.out.eq(side)

    def _orphans(self, delta):
        total = Signal(BOOK_COUNT_BITS + 1)
        self.m.d.comb += [
            total.eq(self.side.orphans + delta),
            self.out.orphans.eq(total),
            self.taint.eq(total[-1]),
        ]

    def add(self, enable, px, qty, overflow):
        m, n, lv, out = self.m, self.n, self.side.levels, self.out
        eq = Cat(lv[i].valid & (lv[i].px == px) for i in range(n))
        bt = Cat(lv[i].valid & _better(self.is_bid, lv[i].px, px) for i in range(n))
        full = lv[n - 1].valid
        orphan = (self.side.orphans != 0) & ~_better(self.is_bid, px, self.side.cut)
        new = Signal(Level, name="new_level")
        m.d.comb += [new.valid.eq(1), new.px.eq(px), new.qty.eq(qty), new.count.eq(1)]
        with m.If(enable):
            with m.If(orphan):
                self._orphans(1)
            with m.Elif(eq.any()):
                for i in range(n):
                    with m.If(eq[i]):
                        qty_sum = Signal(BOOK_QTY_BITS + 1)
                        m.d.comb += [
                            qty_sum.eq(lv[i].qty + qty),
                            out.levels[i].qty.eq(qty_sum),
                            out.levels[i].count.eq(lv[i].count + 1),
                            self.taint.eq(qty_sum[-1] | lv[i].count.all()),
                        ]
            with m.Else():
                # Levels better than px stay, px goes in after them, the rest move down one.
                for i in range(n):
                    with m.If(~bt[i]):
                        with m.If((i == 0) | bt[i - 1 if i else 0]):
                            m.d.comb += out.levels[i].eq(new)
                        with m.Else():
                            m.d.comb += out.levels[i].eq(lv[i - 1 if i else 0])
                with m.If(full):
                    m.d.comb += overflow.eq(1)
                    with m.If(bt.all()):                # worse than every level: not kept
                        m.d.comb += out.cut.eq(px)
                        self._orphans(1)
                    with m.Else():
                        m.d.comb += out.cut.eq(lv[n - 1].px)
                        self._orphans(lv[n - 1].count)

    def remove(self, enable, px, qty, leaves):
        m, n, lv, out = self.m, self.n, self.side.levels, self.out
        eq = Cat(lv[i].valid & (lv[i].px == px) for i in range(n))
        count = Signal(BOOK_COUNT_BITS)
        m.d.comb += count.eq(0)
        for i in range(n):
            with m.If(eq[i]):
                m.d.comb += count.eq(lv[i].count - leaves)
        with m.If(enable):
            with m.If(eq.any()):
                for i in range(n):
                    with m.If(eq[i]):
                        m.d.comb += [out.levels[i].qty.eq(lv[i].qty - qty),
                                     out.levels[i].count.eq(count)]
                with m.If(count == 0):
                    # The level goes: everything from it on moves up one.
                    for i in range(n):
                        with m.If(eq[:i + 1].any()):
                            m.d.comb += out.levels[i].eq(lv[i + 1] if i + 1 < n else 0)
            with m.Elif(leaves):
                self._orphans(-1)


class OrderBook(wiring.Component):
    """See the module docstring and `host.model.book`."""

    def __init__(self, params: BookParams | None = None):
        self.params = p = params or BookParams()
        self._entry = entry_layout(p)
        self._side = side_layout(p.levels)
        self._row = data.ArrayLayout(self._side, 2)
        super().__init__({
            "message": In(beats(ItchMessage)),
            "verdict": In(beats(Verdict)),
            "gap": In(beats(GapReport)),
            "watch_write": In(beats(WatchWrite)),
            "update": Out(beats(TopUpdate)),
            "counters": Out(data.ArrayLayout(32, len(BOOK_COUNTERS))),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        W, set_bits = p.slots, ceil_log2(p.sets)
        count = {name: Signal(name=f"count_{name}") for name in BOOK_COUNTERS}
        for i, name in enumerate(BOOK_COUNTERS):
            with m.If(count[name]):
                m.d.sync += self.counters[i].eq(self.counters[i] + 1)

        # -- per-instrument registers ----------------------------------------------------------
        symbol = Signal(data.ArrayLayout(64, W))
        enabled = Signal(W)
        locate = Signal(data.ArrayLayout(16, W))
        known = Signal(W)                   # locate learned since the last clear
        state = Signal(data.ArrayLayout(8, W), init=[TRADING] * W)
        sticky = Signal(W)                  # uncertain until the next clear
        touched = Signal(W)                 # changed by messages of the frame now arriving
        row_valid = Signal(W)               # book row written since the last clear
        gen = Signal(BOOK_GEN_BITS, init=1)
        poisoned = Signal()
        taint = {name: Signal(W, name=f"taint_{name}")
                 for name in ("op", "dup", "full", "verdict", "gap")}
        sticky_set = Signal(W)
        m.d.comb += sticky_set.eq(taint["op"] | taint["dup"] | taint["full"]
                                  | taint["verdict"] | taint["gap"])
        m.d.sync += sticky.eq(sticky | sticky_set)

        with m.If(self.verdict.valid):
            m.d.sync += touched.eq(0)
            with m.If(self.verdict.payload.drop != Drop.NONE):
                m.d.comb += taint["verdict"].eq(touched)
        with m.If(self.gap.valid):
            m.d.comb += taint["gap"].eq(~0)

        ww = self.watch_write.payload
        with m.If(self.watch_write.valid):
            for i in range(W):
                with m.If(ww.slot == i):
                    m.d.sync += [symbol[i].eq(ww.symbol), enabled[i].eq(ww.enable),
                                 known[i].eq(0), row_valid[i].eq(0), state[i].eq(TRADING),
                                 sticky[i].eq(ww.enable)]

        # -- t0: the message arrives -----------------------------------------------------------
        msg, body = self.message.payload, self.message.payload.body
        kind = msg.type
        is_ = {t: Signal(name=f"is_{t}") for t in "SRHAFECXDU"}
        for t, sig in is_.items():
            m.d.comb += sig.eq(self.message.valid & (kind == ord(t)))
        stock, ref, shares = Signal(64), Signal(64), Signal(BOOK_QTY_BITS)
        side, px = Signal(8), Signal(32)
        with m.Switch(kind):
            for t in "RHAFECXDU":
                b = getattr(body, t)
                with m.Case(ord(t)):
                    if t in "RHAF":
                        m.d.comb += stock.eq(b.stock)
                    if t in "AFECXDU":
                        m.d.comb += ref.eq(b.order_ref)
                    if t in "AFECXU":
                        m.d.comb += shares.eq(b.shares)
                    if t in "AFU":
                        m.d.comb += px.eq(b.price)
                    if t in "AF":
                        m.d.comb += side.eq(b.side)

        by_symbol = Cat(enabled[i] & (symbol[i] == stock) for i in range(W))
        by_locate = Cat(enabled[i] & known[i] & (locate[i] == msg.locate) for i in range(W))
        use_symbol = is_["R"] | is_["H"] | is_["A"] | is_["F"]
        use_locate = is_["E"] | is_["C"] | is_["X"] | is_["D"] | is_["U"]
        match = Mux(use_symbol, by_symbol, Mux(use_locate, by_locate, 0))
        slot = Signal(range(W))
        for i in reversed(range(W)):            # the lowest matching slot wins
            with m.If(match[i]):
                m.d.comb += slot.eq(i)

        clear = is_["S"] & Cat(body.S.event_code == ord(c) for c in BOOK_CLEAR_EVENTS).any()
        with m.If(clear):
            m.d.comb += count["clears"].eq(1)
            m.d.sync += [
                known.eq(0), row_valid.eq(0), touched.eq(0), sticky.eq(0),
                state.eq(Cat([Const(TRADING, 8)] * W)),
                gen.eq(Mux(gen.all(), 1, gen + 1)),
                poisoned.eq(poisoned | gen.all()),
            ]

        # The message's fields, held for the later stages (the next message is >= 14 away).
        s1, s2, s3 = Signal(), Signal(), Signal()
        r = {t: Signal(name=f"r_is_{t}") for t in "HAFECXDU"}
        r_slot, r_locate = Signal(range(W)), Signal(16)
        r_ref, r_new_ref = Signal(64), Signal(64)
        r_side = Signal()                   # A/F: the message's side (1: sell)
        r_px = Signal(32)                   # A/F/U: the new order's price
        r_shares = Signal(BOOK_QTY_BITS)    # A/F/U: the new order's; E/C/X: to take
        r_state, r_index, r_rx_cycle = Signal(8), Signal(32), Signal(48)

        row_mem = memory.Memory(shape=self._row, depth=W, init=[])
        m.submodules.rows = row_mem
        row_rd, row_wr = row_mem.read_port(domain="comb"), row_mem.write_port()
        m.d.comb += row_rd.addr.eq(slot)
        row = Signal(self._row)             # the message's book row as edited so far

        m.d.sync += [s1.eq(0), s2.eq(s1)]
        with m.If(match.any()):
            m.d.sync += [
                s1.eq(~is_["R"]),
                r_slot.eq(slot), r_locate.eq(msg.locate), r_ref.eq(ref),
                r_new_ref.eq(body.U.new_ref), r_side.eq(side == ord("S")), r_px.eq(px),
                r_shares.eq(shares), r_state.eq(body.H.trading_state),
                r_index.eq(msg.index), r_rx_cycle.eq(msg.rx_cycle),
                row.eq(Mux(row_valid.bit_select(slot, 1), row_rd.data, 0)),
            ]
            m.d.sync += [r[t].eq(is_[t]) for t in r]
            with m.If(~is_["R"]):
                m.d.sync += touched.bit_select(slot, 1).eq(1)
            with m.If(use_symbol):
                m.d.sync += [locate[slot].eq(msg.locate), known.bit_select(slot, 1).eq(1)]

        # -- the order table -------------------------------------------------------------------
        ways = []
        for w in range(p.ways):
            mem = memory.Memory(shape=self._entry, depth=p.sets, init=[])
            m.submodules[f"way{w}"] = mem
            ways.append((mem.read_port(), mem.write_port()))
        set_now, r_set = Signal(set_bits), Signal(set_bits)     # r_set: the set just read
        # Read at t0 the order's set; at t1, for U, the new order's.
        m.d.comb += set_now.eq(Mux(s1 & r["U"], order_hash(r_new_ref, p.sets),
                                   order_hash(ref, p.sets)))
        m.d.sync += r_set.eq(set_now)
        for rd, _ in ways:
            m.d.comb += rd.addr.eq(set_now)

        wr_en, wr_way = Signal(), Signal(range(p.ways))
        wr_set, wr_entry = Signal(set_bits), Signal(self._entry)
        for w, (_, wr) in enumerate(ways):
            m.d.comb += [wr.addr.eq(wr_set), wr.data.eq(wr_entry),
                         wr.en.eq(wr_en & (wr_way == w))]

        def lookup(key, slot, any_slot, freed=None):
            """In the set read last cycle: is `key` live (of `slot` unless `any_slot`), is a way
            free, and which way (the hit, else the lowest free); `freed` is a way being
            emptied this cycle."""
            hits, frees = [], []
            for w, (rd, _) in enumerate(ways):
                e = data.View(self._entry, rd.data)
                live = e.gen == gen
                if freed is not None:
                    live &= ~freed[w]
                hits.append(live & (e.tag == key[set_bits:]) & (any_slot | (e.slot == slot)))
                frees.append(~live)
            hit, free = Cat(hits), Cat(frees)
            way, entry = Signal(range(p.ways)), Signal(self._entry)
            for w in reversed(range(p.ways)):
                with m.If(Mux(hit.any(), hit[w], free[w])):
                    m.d.comb += way.eq(w)
            for w, (rd, _) in enumerate(ways):
                with m.If(way == w):
                    m.d.comb += entry.eq(rd.data)
            return hit.any(), free.any(), way, entry

        def new_entry(ref, side):
            e = Signal(self._entry)
            m.d.comb += [e.tag.eq(ref[set_bits:]), e.slot.eq(r_slot), e.side.eq(side),
                         e.px.eq(r_px), e.shares.eq(r_shares), e.gen.eq(gen)]
            return e

        def insert(enable, found, free, way, entry, ref, side):
            """Store the new order (A/F at t1 for t2, U at t3): over a duplicate, else in a
            free way, else nowhere and the book is uncertain."""
            ins = Signal(name="ins")
            with m.If(enable):
                m.d.comb += ins.eq(found | free)
                with m.If(found):
                    m.d.comb += [count["duplicate_ref"].eq(1),
                                 taint["dup"].eq(1 << entry.slot)]
                with m.Elif(~free):
                    m.d.comb += [count["table_full"].eq(1), taint["full"].eq(1 << r_slot)]
            return ins, new_entry(ref, side)

        # -- book row edits: one add and one remove, on the side the stage names ---------------
        side_sel = Signal()
        side_in = Signal(self._side)
        m.d.comb += side_in.eq(row[side_sel])
        is_bid = side_sel == BUY
        add_en, add_px, add_qty = Signal(), Signal(32), Signal(BOOK_QTY_BITS)
        rm_en, rm_px, rm_qty, rm_leaves = Signal(), Signal(32), Signal(BOOK_QTY_BITS), Signal()
        add = _SideOp(m, p.levels, side_in, is_bid, "add")
        add.add(add_en, add_px, add_qty, count["level_overflow"])
        rm = _SideOp(m, p.levels, side_in, is_bid, "rm")
        rm.remove(rm_en, rm_px, rm_qty, rm_leaves)
        row_next = Signal(self._row)
        m.d.comb += row_next.eq(row)
        with m.If(add_en):
            m.d.comb += [row_next[side_sel].eq(add.out),
                         taint["op"].eq(Mux(add.taint, 1 << r_slot, 0))]
        with m.If(rm_en):
            m.d.comb += [row_next[side_sel].eq(rm.out),
                         taint["op"].eq(Mux(rm.taint, 1 << r_slot, 0))]
        with m.If(add_en | rm_en):
            m.d.sync += [row.eq(row_next), row_valid.bit_select(r_slot, 1).eq(1)]
            m.d.comb += [row_wr.addr.eq(r_slot), row_wr.data.eq(row_next), row_wr.en.eq(1)]

        # -- t1: A/F add, H state; the looked-up order of E/C/X/D/U is kept for t2 -------------
        rejected = (r_shares == 0) | (r_px == 0)
        af = s1 & (r["A"] | r["F"])
        found, free, way, entry = lookup(r_ref, r_slot, 1)
        ins, ins_entry = insert(af & ~rejected, found, free, way, entry, r_ref, r_side)
        with m.If(af):
            with m.If(rejected):
                m.d.comb += count["rejected"].eq(1)
            with m.Else():
                m.d.comb += [side_sel.eq(r_side), add_en.eq(1), add_px.eq(r_px),
                             add_qty.eq(r_shares)]
        p_ins, p_way, p_set, p_entry = Signal(), Signal.like(way), Signal.like(r_set), \
            Signal(self._entry)
        m.d.sync += [p_ins.eq(ins), p_way.eq(way), p_set.eq(r_set), p_entry.eq(ins_entry)]

        o_hit, o_way, o_set, o_entry = Signal(), Signal.like(way), Signal.like(r_set), \
            Signal(self._entry)
        o_found, _, o_lway, o_lentry = lookup(r_ref, r_slot, 0)
        with m.If(s1):
            m.d.sync += [o_hit.eq(o_found), o_way.eq(o_lway), o_set.eq(r_set),
                         o_entry.eq(o_lentry)]

        state_now = Signal(8)
        m.d.comb += state_now.eq(state[r_slot])
        with m.If(s1 & r["H"]):
            m.d.comb += state_now.eq(r_state)
            m.d.sync += state[r_slot].eq(r_state)

        # -- t2: the A/F entry is written; E/C/X/D/U take from the order found ------------------
        modify = s2 & (r["E"] | r["C"] | r["X"] | r["D"] | r["U"])
        partial = r["E"] | r["C"] | r["X"]
        clamp = partial & (r_shares > o_entry.shares)
        take = Mux(partial & ~clamp, r_shares, o_entry.shares)
        left = Signal(BOOK_QTY_BITS)
        m.d.comb += left.eq(o_entry.shares - take)
        with m.If(s2 & p_ins):
            m.d.comb += [wr_en.eq(1), wr_way.eq(p_way), wr_set.eq(p_set),
                         wr_entry.eq(p_entry)]
        with m.If(modify):
            with m.If(~o_hit):
                m.d.comb += count["unknown_ref"].eq(1)
            with m.Else():
                m.d.comb += [
                    count["clamped"].eq(clamp),
                    wr_en.eq(1), wr_way.eq(o_way), wr_set.eq(o_set),
                    side_sel.eq(o_entry.side), rm_en.eq(1), rm_px.eq(o_entry.px),
                    rm_qty.eq(take), rm_leaves.eq(left == 0),
                ]
                with m.If(left != 0):
                    m.d.comb += [wr_entry.eq(o_entry), wr_entry.shares.eq(left)]
        m.d.sync += s3.eq(modify & r["U"] & o_hit)

        # U: the new order's set (read at t1), with the old order's way, freed now, free.
        freed = Signal(p.ways)
        m.d.comb += freed.eq(Mux(o_set == r_set, 1 << o_way, 0))
        n_found, n_free, n_way, n_entry = lookup(r_new_ref, r_slot, 1, freed)
        q_found, q_free, q_way, q_set, q_dup_slot = Signal(), Signal(), Signal.like(way), \
            Signal.like(r_set), Signal(range(W))
        m.d.sync += [q_found.eq(n_found), q_free.eq(n_free), q_way.eq(n_way), q_set.eq(r_set),
                     q_dup_slot.eq(n_entry.slot)]

        # -- t3: U adds the new order on the old one's side -----------------------------------
        q_dup = Signal(self._entry)
        m.d.comb += q_dup.slot.eq(q_dup_slot)
        u_ins, u_entry = insert(s3 & ~rejected, q_found, q_free, q_way, q_dup, r_new_ref,
                                o_entry.side)
        with m.If(s3):
            with m.If(rejected):
                m.d.comb += count["rejected"].eq(1)
            with m.Else():
                m.d.comb += [side_sel.eq(o_entry.side), add_en.eq(1), add_px.eq(r_px),
                             add_qty.eq(r_shares)]
            with m.If(u_ins):
                m.d.comb += [wr_en.eq(1), wr_way.eq(q_way), wr_set.eq(q_set),
                             wr_entry.eq(u_entry)]

        # -- the update: at the message's last stage, if its view changed ----------------------
        def view(r, stk, st):
            bid, ask = r[BUY], r[SELL]
            unsure = ((~bid.levels[0].valid & (bid.orphans != 0))
                      | (~ask.levels[0].valid & (ask.orphans != 0)))
            return Cat(bid.levels[0].px, bid.levels[0].qty, ask.levels[0].px,
                       ask.levels[0].qty, poisoned | stk | unsure, st)

        before_now = view(row, sticky.bit_select(r_slot, 1), state[r_slot])
        before = Signal.like(before_now)
        with m.If(s1):
            m.d.sync += before.eq(before_now)
        uncertain = Signal()
        after = view(row_next, (sticky | sticky_set).bit_select(r_slot, 1), state_now)
        m.d.comb += uncertain.eq(after[-9])
        last = ((s1 & (r["H"] | r["A"] | r["F"]))
                | (s2 & (r["E"] | r["C"] | r["X"] | r["D"] | (r["U"] & ~o_hit)))
                | s3)
        changed = last & (after != Mux(s1, before_now, before))

        u = self.update.payload
        m.d.sync += self.update.valid.eq(clear | changed)
        m.d.comb += count["updates"].eq(clear | changed)
        with m.If(clear):
            m.d.sync += [u.eq(0), u.clear.eq(1), u.uncertain.eq(poisoned | gen.all()),
                         u.state.eq(TRADING), u.index.eq(msg.index),
                         u.rx_cycle.eq(msg.rx_cycle)]
        with m.If(last):
            m.d.sync += [
                u.slot.eq(r_slot), u.locate.eq(r_locate), u.clear.eq(0),
                u.bid_px.eq(row_next[BUY].levels[0].px),
                u.bid_qty.eq(row_next[BUY].levels[0].qty),
                u.ask_px.eq(row_next[SELL].levels[0].px),
                u.ask_qty.eq(row_next[SELL].levels[0].qty),
                u.uncertain.eq(uncertain), u.halted.eq(state_now != TRADING),
                u.state.eq(state_now), u.index.eq(r_index), u.rx_cycle.eq(r_rx_cycle),
            ]
        return m
