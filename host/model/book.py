"""Reference model of the order book: decoded ITCH messages in, top-of-book updates out.

This is the specification `hdl.book.OrderBook` is tested against, and what `hostctl replay
--engine model --watch` runs. Everything the gateware's capacities make it do (which way of a
set an order lands in, which price level is pushed out) is modelled exactly, so the two agree
update for update and counter for counter.

Watchlist. `slots` instruments, configured by symbol. R, H, A and F carry the symbol: they
find their slot by it and teach it the stock locate. E, C, X, D and U carry only the locate:
they find their slot by the learned locate; a message for no watched instrument is ignored.

Order table. Two banks of `sets` x `ways`: an order's reference names one set in each bank
(`order_sets`), and it lives in whichever has more free ways (bank 0 on a tie), in the lowest
free way there. An order whose two sets are both full is not stored (`table_full`): the
instrument's book is marked uncertain until the next clear, because its shares sit in a level
that nothing can ever take them out of again. E/C/X/D/U look the reference up in the message's
instrument; not found is `unknown_ref` (counted, ignored). An execute or cancel of more than
remains is clamped to what remains (`clamped`). A/F/U with zero shares or zero price are rejected
(`rejected`), as itch-book rejects them. A new reference that is already live (never in a real
feed: references are unique per day) overwrites the entry (`duplicate_ref`) and marks the old
order's book uncertain, since its shares stay in their level.

Price levels. Per instrument and side, up to `levels` levels, best first, with aggregate shares
and an order count. When a new level does not fit, the worst one is pushed out (or the new one
is not stored): its orders become *orphans*, counted per side, and the side remembers the best
price it ever pushed out, `cut`. From then on an order at a price at or worse than `cut` joins
the orphans instead of a level, and an orphan that leaves the book (not found in any level)
decrements the count; at zero the side is whole again. Every retained level is strictly better
than `cut`, so the top of book stays exact as long as one level is retained; a side with no
level but orphans does not know its top and marks the book uncertain until it has a level
again. Overflowing a 32-bit level quantity or a 16-bit count marks the book uncertain.

Clearing. S 'O' (start of messages) and S 'C' (end of messages) empty every book, forget the
locates and reset the flags. The order table is emptied by a 16-bit generation number rather
than by writing 16k entries; after 65,535 clears since reset the generations would repeat, so
the card then marks every book uncertain for good (`poisoned`).

Uncertainty also comes from outside: a MoldUDP64 gap marks every book uncertain (`gap`), and a
frame whose verdict is bad after some of its messages were applied marks the books those
messages touched (`verdict`). Both last until the next clear, as does the uncertainty of a
slot written by the host (`watch`): its book missed whatever came before.

Output: one `TopUpdate` for each message that changes its instrument's top of book (price or
shares of either side), its uncertain flag or its trading state; and one with `clear` set for
a clearing S, which stands for "every book is now empty" (one update rather than one per slot,
because the next message can follow the S by 14 cycles).
"""

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    order_sets,
)

__all__ = ["BookParams", "TopUpdate", "BookModel", "quote_changes", "bbo_rows", "bbo_csv",
           "symbol_code", "BBO_HEADER", "BUY", "SELL"]

BUY, SELL = BOOK_BUY, BOOK_SELL
_SIDES = {ord("B"): BUY, ord("S"): SELL}
_QTY_MAX = (1 << BOOK_QTY_BITS) - 1
_COUNT_MAX = (1 << BOOK_COUNT_BITS) - 1
_GEN_MAX = (1 << BOOK_GEN_BITS) - 1
_TRADING = BOOK_TRADING


@dataclass(frozen=True)
class TopUpdate:
    slot: int
    locate: int
    bid_px: int
    bid_qty: int
    ask_px: int
    ask_qty: int
    uncertain: bool
    halted: bool
    state: str                # trading state letter from H: H, P, Q or T
    index: int                # 0-based index of the causing ITCH message
    rx_cycle: int             # RX cycle of that message's last byte
    clear: bool = False       # an S cleared every book (slot, locate and quote are 0)

    def quote(self) -> tuple[int, int, int, int]:
        return self.bid_px, self.bid_qty, self.ask_px, self.ask_qty


def better(side: int, a: int, b: int) -> bool:
    """Is price `a` strictly better than `b` on `side`? Bids: higher; asks: lower."""
    return a > b if side == BUY else a < b


@dataclass
class _Level:
    px: int
    qty: int
    count: int


@dataclass
class _Side:
    levels: list[_Level] = field(default_factory=list)     # best first
    orphans: int = 0
    cut: int = 0              # best price ever pushed out; meaningful while orphans > 0

    def top(self) -> tuple[int, int]:
        return (self.levels[0].px, self.levels[0].qty) if self.levels else (0, 0)

    def unsure(self) -> bool:
        return not self.levels and self.orphans > 0


@dataclass
class _Instrument:
    symbol: int | None = None     # big-endian ASCII, space padded; None: slot unused
    locate: int | None = None
    state: str = _TRADING
    sticky: bool = False          # uncertain until the next clear
    sides: tuple[_Side, _Side] = field(default_factory=lambda: (_Side(), _Side()))


@dataclass
class _Order:
    ref: int
    slot: int
    side: int
    px: int
    shares: int
    gen: int


class BookModel:
    def __init__(self, params: BookParams | None = None) -> None:
        self.p = params = params or BookParams()
        self.books = [_Instrument() for _ in range(params.slots)]
        # table[bank][set][way]
        self.table: list[list[list[_Order | None]]] = [
            [[None] * params.ways for _ in range(params.sets)] for _ in range(BOOK_BANKS)]
        self.gen = 1              # entries of another generation are empty
        # Where each live order is: an index, so a lookup need not scan the ways (the table
        # alone decides placement; this only finds what is already there).
        self.where: dict[int, tuple[list[_Order | None], int]] = {}
        self.poisoned = False
        self.touched: set[int] = set()     # slots the current frame's messages changed
        self.count = {name: 0 for name in BOOK_COUNTERS}

    # -- configuration ----------------------------------------------------------------------

    def watch(self, slot: int, symbol: str | None) -> None:
        """Write one watchlist row. The slot's book starts empty and uncertain (it has missed
        whatever came before) until the next clear: configure before the start of the day."""
        if not 0 <= slot < self.p.slots:
            raise ValueError(f"slot must be between 0 and {self.p.slots - 1}, not {slot}")
        code = None if symbol is None else symbol_code(symbol)
        self.books[slot] = _Instrument(symbol=code, sticky=code is not None)

    # -- inputs -----------------------------------------------------------------------------

    def message(self, msg: dict[str, Any]) -> TopUpdate | None:
        kind = msg["type"]
        if kind == "S":
            if chr(msg["event_code"]) not in BOOK_CLEAR_EVENTS:
                return None
            self._clear()
            self.count["updates"] += 1
            return TopUpdate(0, 0, 0, 0, 0, 0, self.poisoned, False, _TRADING,
                             msg.get("index", 0), msg.get("rx_cycle", 0), clear=True)
        if kind in "RHAF":
            slot = self._by_symbol(msg["stock"])
            if slot is None:
                return None
            self.books[slot].locate = msg["locate"]
        elif kind in "ECXDU":
            slot = self._by_locate(msg["locate"])
            if slot is None:
                return None
        else:
            return None
        if kind == "R":
            return None
        book = self.books[slot]
        before = self._view(slot)
        self.touched.add(slot)
        if kind == "H":
            book.state = chr(msg["trading_state"])
        elif kind in "AF":
            self._add(slot, msg["order_ref"], _SIDES.get(msg["side"], SELL), msg["price"],
                      msg["shares"])
        else:
            self._modify(slot, kind, msg)
        after = self._view(slot)
        if after == before:
            return None
        self.count["updates"] += 1
        return TopUpdate(slot, book.locate or 0, *after[:4], after[4], after[5] != _TRADING,
                         after[5], msg.get("index", 0), msg.get("rx_cycle", 0))

    def verdict(self, drop: Drop) -> None:
        """The end of a frame: a bad one taints the books its messages touched."""
        if drop is not Drop.NONE:
            for slot in self.touched:
                self.books[slot].sticky = True
        self.touched.clear()

    def gap(self) -> None:
        """A MoldUDP64 gap: messages were missed, for any instrument."""
        for book in self.books:
            book.sticky = True

    # -- state ------------------------------------------------------------------------------

    def uncertain(self, slot: int) -> bool:
        b = self.books[slot]
        return self.poisoned or b.sticky or b.sides[BUY].unsure() or b.sides[SELL].unsure()

    def top(self, slot: int) -> tuple[int, int, int, int]:
        b = self.books[slot]
        return (*b.sides[BUY].top(), *b.sides[SELL].top())

    def counters(self) -> dict[str, int]:
        return dict(self.count)

    def live_orders(self) -> int:
        return sum(1 for bank in self.table for s in bank for e in s
                   if e is not None and e.gen == self.gen)

    # -- internals --------------------------------------------------------------------------

    def _view(self, slot: int) -> tuple[int, int, int, int, bool, str]:
        return (*self.top(slot), self.uncertain(slot), self.books[slot].state)

    def _by_symbol(self, stock: int) -> int | None:
        return next((i for i, b in enumerate(self.books) if b.symbol == stock), None)

    def _by_locate(self, locate: int) -> int | None:
        return next((i for i, b in enumerate(self.books)
                     if b.symbol is not None and b.locate == locate), None)

    def _clear(self) -> None:
        self.count["clears"] += 1
        for i, b in enumerate(self.books):
            self.books[i] = _Instrument(symbol=b.symbol)
        self.touched.clear()
        self.where.clear()
        self.gen += 1
        if self.gen > _GEN_MAX:
            self.gen, self.poisoned = 1, True

    def _live(self, e: _Order | None) -> bool:
        return e is not None and e.gen == self.gen

    def _find(self, ref: int, slot: int | None) -> tuple[list[_Order | None], int] | None:
        """(its set, its way) for live order `ref` (of instrument `slot`, if given)."""
        found = self.where.get(ref)
        if found is None:
            return None
        row, way = found
        e = row[way]
        assert e is not None and e.ref == ref and e.gen == self.gen
        return found if slot is None or e.slot == slot else None

    def _add(self, slot: int, ref: int, side: int, px: int, shares: int) -> None:
        if shares == 0 or px == 0:
            self.count["rejected"] += 1
            return
        order = _Order(ref, slot, side, px, shares, self.gen)
        dup = self._find(ref, None)
        if dup is not None:
            row, way = dup
            old = row[way]
            assert old is not None
            self.count["duplicate_ref"] += 1
            self.books[old.slot].sticky = True
            row[way] = order                    # `where` already points here
        else:
            # 2-left: the candidate set with more free ways, bank 0 on a tie.
            rows = [bank[s] for bank, s in zip(self.table, order_sets(ref, self.p.sets),
                                               strict=True)]
            gen = self.gen
            frees = [sum(1 for e in r if e is None or e.gen != gen) for r in rows]
            row = rows[1] if frees[1] > frees[0] else rows[0]
            free = next((w for w, e in enumerate(row) if not self._live(e)), None)
            if free is None:
                self.count["table_full"] += 1
                self.books[slot].sticky = True
            else:
                row[free] = order
                self.where[ref] = (row, free)
        self._level_add(slot, side, px, shares)

    def _modify(self, slot: int, kind: str, msg: dict[str, Any]) -> None:
        found = self._find(msg["order_ref"], slot)
        if found is None:
            self.count["unknown_ref"] += 1
            return
        row, way = found
        e = row[way]
        assert e is not None
        if kind in "ECX":
            take = msg["shares"]
            if take > e.shares:
                self.count["clamped"] += 1
                take = e.shares
        else:                                   # D, and U's original order
            take = e.shares
        e.shares -= take
        leaves = e.shares == 0
        if leaves:
            row[way] = None
            del self.where[e.ref]
        self._level_remove(slot, e.side, e.px, take, leaves)
        if kind == "U":
            self._add(slot, msg["new_ref"], e.side, msg["price"], msg["shares"])

    def _level_add(self, slot: int, side: int, px: int, qty: int) -> None:
        book = self.books[slot]
        sd = book.sides[side]
        if sd.orphans and not better(side, px, sd.cut):
            self._orphans(slot, sd, +1)
            return
        for lv in sd.levels:
            if lv.px == px:
                if lv.qty + qty > _QTY_MAX or lv.count == _COUNT_MAX:
                    book.sticky = True
                lv.qty = (lv.qty + qty) & _QTY_MAX
                lv.count = (lv.count + 1) & _COUNT_MAX
                return
        k = sum(1 for lv in sd.levels if better(side, lv.px, px))
        if len(sd.levels) == self.p.levels:
            self.count["level_overflow"] += 1
            if k == self.p.levels:              # worse than every level kept: not stored
                sd.cut = px
                self._orphans(slot, sd, +1)
                return
            out = sd.levels.pop()
            sd.cut = out.px
            self._orphans(slot, sd, out.count)
        sd.levels.insert(k, _Level(px, qty, 1))

    def _level_remove(self, slot: int, side: int, px: int, qty: int, leaves: bool) -> None:
        sd = self.books[slot].sides[side]
        for i, lv in enumerate(sd.levels):
            if lv.px == px:
                lv.qty = (lv.qty - qty) & _QTY_MAX
                lv.count = (lv.count - leaves) & _COUNT_MAX
                if lv.count == 0:
                    del sd.levels[i]
                return
        if leaves:
            self._orphans(slot, sd, -1)

    def _orphans(self, slot: int, sd: _Side, n: int) -> None:
        total = sd.orphans + n
        if not 0 <= total <= _COUNT_MAX:
            # More orphans than the counter holds, or one leaving that was never counted
            # (only after an earlier overflow): the side cannot vouch for itself any more.
            self.books[slot].sticky = True
        sd.orphans = total & _COUNT_MAX




def symbol_code(symbol: str) -> int:
    """A symbol as the 8-byte, space-padded, big-endian integer ITCH carries."""
    if not (0 < len(symbol) <= 8 and symbol.isascii() and symbol.isprintable()
            and " " not in symbol):
        raise ValueError(f"a symbol must be 1 to 8 printable ASCII characters without spaces, "
                         f"not {symbol!r}")
    return int.from_bytes(symbol.encode("ascii").ljust(8, b" "), "big")


def quote_changes(updates: Iterable[TopUpdate]) -> Iterator[tuple[int, int, int, tuple[int, ...]]]:
    """(index, locate, slot, quote) each time an instrument's quote changes: the updates whose
    quote differs from the last one of their slot, and after a clear an empty quote for each
    instrument that had one."""
    empty = (0, 0, 0, 0)
    last: dict[int, tuple[int, tuple[int, ...]]] = {}     # slot: (locate, quote)
    for u in updates:
        if u.clear:
            for slot, (locate, q) in sorted(last.items()):
                if q != empty:
                    yield u.index, locate, slot, empty
            last.clear()
            continue
        q = u.quote()
        if last.get(u.slot, (0, empty))[1] != q:
            last[u.slot] = (u.locate, q)
            yield u.index, u.locate, u.slot, q


def bbo_rows(updates: Iterable[TopUpdate]) -> list[tuple[int, ...]]:
    """(msg, locate, bid_px, bid_qty, ask_px, ask_qty) for each quote change."""
    return [(index, locate, *q) for index, locate, _, q in quote_changes(updates)]


BBO_HEADER = "msg,locate,symbol,bid_px,bid_qty,ask_px,ask_qty"


def bbo_csv(updates: Iterable[TopUpdate], watch: Sequence[str | None]) -> str:
    """bbo.csv as DESIGN.md §4 has it; `watch` names the symbol of each slot."""
    lines = [BBO_HEADER]
    for index, locate, slot, q in quote_changes(updates):
        lines.append(",".join(map(str, (index, locate, watch[slot], *q))))
    return "\n".join(lines) + "\n"
