"""The order book: decoded ITCH messages in, top-of-book updates out.

The semantics (watchlist, order table, price levels with orphans, clearing, uncertainty) are
specified by `host.model.book`, whose docstring is the reference; this file says how the card
does it in a few cycles.

Storage:
* The order table is two banks of `ways` memories of `sets` entries (block RAM), all read
  together: bank b at the reference's set `order_sets(ref)[b]` (2-left hashing). An entry holds
  the reference without its lowest chunk (implied by the set), instrument, side, price,
  remaining shares and the generation it was written in.
* The books are one row per watched instrument (bid and ask side: levels best first, orphan
  count and cut price), in a memory read asynchronously (LUT RAM), so a row is in a register one
  cycle after the message arrives.

A message is finished before the next can arrive: on the 8-bit datapath an ITCH message takes
at least 14 cycles (12 bytes and a 2-byte length), and the longest path below takes 4. So one
message is in flight, stage by stage (t0 is the cycle the decoded message is valid, two after
its last byte was on the pins):

    t0  find the slot (symbol or locate CAM); read the book row and the order's two sets
    t1  A/F: add to the level; H: trading state; hit or room in the sets read     -> update
    t2  A/F: write the new entry.  E/C/X/D/U: remove from the level, write the entry -> update
    t3  U: add the new order (its sets were read at t1, with t2's write forwarded) -> update

The update is registered: valid at t2 for A/F/H (4 cycles after the last byte), t3 for
E/C/X/D (5) and t4 for U (6).
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hdl.beats import beats
from hdl.formats import (
    BOOK_BANKS,
    BOOK_BUY,
    BOOK_CLEAR_EVENTS,
    BOOK_COUNT_BITS,
    BOOK_COUNTERS,
    BOOK_GEN_BITS,
    BOOK_QTY_BITS,
    BOOK_SELL,
    BOOK_TRADING,
    BookParams,
    Drop,
)
from hdl.itch import ItchMessage, Verdict
from hdl.moldudp64 import GapReport

__all__ = ["WatchWrite", "TopUpdate", "OrderBook", "Level"]

BUY, SELL = BOOK_BUY, BOOK_SELL
TRADING = ord(BOOK_TRADING)


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
    for lo in range(bits, len(ref), bits):
        out = out ^ ref[lo:lo + bits]
    return out


def order_sets(ref, sets: int):
    """`hdl.formats.order_sets` in gateware: the reference's set in bank 0 and in bank 1."""
    bits = ceil_log2(sets)
    high = order_hash(ref[bits:], sets)
    return ref[:bits] ^ high, ref[:bits][::-1] ^ high


def _lowest(m, bits, name):
    """One-hot of the lowest set bit of `bits` (zero if none): x & -x is a carry chain, where a
    priority `If` chain over 32 ways would be 32 LUT levels deep."""
    onehot = Signal(len(bits), name=name)
    m.d.comb += onehot.eq(bits & (~bits + 1))
    return onehot


def _encode(m, onehot, name):
    """The index of a one-hot value: bit k is the OR of the inputs whose index has bit k."""
    n = len(onehot)
    index = Signal(range(n), name=name)
    if len(index):
        m.d.comb += index.eq(Cat(Cat(onehot[i] for i in range(n) if i >> k & 1).any()
                                 for k in range(len(index))))
    return index


def _popcount(bits):
    """The number of set bits, as a balanced adder tree."""
    terms = [bits[i] for i in range(len(bits))]
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


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

    def _per_level(self, name, term):
        # A Signal, not the expression: it is used at every level (see `lookup`).
        v = Signal(self.n, name=name)
        self.m.d.comb += v.eq(Cat(term(lv) for lv in self.side.levels))
        return v

    def add(self, enable, px, qty, overflow):
        m, n, lv, out = self.m, self.n, self.side.levels, self.out
        eq = self._per_level("add_eq", lambda lv: lv.valid & (lv.px == px))
        bt = self._per_level("add_better", lambda lv: lv.valid & _better(self.is_bid, lv.px, px))
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
                with m.If(~bt[0]):
                    m.d.comb += out.levels[0].eq(new)
                for i in range(1, n):
                    with m.If(~bt[i]):
                        m.d.comb += out.levels[i].eq(Mux(bt[i - 1], new, lv[i - 1]))
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
        eq = self._per_level("rm_eq", lambda lv: lv.valid & (lv.px == px))
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
        match_sig = Signal(W)
        m.d.comb += match_sig.eq(match)
        slot = _encode(m, _lowest(m, match_sig, "slot_onehot"), "slot")    # lowest one wins

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
        # Flat over both banks: place i is way i % ways of bank i // ways.
        places, n_places = [], BOOK_BANKS * p.ways
        for b in range(BOOK_BANKS):
            for w in range(p.ways):
                mem = memory.Memory(shape=self._entry, depth=p.sets, init=[])
                m.submodules[f"bank{b}_way{w}"] = mem
                places.append((b, mem.read_port(), mem.write_port()))
        # Read at t0 the order's two sets; at t1, for U, the new order's. r_set: those read.
        set_now = [Signal(set_bits, name=f"set_now{b}") for b in range(BOOK_BANKS)]
        r_set = [Signal(set_bits, name=f"r_set{b}") for b in range(BOOK_BANKS)]
        read_ref = Signal(64)
        m.d.comb += read_ref.eq(Mux(s1 & r["U"], r_new_ref, ref))
        sets_of = order_sets(read_ref, p.sets)
        for b in range(BOOK_BANKS):
            m.d.comb += set_now[b].eq(sets_of[b])
            m.d.sync += r_set[b].eq(set_now[b])
        for b, rd, _ in places:
            m.d.comb += rd.addr.eq(set_now[b])

        wr_en, wr_place = Signal(), Signal(range(n_places))
        wr_set, wr_entry = Signal(set_bits), Signal(self._entry)
        for i, (_, _, wr) in enumerate(places):
            m.d.comb += [wr.addr.eq(wr_set), wr.data.eq(wr_entry),
                         wr.en.eq(wr_en & (wr_place == i))]

        def lookup(key, slot, any_slot, freed):
            """In the two sets read last cycle: is `key` live (of `slot` unless `any_slot`)
            and where; else is there room and where (2-left: the set with more free ways, bank
            0 on a tie, its lowest free way). `freed` marks places being emptied this cycle.
            Returns (found, room, place, set, entry at place)."""
            # Every intermediate is a Signal: Amaranth re-emits an expression each place it is
            # used, and these are used per way, so as nested expressions the netlist grew
            # with the fourth power of the ways (measured: 5.7 MB of RTLIL at 2 ways, 81 MB at 4).
            hit, free = Signal(n_places), Signal(n_places)
            for i, (_, rd, _) in enumerate(places):
                e = data.View(self._entry, rd.data)
                live = (e.gen == gen) & ~freed[i]
                m.d.comb += [
                    hit[i].eq(live & (e.tag == key[set_bits:]) & (any_slot | (e.slot == slot))),
                    free[i].eq(~live),
                ]
            n_free = [Signal(range(p.ways + 1), name=f"n_free{b}") for b in range(BOOK_BANKS)]
            for b in range(BOOK_BANKS):
                m.d.comb += n_free[b].eq(_popcount(free[b * p.ways:(b + 1) * p.ways]))
            bank1, room, pick = Signal(), Signal(n_places), Signal(n_places)
            m.d.comb += [
                bank1.eq(n_free[1] > n_free[0]),
                room.eq(Cat(free[:p.ways] & ~bank1.replicate(p.ways),
                            free[p.ways:] & bank1.replicate(p.ways))),
                pick.eq(Mux(hit.any(), hit, room)),
            ]
            onehot = _lowest(m, pick, "place_onehot")
            place, entry = _encode(m, onehot, "place"), Signal(self._entry)
            selected = Const(0, self._entry.size)
            for i, (_, rd, _) in enumerate(places):
                selected = selected | Mux(onehot[i], rd.data, 0)
            m.d.comb += entry.eq(selected)
            found, has_room, where = Signal(), Signal(), Signal(set_bits)
            m.d.comb += [found.eq(hit.any()), has_room.eq(room.any()),
                         where.eq(Mux(onehot[p.ways:].any(), r_set[1], r_set[0]))]
            return found, has_room, place, where, entry

        def new_entry(ref, side):
            e = Signal(self._entry)
            m.d.comb += [e.tag.eq(ref[set_bits:]), e.slot.eq(r_slot), e.side.eq(side),
                         e.px.eq(r_px), e.shares.eq(r_shares), e.gen.eq(gen)]
            return e

        def new_order(enable, found, free, dup_slot, ref, side):
            """A new order (A/F at t1, U at t3): rejected with zero shares or price; else added
            to its level and stored over a duplicate, else in a free way, else nowhere and the
            book is uncertain. Returns whether to write the entry, and the entry."""
            ins = Signal(name="ins")
            with m.If(enable & rejected):
                m.d.comb += count["rejected"].eq(1)
            with m.If(enable & ~rejected):
                m.d.comb += [ins.eq(found | free), side_sel.eq(side), add_en.eq(1),
                             add_px.eq(r_px), add_qty.eq(r_shares)]
                with m.If(found):
                    m.d.comb += [count["duplicate_ref"].eq(1), taint["dup"].eq(1 << dup_slot)]
                with m.Elif(~free):
                    m.d.comb += [count["table_full"].eq(1), taint["full"].eq(1 << r_slot)]
            return ins, new_entry(ref, side)

        # -- book row edits: one add and one remove, on the side the stage names ---------------
        side_sel = Signal()
        side_in = Signal(self._side)
        # Mux, not row[side_sel]: a Value index becomes a shift over the whole 2.6 kbit row.
        m.d.comb += side_in.eq(Mux(side_sel, row[SELL], row[BUY]))
        is_bid = side_sel == BUY
        add_en, add_px, add_qty = Signal(), Signal(32), Signal(BOOK_QTY_BITS)
        rm_en, rm_px, rm_qty, rm_leaves = Signal(), Signal(32), Signal(BOOK_QTY_BITS), Signal()
        add = _SideOp(m, p.levels, side_in, is_bid, "add")
        add.add(add_en, add_px, add_qty, count["level_overflow"])
        rm = _SideOp(m, p.levels, side_in, is_bid, "rm")
        rm.remove(rm_en, rm_px, rm_qty, rm_leaves)
        row_next = Signal(self._row)
        m.d.comb += row_next.eq(row)
        side_out = Signal(self._side)
        m.d.comb += side_out.eq(Mux(add_en, add.out, rm.out))
        with m.If(add_en | rm_en):
            with m.If(side_sel):
                m.d.comb += row_next[SELL].eq(side_out)
            with m.Else():
                m.d.comb += row_next[BUY].eq(side_out)
            m.d.comb += [
                taint["op"].eq(Mux(Mux(add_en, add.taint, rm.taint), 1 << r_slot, 0)),
                row_wr.addr.eq(r_slot), row_wr.data.eq(row_next), row_wr.en.eq(1),
            ]
            m.d.sync += [row.eq(row_next), row_valid.bit_select(r_slot, 1).eq(1)]

        # One lookup serves every stage: at t1 the message's reference (for A/F in any
        # instrument, to catch a duplicate; for E/C/X/D/U in the message's), at t2 U's new one,
        # with the old order's place, emptied that cycle, counted free.
        look_new = s2 & r["U"]
        o_hit, o_place, o_set = Signal(), Signal(range(n_places)), Signal(set_bits)
        freed = Signal(n_places)
        m.d.comb += freed.eq(Cat(look_new & (o_place == i) & (r_set[i // p.ways] == o_set)
                                 for i in range(n_places)))
        look_ref = Signal(64)
        m.d.comb += look_ref.eq(Mux(look_new, r_new_ref, r_ref))
        found, free, place, where, entry = lookup(
            look_ref, r_slot, look_new | r["A"] | r["F"], freed)

        # -- t1: A/F add, H state; the looked-up order of E/C/X/D/U is kept for t2 -------------
        rejected = (r_shares == 0) | (r_px == 0)
        ins, ins_entry = new_order(s1 & (r["A"] | r["F"]), found, free, entry.slot, r_ref,
                                   r_side)
        p_ins, p_place, p_set, p_entry = Signal(), Signal.like(place), Signal(set_bits), \
            Signal(self._entry)
        m.d.sync += [p_ins.eq(ins), p_place.eq(place), p_set.eq(where), p_entry.eq(ins_entry)]

        o_entry = Signal(self._entry)
        with m.If(s1):
            m.d.sync += [o_hit.eq(found), o_place.eq(place), o_set.eq(where),
                         o_entry.eq(entry)]

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
            m.d.comb += [wr_en.eq(1), wr_place.eq(p_place), wr_set.eq(p_set),
                         wr_entry.eq(p_entry)]
        with m.If(modify):
            with m.If(~o_hit):
                m.d.comb += count["unknown_ref"].eq(1)
            with m.Else():
                m.d.comb += [
                    count["clamped"].eq(clamp),
                    wr_en.eq(1), wr_place.eq(o_place), wr_set.eq(o_set),
                    side_sel.eq(o_entry.side), rm_en.eq(1), rm_px.eq(o_entry.px),
                    rm_qty.eq(take), rm_leaves.eq(left == 0),
                ]
                with m.If(left != 0):
                    m.d.comb += [wr_entry.eq(o_entry), wr_entry.shares.eq(left)]
        m.d.sync += s3.eq(modify & r["U"] & o_hit)

        # U: where its new reference goes (looked up at t2, in the sets read at t1).
        q_found, q_free, q_place, q_set, q_dup_slot = Signal(), Signal(), Signal.like(place), \
            Signal(set_bits), Signal(range(W))
        m.d.sync += [q_found.eq(found), q_free.eq(free), q_place.eq(place), q_set.eq(where),
                     q_dup_slot.eq(entry.slot)]

        # -- t3: U adds the new order on the old one's side -----------------------------------
        u_ins, u_entry = new_order(s3, q_found, q_free, q_dup_slot, r_new_ref, o_entry.side)
        with m.If(u_ins):
            m.d.comb += [wr_en.eq(1), wr_place.eq(q_place), wr_set.eq(q_set),
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
