"""The order book: decoded ITCH messages in, top-of-book updates out.

The semantics (watchlist, order table, price levels with orphans, clearing, uncertainty) are
specified by `host.model.book`, whose docstring is the reference; this file says how the card
does it in a few cycles. (Its clock target is 125 MHz; README "Numbers" says what it reaches.)

Storage:
* The order table is two banks of `ways` memories of `sets` entries (block RAM), all read
  together: bank b at the reference's set `order_sets(ref)[b]` (2-left hashing). An entry holds
  the reference without its lowest chunk (implied by the set), instrument, side, price,
  remaining shares and the generation it was written in.
* The books: per watched instrument and side, the orphan count, the cut price and the levels
  *in place*: a level keeps its record while it lives, and beside it its rank (its place in
  price order, 0 = best), with copies of the levels of rank 0 and 1 (`top`), which is all the
  updates read. Two memories (bid, ask), read asynchronously (LUT RAM): when the message's slot
  is known, both sides' tops into `row`, and the side the message edits, once it is known,
  into `cur`; the message edits `cur` and it goes back to its memory. (Each memory is built of
  `ROW_PARTS` parts with copies of their own of the slot and the load and write controls:
  wires that fanned out to thousands of cells across the chip led the routed critical path.)
  An edit changes one level's record, the ranks and the copies: a level that opens takes the
  rank "number of levels better" and those worse move down one; a level that empties lets
  those worse move up one. (Kept best first, every level would move on every insert: that
  six-way shift of 1,344 bits was a third of the book's logic.)

Lookups run ahead of the message, on the decoder's heads (`hdl.itch.ItchHead`): the slot is
found (by locate for E/C/X/D/U, as soon as byte 2 is in; by symbol for R/H/A/F) and its row
read, and the order table searched for the reference (and for U's new one), in a pipeline of
its own:

    P0  hash the reference, address every way: A/F's the cycle after its last byte
        (`early_af`), E/C/X/U's at their key head (U: the new reference two cycles later), D's
        a cycle before its key head (`early_d`)
    P1  each block RAM's own copy of the address (`hdl.ebr`)
    PA  the entries read into their block RAM's output register
    PB  ... and into a register beside it in the fabric (`hdl.ebr`)
    PK  per way: live? same reference (and instrument)? its price at the top of its side?
        (each way against its own copies of the key, slot, generation and tops: `hdl.copies`)
    P2  the hit: its entry, from the fabric register  -> found, entry  (U: old place freed)
    P3  2-left placement: the set with more free ways, its lowest free way  -> place

For every type but D and X the lookup is done when the message's last byte arrives; X's
reference is 4 bytes before its end, so its first stage waits a cycle; D's reference *is* its
last field, so D waits five cycles for it. Then one message is executed, stage by
stage (a message leaves at least 14 cycles to the next; a stage's write of the order table
happens the cycle after it):

    R1   E/C/X, the cycle after the message: how much to take, does the order leave
    RM0  E/C/X/D: the update, from the top two levels alone.  E/C/X/D/U: scan the side
         (D: a cycle later, when `cur` holds its order's side)
    RM1  the decision, per level, of the side without the order; the entry written back
    RM2  the edit: that side in `cur` (written back to its memory the cycle after)
    ADD0 A/F/U: scan the side for the new price; the update's candidates. A/F in the cycle
         their last byte is on the decoder's sink (`early_price`), a cycle before the message
    ADD1 A/F/U: the update; the decision of the side with the order; the entry written. A/F
         in the message's own cycle
    ADD2 the edit: that side in `cur`

"Scan" compares every level with the price, precomputes sums and picks out the levels an edit
may need (rank 2, the worst, the first free), all registered. The decision turns those into
registered per-level choices, so the edit a cycle later is multiplexers into `cur` driven by
registers beside them. The update never waits for the edit: its top is chosen from candidates
computed beside the scan. Cycles from a message's last byte on the pins to its update valid
(benchmarks/test_book_rtl.py, `sim.core_rtl.BOOK_LATENCY`): H 3, A/F 3, E/C 5, X 6, D 8, U 7
(U's add scans the side its removal's edit left; D's and X's lookups end after their message,
D's with a cycle for the address copies and one for the fabric register, `hdl.ebr`).

One taint reaches the book a message after the update that caused it: an order leaving from a
price with neither a level nor orphans (finding that out needs the scan, which D's update does
not wait for). It cannot happen while the book is certain: every order a certain book counts
is in the table (a lost or overwritten one taints at once), and every order in the table is
counted in its level or in the orphans. So no update differs from the model's.
"""

from amaranth import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hdl.beats import beats
from hdl.copies import copies
from hdl.ebr import RegisteredRam
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
from hdl.itch import ItchHead, ItchMessage, Verdict
from hdl.logic import count_later, or_tree
from hdl.moldudp64 import GapReport

__all__ = ["WatchWrite", "TopUpdate", "OrderBook", "Level"]

BUY, SELL = BOOK_BUY, BOOK_SELL
SIDE_COPIES = 4             # copies of the edited side's register, one per group of levels
ROW_PARTS = 4               # parts of each side's memory, each with its own controls
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
    cause: 8              # its type letter (the latency counters tell adds from removals)
    frame: 16             # the number of the frame that carried it (`ItchMessage.frame`)


class Level(data.Struct):
    valid: 1
    px: 32
    qty: BOOK_QTY_BITS
    count: BOOK_COUNT_BITS


def side_layout(levels: int) -> data.StructLayout:
    return data.StructLayout({
        # In place: a level keeps its record from the order that opens it to the one that
        # empties it; `rank` says where it stands in price order (0 = best). Valid levels have
        # the ranks 0 to n-1; an invalid level's rank means nothing.
        "levels": data.ArrayLayout(Level, levels),
        "rank": data.ArrayLayout(rank_bits(levels), levels),
        "top": data.ArrayLayout(Level, 2),     # copies of the levels of rank 0 and 1
        "orphans": BOOK_COUNT_BITS,
        "cut": 32,
    })


def rank_bits(levels: int) -> int:
    return max(1, ceil_log2(levels))


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
    priority `If` chain over n ways would be n LUT levels deep."""
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


def _choose(sel, options, keep):
    """AND-OR of `options` by the one-hot `sel`; `keep` if none is chosen."""
    return or_tree([Mux(sel[k], Value.cast(v), 0) for k, v in enumerate(options)]
                    + [Mux(sel.any(), 0, Value.cast(keep))])


def _popcount(bits):
    """The number of set bits, as a balanced adder tree."""
    terms = [bits[i] for i in range(len(bits))]
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


def _better(is_bid, a, b):
    return Mux(is_bid, a > b, a < b)


def _better_split(is_bid, a, b, late=8):
    """`_better` for a compare with `a_px`, whose low byte comes late: an A's price ends its
    message, so that byte is the one on the decoder's sink, at the end of the feed's
    cut-through path. The high bits compare in carry chains of their own, from registers; the
    low byte's chain is short, and one level of logic joins them. (One 32-bit compare took the
    late byte in near the start of its chain: the routed feed handler + book's critical path at
    6a59ff7, 8.72 ns, and the placed core's worst, docs/book-timing.md.)"""
    hi_a, hi_b, lo_a, lo_b = a[late:], b[late:], a[:late], b[:late]
    hi_eq = hi_a == hi_b
    return Mux(is_bid, (hi_a > hi_b) | (hi_eq & (lo_a > lo_b)),
               (hi_a < hi_b) | (hi_eq & (lo_a < lo_b)))


def _unsure(side):
    """A side with no level but orphans does not know its top."""
    return ~side.top[0].valid & (side.orphans != 0)


class OrderBook(wiring.Component):
    """See the module docstring and `host.model.book`."""

    def __init__(self, params: BookParams | None = None):
        self.params = p = params or BookParams()
        self._entry = entry_layout(p)
        self._side = side_layout(p.levels)
        # Both sides' top copies and orphans: what the updates and the ways' compares read of
        # the side not being edited.
        self._row = data.ArrayLayout(data.StructLayout({
            "top": data.ArrayLayout(Level, 2), "orphans": BOOK_COUNT_BITS}), 2)
        super().__init__({
            "head": In(beats(ItchHead)),
            "early_price": In(32),          # `hdl.itch.ItchDecoder.early_price`
            "early_ref": In(64),            # `hdl.itch.ItchDecoder.early_ref`
            "early_d": In(1),
            "early_af": In(1),
            "early_stock": In(64),          # `hdl.itch.ItchDecoder.early_stock`
            "message": In(beats(ItchMessage)),
            "verdict": In(beats(Verdict)),
            "gap": In(beats(GapReport)),
            "watch_write": In(beats(WatchWrite)),
            "update": Out(beats(TopUpdate)),
            # The slot of the message being worked on: an update's `slot` is this register's
            # value in the cycle before the update is valid (the order path selects ahead).
            "next_slot": Out(range(p.slots)),
            # Likewise the RX cycle of the update a cycle before it is valid (from registers:
            # the message's in its own cycle, the held one's after it).
            "next_rx_cycle": Out(48),
            "symbols": Out(data.ArrayLayout(64, p.slots)),     # the watchlist, by slot
            "counters": Out(data.ArrayLayout(32, len(BOOK_COUNTERS))),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        W, N, set_bits = p.slots, p.levels, ceil_log2(p.sets)
        n_places = BOOK_BANKS * p.ways
        # Counted the cycle after the event (the conditions come off the stages' logic).
        count = {name: Signal(name=f"count_{name}") for name in BOOK_COUNTERS}
        count_later(m, [count[name] for name in BOOK_COUNTERS], self.counters)

        def sig(value, name):
            """`value` as a Signal: Amaranth re-emits an expression at every use, and most of
            these are used per way or per level (measured: nested lookup expressions grew the
            netlist with the fourth power of the ways)."""
            s = Signal(len(Value.cast(value)), name=name)
            m.d.comb += s.eq(value)
            return s

        # -- per-instrument registers ----------------------------------------------------------
        symbol = self.symbols
        enabled = Signal(W)
        locate = Signal(data.ArrayLayout(16, W))
        known = Signal(W)                   # locate learned since the last clear
        state = Signal(data.ArrayLayout(8, W), init=[TRADING] * W)
        sticky = Signal(W)                  # uncertain until the next clear
        touched = Signal(W)                 # changed by messages of the frame now arriving
        side_valid = [Signal(W, name=f"side_valid{b}") for b in (BUY, SELL)]   # written since
                                            # the last clear
        gen = Signal(BOOK_GEN_BITS, init=1)
        poisoned = Signal()
        # Taints: of every slot (a frame's verdict, a gap), of the message's slot (an order
        # lost: the table full, a level's count or the orphans overflowing, an order leaving
        # from nowhere) or of a duplicate's slot.
        taint = {name: Signal(W, name=f"taint_{name}") for name in ("verdict", "gap")}
        taint_slot, taint_dup = Signal(name="taint_slot"), Signal(name="taint_dup")
        # A taint lands in `sticky` two cycles after its cause: registered first as it is (a
        # slot's taint as the bit and the slot; `t_dup_at` is loaded where the duplicate's slot
        # is known, below), decoded into slots the cycle after. It comes off the stages'
        # decisions, and `sticky` sits with the slots' registers. Nothing reads a slot's
        # `sticky` sooner: the next prefetch is >= 2 cycles after a message's last stage, and a
        # gap or a verdict comes at the end of its frame, long before the next frame's messages.
        t_all, t_slot, t_dup = Signal(W), Signal(), Signal()
        t_slot_at, t_dup_at = Signal(range(W)), Signal(range(W))
        m.d.sync += [t_all.eq(taint["verdict"] | taint["gap"]),
                     t_slot.eq(taint_slot), t_slot_at.eq(self.next_slot), t_dup.eq(taint_dup)]
        sticky_set = sig(t_all | Cat(t_slot & (t_slot_at == i) | t_dup & (t_dup_at == i)
                                     for i in range(W)), "sticky_set")
        m.d.sync += sticky.eq(sticky | sticky_set)

        with m.If(self.verdict.valid):
            m.d.sync += touched.eq(0)
            with m.If(self.verdict.payload.drop != Drop.NONE):
                m.d.comb += taint["verdict"].eq(touched)
        with m.If(self.gap.valid):
            m.d.comb += taint["gap"].eq((1 << W) - 1)

        ww = self.watch_write.payload
        with m.If(self.watch_write.valid):
            for i in range(W):
                with m.If(ww.slot == i):
                    m.d.sync += [symbol[i].eq(ww.symbol), enabled[i].eq(ww.enable),
                                 known[i].eq(0), side_valid[BUY][i].eq(0),
                                 side_valid[SELL][i].eq(0), state[i].eq(TRADING),
                                 sticky[i].eq(ww.enable)]

        # -- heads: find the slot, read its row ------------------------------------------------
        h = self.head.payload
        h_is = {t: getattr(h.kind, t) for t in "RHAFECXDU"}       # 0 while not valid
        by_symbol = h.key & (h_is["R"] | h_is["H"] | h_is["A"] | h_is["F"])
        by_locate = ~h.key & (h_is["E"] | h_is["C"] | h_is["X"] | h_is["D"] | h_is["U"])
        # A symbol is compared a cycle ahead of its head, on the decoder's `early_stock`, and
        # a locate in its head's cycle, registered (`loc_match`): in the cycle after, each
        # picks its lowest match into `s_match`, and the slot is only encoded from it. (The
        # pick, a carry chain, and the encode behind one register had led the routed paths.)
        # (A slot written by the host in that cycle matches nothing: its old symbol must not
        # reach its new book, which is uncertain until the next clear anyway.)
        sym_eq = Signal(W)
        m.d.sync += sym_eq.eq(Cat((symbol[i] == self.early_stock)
                                  & ~(self.watch_write.valid & (ww.slot == i)) for i in range(W)))
        cam_symbol = sym_eq & enabled
        cam_locate = Cat(enabled[i] & known[i] & (locate[i] == h.locate) for i in range(W))
        s_match, s_find, s_read = Signal(W), Signal(), Signal()
        slot, slot_ok = self.next_slot, Signal()        # the slot of the message to come
        # A locate's match has three registers more than a symbol's: an E/C/X/D/U's row is
        # needed long after its locate (byte 2), and the row it reads must be the one the
        # message before wrote back (see the prefetch, below).
        loc_match, loc_find = Signal(W), Signal()
        loc_wait = [Signal(W, name=f"loc_wait{i}") for i in range(2)]
        loc_wait_find = [Signal(name=f"loc_wait_find{i}") for i in range(2)]
        m.d.sync += [loc_wait[0].eq(Mux(by_locate, cam_locate, 0)),
                     loc_wait_find[0].eq(by_locate),
                     loc_wait[1].eq(loc_wait[0]), loc_wait_find[1].eq(loc_wait_find[0]),
                     loc_match.eq(loc_wait[1]), loc_find.eq(loc_wait_find[1]),
                     s_match.eq(Mux(by_symbol, _lowest(m, cam_symbol, "sym_lowest"),
                                    _lowest(m, loc_match, "loc_lowest"))),
                     s_find.eq(by_symbol | loc_find), s_read.eq(s_find)]
        slot_valid = Signal(2)
        slot_next, slot_valid_next = Signal(range(W), name="slot_next"), Signal(2)
        m.d.comb += [slot_next.eq(slot), slot_valid_next.eq(slot_valid)]
        m.d.sync += [slot.eq(slot_next), slot_valid.eq(slot_valid_next)]
        with m.If(s_find):
            m.d.comb += [slot_next.eq(_encode(m, s_match, "slot_index")),
                         slot_valid_next.eq(Cat((v & s_match).any() for v in side_valid))]
            m.d.sync += slot_ok.eq(s_match.any())

        # The slot's sides: both sides' tops and orphans read into `row` by the prefetch, the
        # side the message edits into `cur` (by the prefetch for A/F, whose side is known then;
        # for E/C/X/D/U the cycle after their lookup found the order's side). The message's
        # edits happen in `cur` itself (a level, the ranks, the copies of the top, with `row`'s
        # copy of its tops) and go back to the side's memory the cycle after (the edit, below).
        # One side's levels, not two: the scans read `cur` without a side multiplexer in front
        # of every level, and the edit exists once.
        # (Its memories are below, with the side's register they need.)
        row = Signal(self._row)
        cur = Signal(self._side, name="cur")
        e_write = Signal()                  # the edit of `cur` is written back next cycle
        # Read with the row: nothing changes them between the prefetch and the message's last
        # stage but the message itself, whose own taints are added where they arise (a verdict
        # or a gap follows the message, in the model as on the wire).
        slot_sticky, slot_state = Signal(), Signal(8)
        with m.If(s_read):
            m.d.sync += [slot_sticky.eq(poisoned | sticky.bit_select(slot, 1)),
                         slot_state.eq(state[slot])]

        # -- heads: search the order table -----------------------------------------------------
        # Each way's read data is registered in its block RAM and again beside it (`hdl.ebr`): an
        # entry is there four cycles after its address, and stays while the address does.
        places = []                         # place i: way i % ways of bank i // ways
        for b in range(BOOK_BANKS):
            for w in range(p.ways):
                ram = RegisteredRam(self._entry, p.sets)
                m.submodules[f"bank{b}_way{w}"] = ram
                places.append((b, ram))
        in_bank = [slice(b * p.ways, (b + 1) * p.ways) for b in range(BOOK_BANKS)]

        # P0. An A/F's reference (any instrument: a duplicate) the cycle after its last byte
        # (`early_af`), long before its key head; the key head of E/C/X (this instrument) and
        # U's, then U's new reference (any instrument) two cycles after it. Each lookup holds
        # its address for two cycles, so that P2 gathers the entry PK looked at from the
        # fabric register.
        key_beat = sig(h.key & (h_is["A"] | h_is["F"] | h_is["E"] | h_is["C"]
                                | h_is["X"] | h_is["D"] | h_is["U"]), "key_beat")
        u_wait, u_second = Signal(), Signal()
        af_start = Signal(name="af_start")
        other_ref = Signal(64)              # the reference not on the head: A/F's, U's new one
        # ... and its sets, hashed as it is loaded: P0's multiplexer then picks sets, not the
        # reference before its hash (that path, into the farthest block's address copy, led
        # 2 x 2048 x 4 at seed 1: 8.10 ns, eleventh session).
        other_sets = [Signal(set_bits, name=f"other_set{b}") for b in range(BOOK_BANKS)]
        early_sets = order_sets(self.early_ref, p.sets)
        m.d.sync += [u_wait.eq(key_beat & h_is["U"]), u_second.eq(u_wait),
                     af_start.eq(self.early_af)]
        with m.If(key_beat & h_is["U"]):
            m.d.sync += other_ref.eq(h.new_ref)
            m.d.sync += [o.eq(s_) for o, s_ in zip(other_sets, order_sets(h.new_ref, p.sets),
                                                     strict=True)]
        with m.If(self.early_af):
            m.d.sync += other_ref.eq(self.early_ref)
            m.d.sync += [o.eq(s_) for o, s_ in zip(other_sets, early_sets, strict=True)]
        # The side every stage edits: A/F's from its key head, E/C/X/D/U's from its order (P2).
        # It says which memory `cur` takes, and which way every level's price compares go:
        # besides `s_side`, a copy of it per group of levels (`hdl.copies`), so that no one
        # register fans out to every level (measured, when it still selected between the two
        # sides' levels: the longest routed path began with that wire, 3.5 ns across the chip).
        s_side, s_side_next = Signal(name="s_side"), Signal(name="s_side_next")
        k_shares, k_ref = Signal(BOOK_QTY_BITS, name="k_shares"), Signal(64, name="k_ref")
        m.d.comb += s_side_next.eq(s_side)
        m.d.sync += s_side.eq(s_side_next)
        with m.If(key_beat & (h_is["A"] | h_is["F"])):
            m.d.comb += s_side_next.eq(h.side != ord("B"))
            m.d.sync += [k_shares.eq(h.shares), k_ref.eq(h.order_ref)]
        # D's reference is its last field: its lookup starts a cycle before its key head, on
        # the decoder's `early_d`, and its key joins the pipeline at PA from its head.
        d_key = sig(key_beat & h_is["D"], "d_key")
        other = sig(u_second | af_start, "p0_other")
        p0_key = sig(Mux(other, other_ref, h.order_ref), "p0_key")
        p0_sets = [sig(Mux(other, other_sets[b], s_), f"p0_set{b}")
                   for b, s_ in enumerate(order_sets(h.order_ref, p.sets))]
        start = sig(key_beat & (h_is["E"] | h_is["C"] | h_is["X"] | h_is["U"]) | u_second
                    | af_start, "start")
        held = [Signal(set_bits, name=f"held_set{b}") for b in range(BOOK_BANKS)]
        for b in range(BOOK_BANKS):
            addr = sig(Mux(self.early_d, early_sets[b], Mux(start, p0_sets[b], held[b])),
                       f"read_set{b}")
            m.d.sync += held[b].eq(addr)
            m.d.comb += [ram.read_addr.eq(addr) for _, ram in places[in_bank[b]]]
        # What a lookup carries down its stages: its key, whether any instrument's order
        # counts (A/F's duplicate, U's new reference), whether it is U's new one, its sets.
        lookup = data.StructLayout({"valid": 1, "key": 64, "any": 1, "new": 1,
                                    "set": data.ArrayLayout(set_bits, BOOK_BANKS)})
        p1, pa, pb, pk = (Signal(lookup, name=n) for n in ("p1", "pa", "pb", "pk"))
        m.d.sync += [p1.valid.eq(start), p1.key.eq(p0_key), p1.any.eq(other),
                     p1.new.eq(u_second), p1.set.eq(Cat(p0_sets))]

        # P1. Each block RAM takes the address into its own copy of it (`hdl.ebr`: the wire to
        # the farthest of them had been a cycle's worth on its own).
        # PA. The ways' entries are read into their block RAM's register. The key goes into
        # each way's copy (D's from its head, the cycle after its P0 ran on `early_d`; then
        # `p0_key` is its reference: no U waits then).
        m.d.sync += pa.eq(p1)
        with m.If(d_key):
            m.d.sync += [pa.valid.eq(1), pa.key.eq(p0_key), pa.any.eq(0), pa.new.eq(0),
                         pa.set.eq(Cat(p0_sets))]
        # PB. The entries go from their block RAM's register to one beside it (`hdl.ebr`).
        # (PK's key is not read: synthesis drops it.)
        m.d.sync += [pb.eq(pa), pk.eq(pb)]

        # PK. Every way's verdict on the key. (Named: a tuple assignment leaves them `$signal`
        # in the reports tools/depth.py reads.)
        p2_valid, p2_new, p2_any = Signal(name="p2_valid"), Signal(name="p2_new"), Signal(
            name="p2_any")
        p2_hit, p2_free = Signal(n_places, name="p2_hit"), Signal(n_places, name="p2_free")
        p2_top = Signal(n_places, name="p2_top")
        entries = [data.View(self._entry, ram.read_data) for _, ram in places]
        p2_set = [Signal(set_bits, name=f"p2_set{b}") for b in range(BOOK_BANKS)]
        p2_same = Signal(BOOK_BANKS)        # a U new reference's sets equal to the old one's
        # Each way compares with copies of its own (`hdl.copies`) of the key and `any`, loaded
        # with PK's, and of the slot, generation and tops, two cycles behind (they stand still
        # while a lookup needs them: a removal's row is read long before its key head, a clear
        # is >= 5 cycles before the next head, and an A/F's `o_top` is never read).
        way = data.StructLayout({
            "tag": 64 - set_bits, "any": 1, "slot": range(W), "gen": BOOK_GEN_BITS,
            "top": data.ArrayLayout(data.StructLayout({"valid": 1, "px": 32}), 2)})
        now = Signal(way)
        m.d.comb += [now.tag.eq(pb.key[set_bits:]), now.any.eq(pb.any)]
        m.d.sync += [now.slot.eq(slot), now.gen.eq(gen)]
        m.d.sync += [now.top[b].eq(Cat(row[b].top[0].valid, row[b].top[0].px))
                     for b in (BUY, SELL)]
        for i, (e, c) in enumerate(zip(entries, copies(m, platform, now, n_places, "way"),
                                       strict=True)):
            c = data.View(way, c)
            live = sig(e.gen == c.gen, f"live{i}")
            top_valid = Mux(e.side, c.top[SELL].valid, c.top[BUY].valid)
            top_px = Mux(e.side, c.top[SELL].px, c.top[BUY].px)
            m.d.sync += [
                p2_hit[i].eq(live & (e.tag == c.tag) & (c.any | (e.slot == c.slot))),
                p2_free[i].eq(~live),
                p2_top[i].eq(top_valid & (top_px == e.px)),
            ]
        m.d.sync += [p2_valid.eq(pk.valid), p2_new.eq(pk.new), p2_any.eq(pk.any)]
        m.d.sync += [p2_set[b].eq(pk.set[b]) for b in range(BOOK_BANKS)]
        # (The old reference's lookup is two cycles ahead: its sets are kept from its P2.)
        old_set = [Signal(set_bits, name=f"old_set{b}") for b in range(BOOK_BANKS)]
        with m.If(p2_valid & ~p2_new):
            m.d.sync += [old_set[b].eq(p2_set[b]) for b in range(BOOK_BANKS)]
        m.d.sync += [p2_same[b].eq(pk.set[b] == old_set[b]) for b in range(BOOK_BANKS)]

        # P2. The hit and the free ways. For U's new reference the old order's place counts as
        # free: it leaves before the new one enters. A reference is stored once, so the hit
        # selects the entry as it is (no lowest-bit pick): the ways are spread over the
        # chip's block RAM rows, and each of `p2_hit[i] & entries[i]` stays beside its way,
        # so gathering the entry crosses the chip once. (Only after 65,535 clears, in a
        # poisoned table, could two hits meet.)
        o_found, o_hit, o_top, o_full = Signal(), Signal(n_places), Signal(), Signal()
        o_entry = Signal(self._entry)       # the message's order (A/F: a live duplicate)
        n_found, n_full, n_dup_slot = Signal(), Signal(), Signal(range(W))   # U's new ref
        freed = sig(Mux(p2_new, o_hit & Cat(p2_same[b].replicate(p.ways)
                                            for b in range(BOOK_BANKS)), 0), "freed")
        hit = sig(p2_hit & ~freed, "hit")
        free = sig(p2_free | freed, "free")
        # The entry is gathered by `p2_hit` (a message's own lookup frees nothing), so the U's
        # freeing stays off its path; U's new reference gathers only the instrument. Only what
        # the key does not say is gathered: the tag is the key's, and a live entry's
        # generation is the current one (`live`), so 69 of the entry's 140 bits cross the chip
        # from each way, not all.
        gathered = ("slot", "side", "px", "shares")
        entry_sig = Signal(self._entry)
        for name in gathered:
            m.d.comb += getattr(entry_sig, name).eq(or_tree(
                [Mux(p2_hit[i], getattr(entries[i], name), 0) for i in range(n_places)]))
        pk_tag, p2_tag = Signal(64 - set_bits), Signal(64 - set_bits)
        m.d.sync += [pk_tag.eq(now.tag), p2_tag.eq(pk_tag)]
        with m.If(p2_valid & ~p2_new):
            m.d.sync += [getattr(o_entry, name).eq(getattr(entry_sig, name)) for name in gathered]
            m.d.sync += [o_entry.tag.eq(p2_tag), o_entry.gen.eq(gen)]
            m.d.sync += [o_found.eq(hit.any()), o_hit.eq(hit),
                         o_top.eq((hit & p2_top).any()), o_full.eq(~hit.any() & ~free.any())]
        sel_next = sig(p2_valid & ~p2_new & ~p2_any, "sel_next")   # the order's side found
        with m.If(sel_next):
            m.d.comb += s_side_next.eq(entry_sig.side)
        # (The copies are a cycle behind `s_side`, off the gather's path: every scan runs at
        # least two cycles after the side is known, D's the cycle after its RM0.)
        side_copies = copies(m, platform, s_side, SIDE_COPIES, "s_side_copy")

        def side_of_level(i):
            """The copy of `s_side` that level i's scan reads."""
            return side_copies[i * SIDE_COPIES // N]

        # Each side's memory is ROW_PARTS memories of a part of its bits, and each part has
        # its own copies (`hdl.copies`) of the slot (its address), the prefetch's controls and
        # the write enables: one register each would fan out to all ~800 LUT RAM cells and the
        # ~1,500 load multiplexers of `cur`, all over the chip.
        side_bits = self._side.size
        bounds = [side_bits * k // ROW_PARTS for k in range(ROW_PARTS + 1)]
        # `valid`: each side's memory holds data (else it reads as empty). `load`: `cur` takes the
        # memory of side `s_side` (the prefetch, or a removal's order found). (`s_side` itself
        # selects, not a copy: a removal's side comes off the ways' gather the cycle before,
        # and a copy would be a register beside the memories, the gather's wire to it one
        # cycle's worth.)
        row_ctl = data.StructLayout({"slot": range(W), "read": 1, "load": 1, "valid": 2,
                                     "write": 2})
        ctl = [data.View(row_ctl, c) for c in copies(
            m, platform, Cat(slot_next, s_find, s_find | sel_next, slot_valid_next,
                             e_write & ~s_side, e_write & s_side),
            ROW_PARTS, "row_ctl")]
        sides = []                          # per side: each part's read data (0 if not valid)
        for b in (BUY, SELL):
            parts = []
            for k in range(ROW_PARTS):
                mem = memory.Memory(shape=bounds[k + 1] - bounds[k], depth=W, init=[])
                m.submodules[f"sides{b}_{k}"] = mem
                rd, wr = mem.read_port(domain="comb"), mem.write_port()
                m.d.comb += [rd.addr.eq(ctl[k].slot), wr.addr.eq(ctl[k].slot),
                             wr.data.eq(cur.as_value()[bounds[k]:bounds[k + 1]]),
                             wr.en.eq(ctl[k].write[b])]
                parts.append(Mux(ctl[k].valid[b], rd.data, 0))
            sides.append(parts)
        with m.If(p2_valid & p2_new):
            m.d.sync += [n_found.eq(hit.any()), n_full.eq(~hit.any() & ~free.any()),
                         n_dup_slot.eq(or_tree([Mux(hit[i], entries[i].slot, 0)
                                                 for i in range(n_places)]))]
        p3_valid, p3_new, p3_found = Signal(), Signal(), Signal()
        p3_hit, p3_free = Signal(n_places), Signal(n_places)
        p3_set = [Signal(set_bits, name=f"p3_set{b}") for b in range(BOOK_BANKS)]
        p3_nfree = [Signal(range(p.ways + 1), name=f"p3_nfree{b}") for b in range(BOOK_BANKS)]
        m.d.sync += [p3_valid.eq(p2_valid), p3_new.eq(p2_new), p3_found.eq(hit.any()),
                     p3_hit.eq(hit), p3_free.eq(free)]
        m.d.sync += [p3_set[b].eq(p2_set[b]) for b in range(BOOK_BANKS)]
        m.d.sync += [p3_nfree[b].eq(_popcount(free[in_bank[b]])) for b in range(BOOK_BANKS)]

        # P3. Where the order is (or, not found, would go): 2-left, the lowest free way.
        o_place, o_set = Signal(range(n_places)), Signal(set_bits)
        n_place, n_set = Signal(range(n_places)), Signal(set_bits)
        # The lowest free way of each bank and the bank compare run side by side.
        bank1 = sig(p3_nfree[1] > p3_nfree[0], "bank1")
        first = [_lowest(m, p3_free[in_bank[b]], f"first_free{b}") for b in range(BOOK_BANKS)]
        pick = sig(Mux(p3_found, p3_hit, Mux(bank1, Cat(Const(0, p.ways), first[1]),
                                               Cat(first[0], Const(0, p.ways)))), "pick")
        place = _encode(m, pick, "place")
        where = sig(Mux(Mux(p3_found, p3_hit[in_bank[1]].any(), bank1), p3_set[1], p3_set[0]),
                    "where")
        with m.If(p3_valid & ~p3_new):
            m.d.sync += [o_place.eq(place), o_set.eq(where)]
        with m.If(p3_valid & p3_new):
            m.d.sync += [n_place.eq(place), n_set.eq(where)]

        # The message's lookups are in (P2 done) from the seventh cycle of the latest one on
        # (D's: the sixth after its key head). Cleared a cycle before a D's key head too
        # (`early_d`): a D's message comes with its key head, and must find `looked_up` clear
        # then, from a register alone. (An A/F's key head starts nothing: its lookup ran on
        # `early_af`.)
        looked_up = Signal()
        with m.If(p2_valid & ~p2_new):
            m.d.sync += looked_up.eq(1)
        with m.If(start & ~u_second | d_key | self.early_d):
            m.d.sync += looked_up.eq(0)

        # The stages decide a write of the table (`wr_*`: the entry, and whether it goes to
        # U's new reference's place or the message's own); it happens the cycle after, when
        # an A/F's place is in (its P3 runs in its ADD1).
        wr_en, wr_new, wr_entry = Signal(), Signal(), Signal(self._entry)
        w_en, w_new, w_entry = Signal(), Signal(), Signal(self._entry)
        m.d.sync += [w_en.eq(wr_en), w_new.eq(wr_new), w_entry.eq(wr_entry)]
        w_place = sig(Mux(w_new, n_place, o_place), "w_place")
        w_set = sig(Mux(w_new, n_set, o_set), "w_set")
        for i, (_, ram) in enumerate(places):
            m.d.comb += [ram.write_addr.eq(w_set), ram.write_data.eq(w_entry),
                         ram.write_en.eq(w_en & (w_place == i))]

        # -- the message arrives ---------------------------------------------------------------
        msg, body = self.message.payload, self.message.payload.body
        is_ = {t: getattr(msg.kind, t) for t in "SRHAFECXDU"}          # 0 while not valid

        def by_kind(types, field):
            """Field `field` of the message's body, of whichever of `types` it is (else 0)."""
            return or_tree([Mux(getattr(msg.kind, t), getattr(body, t)[field], 0)
                             for t in types])

        m_shares = sig(by_kind("AFECXU", "shares"), "m_shares")
        m_px = sig(by_kind("AFU", "price"), "m_px")

        # An S that clears emits in its own cycle; the clearing lands the cycle after (the next
        # message is >= 14 cycles away): decided off the message's payload, it had fanned out
        # to every per-instrument register in the same cycle.
        clear = sig(is_["S"] & Cat(body.S.event_code == ord(c)
                                   for c in BOOK_CLEAR_EVENTS).any(), "clear")
        clearing = Signal()
        m.d.sync += clearing.eq(clear)
        with m.If(clearing):
            m.d.comb += count["clears"].eq(1)
            m.d.sync += [
                known.eq(0), side_valid[BUY].eq(0), side_valid[SELL].eq(0), touched.eq(0),
                sticky.eq(0),
                state.eq(Cat([Const(TRADING, 8)] * W)),
                gen.eq(Mux(gen.all(), 1, gen + 1)),
                poisoned.eq(poisoned | gen.all()),
            ]

        # The message's fields, held for the later stages.
        r = {t: Signal(name=f"r_is_{t}") for t in "RHAFECXDU"}
        r_new_ref, r_locate = Signal(64), Signal(16)
        r_shares, r_px = Signal(BOOK_QTY_BITS), Signal(32)
        r_index, r_rx_cycle, r_type, r_frame = Signal(32), Signal(48), Signal(8), Signal(16)
        r_state = Signal(8)
        ours = sig(slot_ok & (is_["R"] | is_["H"] | is_["A"] | is_["F"] | is_["E"] | is_["C"]
                              | is_["X"] | is_["D"] | is_["U"]), "ours")
        # The updates that come in a message's own cycle (S, H, A/F) carry its RX cycle, the
        # later ones (E/C/X/D/U) the held one: the next message is >= 14 cycles away.
        m.d.comb += self.next_rx_cycle.eq(Mux(self.message.valid, msg.rx_cycle, r_rx_cycle))
        # Held on every message (an enable from the decoder's register, not from the slot
        # match); the next one is >= 14 cycles away, after this one's last stage.
        with m.If(self.message.valid):
            m.d.sync += [r[t].eq(is_[t]) for t in r]
            m.d.sync += [
                r_new_ref.eq(body.U.new_ref), r_locate.eq(msg.locate),
                r_shares.eq(m_shares), r_px.eq(m_px),
                r_index.eq(msg.index), r_rx_cycle.eq(msg.rx_cycle), r_type.eq(msg.type),
                r_frame.eq(msg.frame), r_state.eq(body.H.trading_state),
            ]
        # A message's marks on its instrument's registers land the cycle after it, from the
        # held fields (its frame's verdict is >= 3 cycles after it, the next message >= 14).
        ours_q = Signal()
        m.d.sync += ours_q.eq(ours)
        with m.If(ours_q):
            with m.If(~r["R"]):
                m.d.sync += touched.bit_select(slot, 1).eq(1)
            with m.If(r["R"] | r["H"] | r["A"] | r["F"]):
                m.d.sync += [locate[slot].eq(r_locate), known.bit_select(slot, 1).eq(1)]
            with m.If(r["H"]):
                m.d.sync += state[slot].eq(r_state)

        # Start: at once, or (D) when its lookup is in.
        needs_table = is_["A"] | is_["F"] | is_["E"] | is_["C"] | is_["X"] | is_["D"] | is_["U"]
        pending = Signal()
        go_now = sig(ours & ~is_["R"] & (~needs_table | looked_up), "go_now")
        # E/C/X can also go in their lookup's P2, in their message's cycle or (X, whose key head
        # is 4 bytes before its end) the cycle after it: their R1 reads what P2 registers. D
        # and U read it in their first stage, A/F theirs long before. (A start of its own:
        # inside `go_now`, the P2 registers had led a routed path through A/F's `add1_go`
        # into `e_write`.)
        go_p2 = sig(p2_valid & ~p2_new & ~looked_up
                    & (ours & (is_["E"] | is_["C"] | is_["X"])
                       | pending & (r["E"] | r["C"] | r["X"])), "go_p2")
        go_late = sig(pending & looked_up, "go_late")
        with m.If(go_late | go_p2):
            m.d.sync += pending.eq(0)
        with m.If(ours & needs_table & ~looked_up & ~go_p2):
            m.d.sync += pending.eq(1)
        go = go_now | go_late
        # The type, operands for the stage that runs in the message's own cycle.
        kind = {t: sig(Mux(self.message.valid, is_[t], r[t]), f"kind_{t}") for t in "AFECXDU"}

        # -- the stages ------------------------------------------------------------------------
        # R1 runs the cycle after go, on the held shares (E/C/X have a cycle to spare; the
        # message's own fields are a type-keyed multiplexer away).
        q_r1, q_rm0, q_rm1, q_rm2 = Signal(), Signal(), Signal(), Signal()
        q_add0, q_add1 = Signal(), Signal()
        m.d.sync += q_r1.eq(go & (kind["E"] | kind["C"] | kind["X"]) | go_p2)
        # D's RM0 comes the cycle after its lookup, when `cur` takes its order's side: its
        # update reads `row`'s tops, its scan runs a cycle later (`q_d_scan`), so its RM1 too.
        d_rm0 = sig(go & kind["D"], "d_rm0")
        q_d_scan = Signal()
        m.d.sync += q_d_scan.eq(d_rm0)
        st_rm0 = sig(go & (kind["D"] | kind["U"]) | q_rm0, "st_rm0")
        st_h = sig(ours & is_["H"], "st_h")           # H needs no lookup: it runs at once
        m.d.sync += [q_rm0.eq(q_r1), q_rm1.eq((st_rm0 & ~d_rm0 | q_d_scan) & o_found),
                     q_rm2.eq(q_rm1),
                     q_add0.eq(q_rm2 & r["U"]), q_add1.eq(q_add0)]
        # A/F: ADD0 ran the cycle before (on `early_price`), ADD1 runs in the message's own
        # cycle. Their lookups are always in by then (the key head comes 4 bytes before the
        # end: P0-P2 are done the cycle before), so A/F never wait. `add1` decides an edit of `cur`
        # (ADD2) on any A/F (from registers, for the edit's fan-out); `add1_go` only on ours,
        # and only it writes anything back or emits.
        add1 = sig(q_add1 | is_["A"] | is_["F"], "add1")
        add1_go = sig(q_add1 | go_now & (is_["A"] | is_["F"]), "add1_go")

        u = self.update.payload
        # `emit` is the OR of the stages' own (exclusive) conditions, not a priority chain of
        # assignments: it is the last logic before `update.valid`.
        emits: list[Value] = []
        emit = Signal()
        m.d.sync += self.update.valid.eq(emit)
        # Counted from the update's own valid, a register, not from `emit`: `emit` into the
        # counter's event register (as a synchronous reset) across the chip was the routed
        # critical path of the feed handler + book (8.51 ns, docs/book-timing.md).
        m.d.comb += count["updates"].eq(self.update.valid)

        # The stages that can emit are exclusive: the payload is their AND-OR, not a priority
        # chain, selected by the message type alone; it loads every cycle, and `emit` alone
        # says when it holds an update (the stage and change logic would otherwise gate ~250
        # enables).
        sources: list[tuple[Value, dict[str, Value]]] = []

        def publish(when, bid_px, bid_qty, ask_px, ask_qty, uncertain, st, **more):
            sources.append((when, dict(
                slot=slot, locate=r_locate, bid_px=bid_px, bid_qty=bid_qty, ask_px=ask_px,
                ask_qty=ask_qty, uncertain=uncertain, halted=st != TRADING, state=st,
                index=r_index, rx_cycle=r_rx_cycle, cause=r_type, frame=r_frame) | more))

        def quote(side_sel, top_px, top_qty):
            """(bid px, bid qty, ask px, ask qty) with side `side_sel`'s top replaced."""
            o_px = Mux(side_sel, row[BUY].top[0].px, row[SELL].top[0].px)
            o_qty = Mux(side_sel, row[BUY].top[0].qty, row[SELL].top[0].qty)
            return (Mux(side_sel, o_px, top_px), Mux(side_sel, o_qty, top_qty),
                    Mux(side_sel, top_px, o_px), Mux(side_sel, top_qty, o_qty))

        emits.append(clear)
        sources.append((is_["S"], dict(clear=1, uncertain=poisoned | gen.all(), state=TRADING,
                                    index=msg.index, rx_cycle=msg.rx_cycle, cause=ord("S"),
                                    frame=msg.frame)))

        # Facts about each side of `row`, a cycle behind it, for the updates' decisions: a
        # 16-bit compare of a count or the orphans is then a register, not logic in front of
        # `emit`. Every stage that reads them runs at least a cycle after `row` last changed:
        # H, E/C/X/D and U's removal long after the prefetch, A/F's ADD1 two cycles after it
        # (the key head is 4 bytes before the end), U's ADD1 two cycles after its removal's
        # edit. (A/F's ADD0, in the cycle after the prefetch, reads `row` itself.)
        facts = [Signal(data.StructLayout({"unsure": 1, "orphans": 1, "orphans_not1": 1,
                                           "count0": 1, "count1": 1}), name=f"facts{b}")
                 for b in (BUY, SELL)]
        for b in (BUY, SELL):
            m.d.sync += [facts[b].unsure.eq(_unsure(row[b])),
                         facts[b].orphans.eq(row[b].orphans != 0),
                         facts[b].orphans_not1.eq(row[b].orphans != 1),
                         facts[b].count0.eq(row[b].top[0].count == 0),
                         facts[b].count1.eq(row[b].top[0].count == 1)]
        unsure_row = sig(facts[BUY].unsure | facts[SELL].unsure, "unsure_row")

        # H: the trading state. (Its index and locate come from the message, in this cycle.)
        new_state = body.H.trading_state
        emits.append(st_h & (new_state != slot_state))
        publish(is_["H"], row[BUY].top[0].px, row[BUY].top[0].qty,
                row[SELL].top[0].px, row[SELL].top[0].qty,
                slot_sticky | unsure_row, new_state,
                locate=msg.locate, index=msg.index, rx_cycle=msg.rx_cycle, cause=ord("H"),
                frame=msg.frame)

        # The RM0 update's decision, for each side and for an order that leaves its level or
        # stays, a cycle behind `facts` (E/C/X/D's RM0 runs long after the prefetch): whether
        # the level empties, the uncertain flag if the order's level is the top (`unc1`) or not
        # (`unc0`), and whether the update changes anything then (`ch1`, before what a partial
        # take alone changes; `ch0`). At RM0 it is picked, not computed: `emit` was six LUTs
        # and three wires across the chip behind these registers.
        before = slot_sticky | unsure_row
        rm_pre = [[Signal(data.StructLayout({"emp": 1, "unc1": 1, "unc0": 1, "ch1": 1,
                                             "ch0": 1}), name=f"rm_pre{b}_{leaving}")
                   for leaving in (0, 1)] for b in (BUY, SELL)]
        for b in (BUY, SELL):
            for leaving in (0, 1):
                f, t = facts[b], row[b].top
                emp = f.count1 if leaving else f.count0
                unc1 = slot_sticky | facts[1 - b].unsure | emp & ~t[1].valid & f.orphans
                unc0 = slot_sticky | facts[1 - b].unsure | ~t[0].valid & (
                    f.orphans_not1 if leaving else f.orphans)
                m.d.sync += rm_pre[b][leaving].eq(Cat(emp, unc1, unc0, emp | (unc1 != before),
                                                      unc0 != before))

        # The top two levels of the message's side, from `row` (D's RM0 comes in the cycle
        # `cur` takes its side).
        side_top = Signal(data.ArrayLayout(Level, 2), name="side_top")
        m.d.comb += side_top.eq(Mux(s_side, row[SELL].top, row[BUY].top))
        lv0, lv1 = side_top[0], side_top[1]

        # R1 (E/C/X): take what the message says, at most what the order has; the update's
        # decision from `rm_pre`, and the order's top level less either take.
        r1_take, r1_leaves, r1_clamp = Signal(BOOK_QTY_BITS), Signal(), Signal()
        # The stages' scan registers load every cycle (no enable to fan out): each is read only
        # in the cycle after its stage.
        r1_leaves_now = sig(r_shares >= o_entry.shares, "r1_leaves_now")
        r1_pre = data.View(rm_pre[0][0].shape(), sig(Mux(
            s_side, Mux(r1_leaves_now, rm_pre[SELL][1], rm_pre[SELL][0]),
            Mux(r1_leaves_now, rm_pre[BUY][1], rm_pre[BUY][0])), "r1_pre"))
        r1_emit, r1_empties, r1_unc = Signal(), Signal(), Signal()
        r1_rest = Signal(data.ArrayLayout(BOOK_QTY_BITS, 2))   # the top less r_shares, less all
        m.d.sync += [r1_clamp.eq(r_shares > o_entry.shares),
                     r1_leaves.eq(r1_leaves_now),
                     r1_take.eq(Mux(r_shares > o_entry.shares, o_entry.shares, r_shares)),
                     # (The take is not 0 iff r_shares is not: a live entry has shares.)
                     r1_emit.eq(o_found & Mux(o_top, (r_shares != 0) | r1_pre.ch1, r1_pre.ch0)),
                     r1_empties.eq(r1_pre.emp),
                     r1_unc.eq(Mux(o_top, r1_pre.unc1, r1_pre.unc0)),
                     r1_rest[0].eq(lv0.qty - r_shares),
                     r1_rest[1].eq(lv0.qty - o_entry.shares)]

        # RM0: the update of E/C/X/D, from the top two levels of the order's side; the scan.
        # E/C/X come to RM0 through R1 (`q_rm0`), D and U from `go`. (The scan registers
        # reload their operands in RM1, for the edit: the same take then.)
        q_rm0_ecx = Signal()
        m.d.sync += q_rm0_ecx.eq(q_rm0)
        partial = sig(q_rm0 | q_rm0_ecx, "partial")
        take = sig(Mux(partial, r1_take, o_entry.shares), "take")
        leaves = sig(Mux(partial, r1_leaves, 1), "leaves")
        # E/C/X's decision is R1's; D's is made here (its order is found the cycle before), on
        # an order that leaves and whose take, all of it, is never 0 (a live entry has shares:
        # an add of 0 is rejected, and an entry left with 0 is emptied).
        d_pre = data.View(rm_pre[0][0].shape(),
                          sig(Mux(s_side, rm_pre[SELL][1], rm_pre[BUY][1]), "d_pre"))
        empties = sig(Mux(r["D"], d_pre.emp, r1_empties), "empties")
        rm_px = sig(Mux(empties, lv1.px, lv0.px), "rm_px")
        rm_qty = sig(Mux(empties, lv1.qty, Mux(r["D"], lv0.qty - o_entry.shares,
                                                Mux(r1_clamp, r1_rest[1], r1_rest[0]))),
                     "rm_qty")
        top_px = Mux(o_top, rm_px, lv0.px)
        top_qty = Mux(o_top, rm_qty, lv0.qty)
        unsure_other = sig(Mux(s_side, facts[BUY].unsure, facts[SELL].unsure), "unsure_other")
        rm_uncertain = sig(Mux(r["D"], Mux(o_top, d_pre.unc1, d_pre.unc0), r1_unc),
                           "rm_uncertain")
        with m.If(st_rm0):
            with m.If(~o_found):
                m.d.comb += count["unknown_ref"].eq(1)
            with m.Elif(partial):
                m.d.comb += count["clamped"].eq(r1_clamp)
        # (D's RM0 is never in its message's cycle: its lookup starts on its last byte.)
        emits.append(q_rm0 & r1_emit | go_late & r["D"] & o_found & (o_top | d_pre.ch0))
        # (Selected by registers alone: RM0 of E/C/X/D never falls in a message's own cycle.)
        publish(~self.message.valid & ~q_add1 & (r["E"] | r["C"] | r["X"] | r["D"]),
                *quote(s_side, top_px, top_qty), rm_uncertain, slot_state)
        u_before_px, u_before_qty, u_before_unsure = Signal(32), Signal(BOOK_QTY_BITS), Signal()
        # The top's shares before U, less U's new shares: for the add scan's change flag, a
        # joined top's shares t0 + a differ from those before iff t0 differs from this (ADD0 is
        # three cycles after RM0).
        u_before_less = Signal(BOOK_QTY_BITS)
        m.d.sync += u_before_less.eq(u_before_qty - r_shares)
        with m.If(st_rm0):
            m.d.sync += [u_before_px.eq(lv0.px), u_before_qty.eq(lv0.qty),
                         u_before_unsure.eq(unsure_row)]

        # -- the scans (RM0, ADD0) --------------------------------------------------------------
        # The side in `cur` is scanned (for U's new order: the side its removal left there):
        # every level compared with the price, its sums precomputed, the levels of rank 2 and
        # N-1 and the first free level picked out, all registered, so that the edit in the next
        # stage is multiplexers into `cur`.
        scan_in = cur
        is_bid = s_side == BUY

        def gather(onehot, field, name):
            """Field `field` of the level `onehot` points at (0 if none): an AND-OR tree."""
            return sig(or_tree([Mux(onehot[i], getattr(scan_in.levels[i], field), 0)
                                 for i in range(N)]), name)

        def of_rank(r, name):
            return sig(Cat(scan_in.levels[i].valid & (scan_in.rank[i] == r) for i in range(N)),
                       name)

        # The removal scan (RM0). `x_wt`: the levels worse than the order's price, which move
        # up a rank if its level empties. `x_top`: the top copies as the removal leaves them;
        # `x_r2` the level that becomes a top if one of them empties.
        x_leaves, x_eq, x_empty, x_wt = Signal(), Signal(N), Signal(N), Signal(N)
        x_qty = Signal(data.ArrayLayout(BOOK_QTY_BITS, N))
        x_count = Signal(data.ArrayLayout(BOOK_COUNT_BITS, N))
        x_orphans, left = Signal(BOOK_COUNT_BITS), Signal(BOOK_QTY_BITS)
        x_t, x_t_gone = Signal(2), Signal(2)
        x_top, x_r2 = Signal(data.ArrayLayout(Level, 2)), Signal(Level)
        m.d.sync += [x_leaves.eq(leaves), left.eq(o_entry.shares - take),
                     x_orphans.eq(scan_in.orphans - 1)]
        for i, lv in enumerate(scan_in.levels):
            m.d.sync += [
                x_eq[i].eq(lv.valid & (lv.px == o_entry.px)),
                x_wt[i].eq(lv.valid & _better(side_of_level(i) == BUY, o_entry.px, lv.px)),
                x_qty[i].eq(lv.qty - take),
                x_count[i].eq(lv.count - leaves),
                x_empty[i].eq(Mux(leaves, lv.count == 1, lv.count == 0)),
            ]
        for k, t in enumerate(scan_in.top):
            m.d.sync += [
                x_t[k].eq(t.valid & (t.px == o_entry.px)),
                x_t_gone[k].eq(Mux(leaves, t.count == 1, t.count == 0)),
                x_top[k].valid.eq(t.valid), x_top[k].px.eq(t.px),
                x_top[k].qty.eq(t.qty - take), x_top[k].count.eq(t.count - leaves),
            ]
        r2 = of_rank(2, "rank2")
        m.d.sync += x_r2.eq(Cat(r2.any(), *(gather(r2, f, f"r2_{f}")
                                            for f in ("px", "qty", "count"))))

        # The add scan (ADD0), with the candidates for the update. A/F run it the cycle before
        # their message (its last byte on the decoder's sink: `early_price`), with shares from
        # the key head; U later (q_add0), from the held message. The registers load every
        # cycle: only the cycle after an A/F's last byte (or after q_add0) reads them.
        # The shares are a register, chosen the cycle before: they feed an adder per level.
        # (A/F's come from the key head, U's from its message, both long before ADD0.)
        a_px = sig(Mux(q_add0, r_px, self.early_price), "a_px")
        a_qty = Signal(BOOK_QTY_BITS, name="a_qty")
        m.d.sync += a_qty.eq(Mux(q_rm2 & r["U"], r_shares, k_shares))
        y_rej, y_orph, y_full = Signal(), Signal(), Signal()
        y_eq, y_bt, y_eq_ovf, y_tgt = Signal(N), Signal(N), Signal(N), Signal(N)
        y_qty = Signal(data.ArrayLayout(BOOK_QTY_BITS, N))
        y_count = Signal(data.ArrayLayout(BOOK_COUNT_BITS, N))
        y_px, y_shares = Signal(32), Signal(BOOK_QTY_BITS)
        y_push_ovf, y_orph_max = Signal(), Signal()
        y_orph_inc, y_orph_push = Signal(BOOK_COUNT_BITS), Signal(BOOK_COUNT_BITS)
        y_worst_px = Signal(32)
        y_t, y_t_bt = Signal(2), Signal(2)              # joins / is worse than each top copy
        y_t_qty = Signal(data.ArrayLayout(BOOK_QTY_BITS, 2))
        y_t_count = Signal(data.ArrayLayout(BOOK_COUNT_BITS, 2))
        # Whether the update's top differs from the top before the message, for each top the
        # decision can pick (the new order's, the top joined, the top kept), compared here
        # rather than after the decision: `emit` then waits on none of these compares.
        y_ch = Signal(data.StructLayout({"px_new": 1, "px_keep": 1, "qty_new": 1,
                                         "qty_join": 1, "qty_keep": 1}))
        y_before_unsure = Signal()
        valid = sig(Cat(lv.valid for lv in scan_in.levels), "scan_valid")
        worst = of_rank(N - 1, "worst")             # the level a new one pushes out (if full)
        # A full side's worst level pushed out joins the orphans: whether they overflow is
        # known per level beside the rank compares and only gathered (the update's taint needs
        # it in ADD1); their new count is summed in ADD1 from registers, for the edit.
        y_worst_count, y_orphans = Signal(BOOK_COUNT_BITS), Signal(BOOK_COUNT_BITS)
        push_ovf = sig(Cat((lv.count + scan_in.orphans)[BOOK_COUNT_BITS]
                           for lv in scan_in.levels), "push_ovf")
        m.d.sync += y_orph_push.eq(y_orphans + y_worst_count)
        first_free = _lowest(m, ~valid, "first_free_level")
        worst_px = gather(worst, "px", "worst_px")
        t0 = scan_in.top[0]
        before_px = sig(Mux(q_add0, u_before_px, t0.px), "before_px")
        before_qty = sig(Mux(q_add0, u_before_qty, t0.qty), "before_qty")
        totals = []
        for i, lv in enumerate(scan_in.levels):
            totals.append(Signal(BOOK_QTY_BITS + 1, name=f"add_total{i}"))
            m.d.comb += totals[i].eq(lv.qty + a_qty)
        # Held in the decision's cycle (`add1`): the edit, a cycle later, reads them.
        with m.If(~add1):
            m.d.sync += [
                y_px.eq(a_px), y_shares.eq(a_qty),
                y_rej.eq((a_qty == 0) | (a_px == 0)),
                y_orph.eq((scan_in.orphans != 0) & ~_better_split(is_bid, a_px, scan_in.cut)),
                y_full.eq(valid.all()), y_push_ovf.eq((worst & push_ovf).any()),
                y_worst_count.eq(gather(worst, "count", "worst_count")),
                y_orphans.eq(scan_in.orphans),
                y_tgt.eq(Mux(valid.all(), worst, first_free)),
                y_worst_px.eq(worst_px),
                y_orph_max.eq(scan_in.orphans.all()),
                y_orph_inc.eq(scan_in.orphans + 1),
                y_ch.px_new.eq(a_px != before_px), y_ch.px_keep.eq(t0.px != before_px),
                y_ch.qty_new.eq(a_qty != before_qty),
                # (t0 + a != before, mod 2**32: for A/F, whose top before is t0, a != 0.)
                y_ch.qty_join.eq(Mux(q_add0, t0.qty != u_before_less, a_qty != 0)),
                y_ch.qty_keep.eq(t0.qty != before_qty),
                # (`unsure_row` is a cycle behind `row`, which an A/F's prefetch has just loaded.)
                y_before_unsure.eq(Mux(q_add0, u_before_unsure,
                                       _unsure(row[BUY]) | _unsure(row[SELL]))),
            ]
            for i, (lv, total) in enumerate(zip(scan_in.levels, totals, strict=True)):
                joins = lv.valid & (lv.px == a_px)
                m.d.sync += [
                    y_eq[i].eq(joins),
                    y_bt[i].eq(lv.valid & _better_split(side_of_level(i) == BUY, lv.px, a_px)),
                    y_qty[i].eq(total), y_count[i].eq(lv.count + 1),
                    y_eq_ovf[i].eq(joins & (total[-1] | lv.count.all())),  # and overflows it
                ]
            for k, t in enumerate(scan_in.top):
                m.d.sync += [
                    y_t[k].eq(t.valid & (t.px == a_px)),
                    y_t_bt[k].eq(t.valid & _better_split(is_bid, t.px, a_px)),
                    y_t_qty[k].eq(t.qty + a_qty), y_t_count[k].eq(t.count + 1),
                ]

        # -- the decision (RM1, ADD1) and the edit (RM2, ADD2): one level, the ranks, the top
        # copies, into `cur` -------------------------------------------------------------------
        x_gone = sig((x_eq & x_empty).any(), "x_gone")      # the order's level empties
        # `y_fits`: the order goes into the levels (not rejected, not an orphan); `y_pushes`:
        # as a new level, into a full side. Neither depends on `add1` (the message's own
        # cycle), so the update's decision can use them directly.
        y_fits = sig(~y_rej & ~y_orph, "y_fits")
        y_pushes = sig(y_fits & ~y_eq.any() & y_full, "y_pushes")
        y_ok = sig(add1 & y_fits, "y_ok")
        insert = sig(y_ok & ~y_eq.any(), "insert")
        push_out = sig(add1 & y_pushes, "push_out")
        pushed_new = sig(push_out & y_bt.all(), "pushed_new")     # worse than all N: not kept
        opens = sig(insert & ~y_bt.all(), "opens")                # the new level is kept
        rank_new = sig(_popcount(y_bt), "rank_new")              # the levels better than it
        orphan_out = sig(q_rm1 & ~x_eq.any() & x_leaves, "orphan_out")
        orphan_in = sig((add1 & ~y_rej & y_orph) | pushed_new, "orphan_in")
        new = Signal(Level)
        m.d.comb += [new.valid.eq(1), new.px.eq(y_px), new.qty.eq(y_shares), new.count.eq(1)]
        # The decision (RM1, ADD1) is registered per level (`e_*`), and the edit runs the cycle
        # after (RM2, ADD2) from those registers alone: the wide controls (`add1` from the
        # message's own cycle, `opens` and `rank_new` from reductions of the scan) no longer
        # fan out to the ~1,500 bits of `cur` in the cycle they are decided. Nothing touches
        # `cur` in between, and the edit's operands are still there: the x_* scan registers
        # reload the same values (neither `cur` nor the order changes), the y_* ones hold on
        # `add1`.
        t0_gone, t1_gone = x_t[0] & x_t_gone[0], x_t[1] & x_t_gone[1]
        # A level that empties: those worse move up one. One that opens: those worse move down
        # one, and it takes the number of those better.
        e_rank = Signal(data.ArrayLayout(rank_bits(N), N))
        m.d.sync += [e_rank[i].eq(Mux(q_rm1 & x_gone & x_wt[i], cur.rank[i] - 1,
                                      Mux(opens, Mux(y_tgt[i], rank_new,
                                                     cur.rank[i] + ~y_bt[i]),
                                          cur.rank[i])))
                     for i in range(N)]
        e = {name: Signal(N, name=f"e_{name}")
             for name in ("rm_mod", "rm_gone", "add_mod", "add_new")}
        e_edit = Signal()                   # the edit's cycle (the ranks are rewritten)
        # One-hot choices for the top copies, orphans and cut (none: they stay).
        e_t0 = Signal(4, name="e_top0")     # top1, x_top[0], joined[0], new
        e_t1 = Signal(5, name="e_top1")     # x_r2, x_top[1], joined[1], top0, new
        e_orph = Signal(3, name="e_orphans")    # x_orphans, y_orph_inc, y_orph_push
        e_cut = Signal(2, name="e_cut")         # y_px, y_worst_px
        rm, ad = q_rm1, ~q_rm1
        t0_join, t1_join = y_ok & y_t[0], y_ok & y_t[1]
        t0_new = insert & ~y_t_bt[0]
        t1_new = insert & ~y_t_bt[1]
        m.d.sync += [
            e["rm_mod"].eq(Mux(rm, x_eq & ~x_empty, 0)),
            e["rm_gone"].eq(Mux(rm, x_eq & x_empty, 0)),
            e["add_mod"].eq(Mux(y_ok, y_eq, 0)),
            e["add_new"].eq(Mux(opens, y_tgt, 0)),
            e_edit.eq(q_rm1 | add1),
            e_t0.eq(Cat(rm & t0_gone, rm & ~t0_gone & x_t[0],
                        ad & t0_join, ad & ~t0_join & t0_new)),
            e_t1.eq(Cat(rm & (t0_gone | t1_gone), rm & ~(t0_gone | t1_gone) & x_t[1],
                        ad & t1_join, ad & ~t1_join & t0_new,
                        ad & ~t1_join & ~t0_new & t1_new)),
            e_orph.eq(Cat(orphan_out, ~orphan_out & orphan_in,
                          ~orphan_out & ~orphan_in & push_out)),
            e_cut.eq(Cat(pushed_new, ~pushed_new & push_out)),
        ]

        edited = Signal(self._side, name="edited")
        for i in range(N):
            lv = cur.levels[i]
            rm_mod, rm_gone = e["rm_mod"][i], e["rm_gone"][i]
            add_mod, add_new = e["add_mod"][i], e["add_new"][i]
            keep = ~(rm_mod | add_mod | add_new)
            m.d.comb += [
                edited.levels[i].valid.eq(add_new | lv.valid & ~rm_gone),
                edited.levels[i].px.eq(Mux(add_new, y_px, lv.px)),
                edited.levels[i].qty.eq(or_tree([
                    Mux(keep, lv.qty, 0), Mux(rm_mod, x_qty[i], 0),
                    Mux(add_mod, y_qty[i], 0), Mux(add_new, y_shares, 0)])),
                edited.levels[i].count.eq(or_tree([
                    Mux(keep, lv.count, 0), Mux(rm_mod, x_count[i], 0),
                    Mux(add_mod, y_count[i], 0), Mux(add_new, 1, 0)])),
                edited.rank[i].eq(Mux(e_edit, e_rank[i], cur.rank[i])),
            ]
        # The copies of the top two follow the level they copy, or the next rank.
        top0, top1 = cur.top
        joined = [Cat(t.valid, t.px, y_t_qty[k], y_t_count[k]) for k, t in enumerate(cur.top)]
        m.d.comb += [
            edited.top[0].eq(_choose(e_t0, [top1, x_top[0], joined[0], new], top0)),
            edited.top[1].eq(0 if N < 2 else
                             _choose(e_t1, [x_r2, x_top[1], joined[1], top0, new], top1)),
            # Orphans and cut: one leaves (not found), one joins, or the worst level is
            # pushed out (or the new one is not kept).
            edited.orphans.eq(_choose(e_orph, [x_orphans, y_orph_inc, y_orph_push],
                                      cur.orphans)),
            edited.cut.eq(_choose(e_cut, [y_px, y_worst_px], cur.cut)),
        ]
        # The prefetch of the next message's row comes the cycle after the write-back of this
        # one's last edit (D: RM2 at t0+8, written at t0+9; the next message's locate head at
        # t0+5, its row read at t0+10: a locate's slot match has three registers more than a
        # symbol's. With two, D's write-back went to the next message's slot, a book's side
        # taking another's levels: the torture test found it when D's lookup took its PB).
        for k in range(ROW_PARTS):
            m.d.sync += cur.as_value()[bounds[k]:bounds[k + 1]].eq(
                Mux(ctl[k].load, Mux(s_side, sides[SELL][k], sides[BUY][k]),
                    edited.as_value()[bounds[k]:bounds[k + 1]]))
        # `row` keeps both sides' tops: read by the prefetch, and the edited side's follow `cur`.
        read = [data.View(self._side, Cat(sides[b])) for b in (BUY, SELL)]
        for b in (BUY, SELL):
            with m.If(ctl[-1].read):
                m.d.sync += [row[b].top.eq(read[b].top), row[b].orphans.eq(read[b].orphans)]
            with m.Elif(e_edit & (s_side == b)):
                m.d.sync += [row[b].top.eq(edited.top), row[b].orphans.eq(edited.orphans)]
        # The edited side goes back to its memory the cycle after, from `cur`: the edit's
        # multiplexers then end at flip-flops, not at the LUT RAM's write ports all over the chip.
        written = Signal()
        m.d.sync += [e_write.eq(q_rm1 | add1_go), written.eq(e_write)]
        for b in (BUY, SELL):
            with m.If(written & (s_side == b)):
                m.d.sync += side_valid[b].bit_select(slot, 1).eq(1)

        # RM1: the entry keeps what is left, or is emptied. An order leaving from a price with
        # neither a level nor orphans: the book was already uncertain (module docstring).
        # (The entry written is set with ADD1's below.)
        kept = Signal(self._entry)          # a removal's: what is left, or an empty entry
        m.d.comb += [kept.eq(o_entry), kept.shares.eq(left)]
        with m.If(q_rm1):
            m.d.comb += wr_en.eq(1)
            with m.If(orphan_out & (cur.orphans == 0)):
                m.d.comb += taint_slot.eq(1)

        # ADD1: the new order stored (over a duplicate, else in a free way, else nowhere) and
        # the update.
        # (In an A/F's own cycle `r` still holds the message before it: the U's ADD1 is q_add1.)
        found = sig(Mux(q_add1, n_found, o_found), "found")
        full = sig(Mux(q_add1, n_full, o_full), "full")
        dup_slot = Mux(q_add1, n_dup_slot, o_entry.slot)
        m.d.sync += t_dup_at.eq(dup_slot)
        dup_here = found & (dup_slot == slot)
        # (Read only under `add1_go`, so without `add1`.)
        op_taint = sig(~y_rej & ((y_orph & y_orph_max) | y_eq_ovf.any()
                                 | (y_pushes & Mux(y_bt.all(), y_orph_max, y_push_ovf))),
                       "op_taint")
        top_sel_b = sig(y_fits & y_t[0], "top_sel_b")                   # joins the top level
        top_sel_c = sig(y_fits & ~y_t[0] & ~y_t_bt[0], "top_sel_c")     # becomes the top level
        lv0_now = cur.top[0]
        add_top_px = sig(Mux(top_sel_c, y_px, lv0_now.px), "add_top_px")
        add_top_qty = sig(Mux(top_sel_c, y_shares, Mux(top_sel_b, y_t_qty[0], lv0_now.qty)),
                          "add_top_qty")
        add_quote_changed = sig(Mux(top_sel_c, y_ch.px_new | y_ch.qty_new,
                                    y_ch.px_keep | Mux(top_sel_b, y_ch.qty_join,
                                                       y_ch.qty_keep)), "add_quote_changed")
        unsure_add = Mux(y_fits, 0, Mux(s_side, facts[SELL].unsure, facts[BUY].unsure))
        add_uncertain = sig(slot_sticky | (~y_rej & (dup_here | full | op_taint))
                            | unsure_add | unsure_other, "add_uncertain")
        add_changed = sig(add_quote_changed
                          | (add_uncertain != (slot_sticky | y_before_unsure)), "add_changed")
        new_entry = Signal(self._entry)
        m.d.comb += [new_entry.tag.eq(Mux(q_add1, r_new_ref, k_ref)[set_bits:]),
                     new_entry.slot.eq(slot), new_entry.side.eq(s_side),
                     new_entry.px.eq(y_px), new_entry.shares.eq(y_shares), new_entry.gen.eq(gen)]
        # The entry written is chosen by the stage (registers), not by whether ADD1 goes: only
        # `wr_en` waits on the message's valid. (With the go in the select, the valid reached
        # the table's write data: it led the feed handler + book at seed 3, 9.07 ns, thirteenth
        # session.)
        m.d.comb += [wr_entry.eq(Mux(q_rm1, Mux(left != 0, kept.as_value(), 0), new_entry)),
                     wr_new.eq(q_add1)]
        with m.If(add1_go):
            with m.If(y_rej):
                m.d.comb += count["rejected"].eq(1)
            with m.Else():
                with m.If(found | ~full):
                    m.d.comb += wr_en.eq(1)
                with m.If(found):
                    m.d.comb += [count["duplicate_ref"].eq(1), taint_dup.eq(1)]
                with m.Elif(full):
                    m.d.comb += [count["table_full"].eq(1), taint_slot.eq(1)]
                with m.If(push_out):
                    m.d.comb += count["level_overflow"].eq(1)
                with m.If(op_taint):
                    m.d.comb += taint_slot.eq(1)
        emits.append(add1_go & add_changed)
        m.d.comb += emit.eq(or_tree(emits))
        # A/F publish in their message's cycle, with its fields; U a stage later, with the held
        # ones.
        add_quote = quote(s_side, add_top_px, add_top_qty)
        publish(q_add1, *add_quote, add_uncertain, slot_state)
        publish(is_["A"] | is_["F"], *add_quote, add_uncertain, slot_state, locate=msg.locate,
                index=msg.index, rx_cycle=msg.rx_cycle, cause=msg.type, frame=msg.frame)

        for name in data.Layout.cast(TopUpdate).members:
            terms = [Mux(when, Value.cast(fields[name]), 0)
                     for when, fields in sources if name in fields]
            m.d.sync += getattr(u, name).eq(or_tree(terms) if terms else 0)
        return m
