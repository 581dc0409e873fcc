"""A realistic ITCH 5.0 trading day for a handful of instruments, fast enough for a million
messages in a few seconds of CPython.

`sim.traffic` draws every field at random, which tests the decoders but never builds a book: its
executes and deletes almost never find the order they name. This generator keeps its own book of
every instrument and writes the messages a matching engine would publish about it, so an order
book fed with the stream holds a few thousand live orders all day and its top of book moves the
way a real one does. The stream is what `tests/host/test_book_itchbook.py` feeds both our book
model and the independent itch-book, row for row, and what `benchmarks/test_book_throughput.py`
times.

What is realistic about it:

- The day's frame: S 'O', the stock directory (R) with locates 1..N in order, H 'T' for every
  instrument, S 'S' and S 'Q', then continuous trading, and S 'M', S 'E' at the end.
  Timestamps run from 03:00 to after 16:00 in bursty exponential steps and never go back; the
  messages of one event (a sweep, a delete that makes room for an add) share a nanosecond, as
  on the real feed.
- Each instrument has its own price (from ~$0.10 to ~$900; unknown symbols draw one) and
  activity, and a mid price that random-walks in ticks: $0.01 (100 in ITCH units), or $0.0001
  for a stock under $1, which Reg NMS Rule 612 lets quote in sub-pennies.
- Adds (A ~45%, F ~5% with a market participant) rest on both sides at mid -/+ a geometric
  number of ticks. Sizes are mostly round lots, with odd and mixed lots and the odd block.
- The book is never locked or crossed, as a displayed book is not: an add that would reach the
  other side's best price is marketable and trades instead (an E against the first order there,
  or one E per order sweeping the whole level, which is how prices move), or rests a tick
  inside. The mid may lead the touch by a tick but cannot leave the book behind.
- Executions (E ~10%) take the first order in time at the best price, partly or fully, as price
  and time priority says; C (~1%) executes at a price near the order's, sometimes a half penny
  (a midpoint fill), printable or not. X (~5%) cancels part of an order and sometimes more than
  it has left (the book clamps). D (~25%) prefers orders far from the touch, as real books churn
  at their edges. U (~8%) moves an order to a new price and size under a new reference, same
  side, sometimes several times in a row. P (~1%) reports non-displayed trades (order reference
  0, side 'B', as Nasdaq sends them).
- Order references rise through the day by small random steps and are never reused; once in
  the stream they jump past 2**32, so nothing that holds them in 32 bits survives. Match
  numbers rise too.
- About 10% of the flow concerns the `unwatched` instruments, the same kinds of message, so a
  book that watches only some instruments must ignore the rest; E/C/X/D/U naming a reference
  that was never added or has already left the book come at `unknown_rate`; a little noise of
  types a book only counts (I, L, Y; plausible fields, right lengths); and a few trading halts
  (H 'H', sometimes H 'Q', then H 'T'), during which orders are still entered, cancelled and
  replaced but nothing executes.

What it keeps within bounds, and why: the card's book holds a fixed number of price levels per
instrument and side and a fixed number of live orders; beyond those it marks the book uncertain
and the comparison with an unbounded book stops meaning anything. So the generator never lets a
side hold more than `max_levels` distinct prices (an add that would open one more joins the
nearest existing level, or the side's farthest level is deleted first) nor the whole market more
than `max_live` live orders (a delete comes first). The stream does not know the card's order
table: 4,000 live orders are a quarter of its 16,384 entries, and its 2-left sets
(`hdl.formats.order_sets`) have not overflowed on these days. The `table` option bounds the
orders per set of a single set-associative table (`hdl.formats.order_hash`) instead, by
skipping to the next reference whose set has a free way (which Nasdaq's numbering, with its
gaps, makes invisible), for tests of such a table. It never writes what books
have to reject or guess about: no duplicate live reference, no zero shares or price in A/F/U,
no S 'O' or 'C' after the start (the card clears its books on those; itch-book does not).

Every message is packed with one precompiled `struct` per type, byte for byte what
`host.model.itch.encode` writes for the same fields (a test holds them together).
"""

import math
import random
import struct
from collections.abc import Callable, Sequence
from typing import TypeVar

from hdl.formats import ITCH_LENGTHS, BookParams
from host.model.itch import encode
from host.model.pack import MOLD_MAX_BLOCKS, mold_batches
from sim.traffic import Feed

__all__ = ["MARKET_SYMBOLS", "CARD_TABLE", "PACKERS", "market_stream", "market_frames",
           "preamble_length"]

T = TypeVar("T")

MARKET_SYMBOLS: tuple[str, ...] = ("AAPL", "MSFT", "NVDA", "QQQ", "SPY", "TSLA", "AMZN", "META")

# Start price in dollars and relative activity (share of the flow); the ETFs and the most traded
# names are the busiest. ZVZZT and ZXIET are Nasdaq's test symbols; ZXIET sits under $1.
_KNOWN: dict[str, tuple[float, int]] = {
    "AAPL": (190.0, 9), "MSFT": (420.0, 6), "NVDA": (120.0, 10), "QQQ": (480.0, 9),
    "SPY": (560.0, 10), "TSLA": (250.0, 9), "AMZN": (185.0, 6), "META": (500.0, 5),
    "ZVZZT": (10.0, 3), "ZXIET": (0.55, 2),
}
_ETFS = {"QQQ", "SPY"}
_TEST_SYMBOLS = {"ZVZZT", "ZXIET"}
_REG_SHO = (b"0", b"1", b"2")
_DIRECTIONS = (b"B", b"S", b"N", b"O")
_CROSSES = (b"O", b"C", b"H")
_MPIDS = (b"NSDQ", b"GSCO", b"MSCO", b"VIRT", b"CDRG", b"UBSS", b"JPMS", b"NITE")

# Share of the flow per kind (percent), as the module docstring describes. Once the market holds
# `max_live` orders every add needs a delete first and half the marketable adds trade instead,
# so a long stream ends up near A 37%, F 4%, D 35%, E 10%, U 7%, X 4%, C 1%, P 1%: adds and
# deletes close to a real Nasdaq day's (~45% and ~40%).
_MIX = (("A", 45.0), ("F", 5.0), ("E", 10.0), ("C", 1.0), ("X", 5.0), ("D", 25.0), ("U", 8.0),
        ("P", 1.0))
_NOISE_RATE = 0.004           # I, L, Y: counted by a book, never applied
_HALT_RATE = 2e-5             # halts per flow message: ~20 in a million messages
_WALK_RATE = 0.06             # per message of an instrument: chance its mid moves
_UNWATCHED_SHARE = 0.10
_SWEEP = 0.4                  # a marketable add takes the whole best level (if not deep)
_SWEEP_MAX = 12
_CHAIN = 0.35                 # a U names the order the previous U created
_OVERCANCEL = 0.12            # an X cancels more than the order has left

_DAY_OPEN = 3 * 3600 * 10**9          # S 'O' at 03:00
_SYSTEM_START = 4 * 3600 * 10**9      # S 'S' at 04:00
_MARKET_OPEN = 34_200 * 10**9         # S 'Q' at 09:30
_MARKET_CLOSE = 57_600 * 10**9        # S 'M' at 16:00
_SYSTEM_END = 72_000 * 10**9          # S 'E' at 20:00


def _packer(fmt: str, kind: str) -> struct.Struct:
    # type (c), locate (H), tracking (H), timestamp as u16 + u32 (struct has no 6-byte int)
    s = struct.Struct(">cHHHI" + fmt)
    assert s.size == ITCH_LENGTHS[kind], kind
    return s


# One packer per type the flow writes. Text fields are `s` (space-padded bytes) or `c`, which is
# exactly what `encode` makes of a str: left-aligned ASCII, space padded, big-endian.
PACKERS: dict[str, struct.Struct] = {
    "S": _packer("c", "S"),
    "A": _packer("QcI8sI", "A"),                # ref, side, shares, stock, price
    "F": _packer("QcI8sI4s", "F"),              # ... attribution
    "E": _packer("QIQ", "E"),                   # ref, shares, match
    "C": _packer("QIQcI", "C"),                 # ref, shares, match, printable, price
    "X": _packer("QI", "X"),                    # ref, shares
    "D": _packer("Q", "D"),                     # ref
    "U": _packer("QQII", "U"),                  # ref, new ref, shares, price
    "P": _packer("QcI8sIQ", "P"),               # ref, side, shares, stock, price, match
    "Y": _packer("8sc", "Y"),                   # stock, Reg SHO action
    "L": _packer("4s8sccc", "L"),               # MPID, stock, primary, mode, state
    "I": _packer("QQc8sIIIcc", "I"),            # paired, imbalance, direction, stock, far,
}                                               # near, reference price, cross type, variation


# One bank of the card's order table (sets, ways), for the `table` option.
CARD_TABLE = (BookParams().sets, BookParams().ways)


def preamble_length(n_symbols: int) -> int:
    """Messages before the flow: S 'O', an R and an H per instrument, S 'S', S 'Q'."""
    return 3 + 2 * n_symbols


class _Inst:
    """One instrument of the generator: its quote state and its own book, per side a dict
    price -> references in time priority (sides[0] asks, sides[1] bids)."""
    __slots__ = ("symbol", "locate", "stock", "tracking", "tick", "mid", "lo", "hi", "lot",
                 "sides", "halted")

    def __init__(self, symbol: str, locate: int, dollars: float, rng: random.Random) -> None:
        self.symbol, self.locate = symbol, locate
        self.stock = symbol.encode("ascii").ljust(8)
        self.tracking = rng.randrange(1, 16)
        self.tick = 1 if dollars < 1 else 100
        self.mid = max(50 * self.tick, round(dollars * 10_000 / self.tick) * self.tick)
        # The mid wanders within a band around the open, as a day's range does.
        self.lo, self.hi = max(20 * self.tick, self.mid * 4 // 5), self.mid * 5 // 4
        self.lot = 10 if dollars < 1 else 1     # penny stocks trade in bigger sizes
        self.sides: tuple[dict[int, list[int]], dict[int, list[int]]] = ({}, {})
        self.halted = False


def _validate(symbols: Sequence[str], unwatched: Sequence[str], n_messages: int,
              max_levels: int, max_live: int, unknown_rate: float,
              table: tuple[int, int] | None) -> None:
    names = [*symbols, *unwatched]
    for s in names:
        if not (isinstance(s, str) and 0 < len(s) <= 8 and s.isascii() and s.isprintable()
                and " " not in s):
            raise ValueError(f"a symbol must be 1 to 8 printable ASCII characters without "
                             f"spaces, not {s!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"symbols and unwatched must not repeat a name: {names}")
    if not symbols:
        raise ValueError("symbols must name at least one instrument")
    need = preamble_length(len(names))
    if n_messages < need:
        raise ValueError(f"n_messages must be at least {need} (the opening messages for "
                         f"{len(names)} instruments), not {n_messages}")
    if max_levels < 2:
        raise ValueError(f"max_levels must be at least 2, not {max_levels}")
    if max_live < 2 * max_levels:
        raise ValueError(f"max_live must be at least 2 * max_levels = {2 * max_levels}, "
                         f"not {max_live}")
    if not 0 <= unknown_rate <= 0.2:
        raise ValueError(f"unknown_rate must be between 0 and 0.2, not {unknown_rate}")
    if table is not None:
        sets, ways = table
        if sets < 2 or sets & (sets - 1) or ways < 1 or sets * ways < 2 * max_live:
            raise ValueError(f"table must be (sets, ways) with sets a power of two and "
                             f"sets * ways >= 2 * max_live = {2 * max_live}, not {table}")


def _folder(sets: int) -> Callable[[int], int]:
    """`hdl.formats.order_hash(ref, sets)` as a closure: the XOR of the log2(sets)-bit chunks of
    a 64-bit reference, folded with shifts rather than a loop (a test holds the two together)."""
    bits = sets.bit_length() - 1
    mask = sets - 1
    shifts = tuple(range(bits, 64, bits))

    def fold(ref: int) -> int:
        h = ref
        for s in shifts:
            h ^= ref >> s
        return h & mask

    return fold


def _halt_plan(rng: random.Random, first: int, n_flow: int,
               n_insts: int) -> list[tuple[int, int, str]]:
    """When trading halts: (message count to act at, instrument, new state), last event first.
    About one halt per 50,000 flow messages (at least one in a stream of 10,000 or more), each
    for 1 to 10% of the flow, sometimes with a quotation-only period before trading resumes;
    the halts of one instrument never overlap."""
    n = max(round(n_flow * _HALT_RATE), 1 if n_flow >= 10_000 else 0)
    free = [0] * n_insts                 # message count from which an instrument may halt again
    plan: list[tuple[int, int, str]] = []
    # Starts in the first 85% of the flow, so that every halt ends before the close.
    for start in sorted(first + rng.randrange(n_flow * 85 // 100) for _ in range(n)):
        j = rng.randrange(n_insts)
        if free[j] > start:
            continue
        at = start + rng.randrange(n_flow // 100 + 1, n_flow // 10 + 2)
        plan += [(start, j, "H")]
        if rng.random() < 0.5:
            plan += [(at, j, "Q")]
            at += rng.randrange(n_flow // 200 + 1, n_flow // 50 + 2)
        plan += [(at, j, "T")]
        free[j] = at + 1
    return sorted(plan, reverse=True)


def _table(n: int, draw: Callable[[], T]) -> list[T]:
    return [draw() for _ in range(n)]


def market_stream(seed: int, n_messages: int, symbols: Sequence[str] = MARKET_SYMBOLS, *,
                  unwatched: Sequence[str] = ("ZVZZT", "ZXIET"), max_levels: int = 12,
                  max_live: int = 4000, unknown_rate: float = 0.005,
                  table: tuple[int, int] | None = None) -> list[bytes]:
    """Exactly `n_messages` ITCH 5.0 messages (no length prefixes) of one trading day for
    `symbols` and `unwatched` (locates 1..N in that order), reproducible from `seed`.

    `symbols` get ~90% of the flow and `unwatched` ~10% (the names only say which ones a test
    is expected to watch). At most `max_levels` prices per instrument and side and `max_live`
    live orders in all; `unknown_rate` of the flow names references no book holds. With
    `table` = (sets, ways), e.g. `CARD_TABLE`, no more than `ways` live orders share a set of
    the card's set-associative order table (`hdl.formats.order_hash`), by skipping references
    as Nasdaq's numbering skips them anyway. By default there is no such bound: the stream does
    not know the card, and `max_live` orders (25% of the card's table) fit without it.
    """
    _validate(symbols, unwatched, n_messages, max_levels, max_live, unknown_rate, table)
    rng = random.Random(seed)
    rnd, bits, randrange = rng.random, rng.getrandbits, rng.randrange

    names = [*symbols, *unwatched]
    insts: list[_Inst] = []
    weights: list[float] = []
    n_watched = len(symbols)
    for i, name in enumerate(names):
        dollars, activity = _KNOWN.get(name, (0.0, 0))
        if not activity:
            # An unknown name: one in four trades under $1, the rest log-uniform $5..$900.
            dollars = (rng.uniform(0.10, 0.99) if rnd() < 0.25
                       else math.exp(rng.uniform(math.log(5), math.log(900))))
            activity = rng.randint(2, 8)
        insts.append(_Inst(name, i + 1, dollars, rng))
        weights.append(activity)
    # Watched and unwatched instruments share the flow 90:10 whatever their number.
    w_sum = sum(weights[:n_watched])
    u_sum = sum(weights[n_watched:])
    share = 1.0 - _UNWATCHED_SHARE if unwatched else 1.0
    probs = [w / w_sum * share for w in weights[:n_watched]]
    probs += [w / u_sum * _UNWATCHED_SHARE for w in weights[n_watched:]]
    # Lookup tables instead of rng.choices per message: drawing an index is most of the cost.
    inst_tab = _table(4096, lambda: rng.choices(insts, probs)[0])
    kinds = [k for k, _ in _MIX]
    unknown = unknown_rate * 100
    noise = _NOISE_RATE * 100
    scale = (100.0 - unknown - noise) / sum(w for _, w in _MIX)
    kind_tab = _table(8192, lambda: rng.choices(
        [*kinds, "?", "~"], [*(w * scale for _, w in _MIX), unknown, noise])[0])

    def _ticks() -> int:
        # Distance from the mid in ticks: mostly 1..5, now and then at the mid or through it.
        r = rnd()
        if r < 0.03:
            return 0
        if r < 0.04:
            return -1
        return 1 + min(int(math.log(1.0 - rnd()) / math.log(0.62)), 40)

    def _size() -> int:
        r = rnd()
        if r < 0.55:
            return 100
        if r < 0.78:
            return 100 * (2 + min(int(math.log(1.0 - rnd()) / math.log(0.6)), 30))
        if r < 0.88:
            return randrange(1, 100)                      # odd lot
        if r < 0.95:
            return randrange(101, 1000)                   # mixed lot
        return 100 * randrange(10, 101)                   # block

    tick_tab = _table(4096, _ticks)
    size_tab = _table(4096, _size)

    out: list[bytes] = []
    append = out.append
    ts = _DAY_OPEN + randrange(10**9)
    s_pack = PACKERS["S"].pack

    def system(code: bytes) -> None:
        append(s_pack(b"S", 0, 0, ts >> 32, ts & 0xFFFFFFFF, code))

    # -- the opening ------------------------------------------------------------------------
    system(b"O")
    for inst in insts:
        ts += randrange(1_000, 50_000)
        etf = inst.symbol in _ETFS
        append(encode({
            "type": "R", "locate": inst.locate, "tracking": inst.tracking, "timestamp": ts,
            "stock": inst.symbol, "market_category": "G" if etf else "Q",
            "financial_status": "N", "round_lot_size": 100, "round_lots_only": "N",
            "issue_classification": "Q" if etf else "C", "issue_subtype": "I " if etf else "Z ",
            "authenticity": "T" if inst.symbol in _TEST_SYMBOLS else "P",
            "short_sale_threshold": "N", "ipo_flag": " ", "luld_tier": "1", "etp_flag":
            "Y" if etf else "N", "etp_leverage": 1 if etf else 0, "inverse": "N"}))

    def trading_action(inst: _Inst, state: str, reason: str) -> None:
        append(encode({"type": "H", "locate": inst.locate, "tracking": inst.tracking,
                       "timestamp": ts, "stock": inst.symbol, "trading_state": state,
                       "reserved": " ", "reason": reason}))

    for inst in insts:
        ts += randrange(1_000, 50_000)
        trading_action(inst, "T", "")
    ts = _SYSTEM_START + randrange(10**6)
    system(b"S")
    ts = _MARKET_OPEN + randrange(10**6)
    system(b"Q")

    # -- continuous trading -----------------------------------------------------------------
    end = n_messages - 2 if n_messages - len(out) >= 2 else n_messages    # room for M, E
    n_flow = max(end - len(out), 1)
    mean_step = (_MARKET_CLOSE - _MARKET_OPEN) * 0.98 / n_flow
    expovariate = rng.expovariate
    rate = 1.0 / mean_step

    # ref -> [instrument index, side (1 buy), price, shares, order-table set if `table`]
    orders: dict[int, list[int]] = {}
    set_live: list[int] | None = None           # live orders per order-table set
    ways = 0
    if table is not None:
        sets, ways = table
        set_live = [0] * sets
        set_of = _folder(sets)
    removed: list[tuple[int, int]] = []         # (ref, instrument index) of recent departures
    removed_at = 0
    next_ref = randrange(1_000, 100_000)
    match = randrange(1_000, 100_000)
    jump_at = len(out) + n_flow // 4 + randrange(n_flow // 4 + 1)
    last_u = 0
    halts = _halt_plan(rng, len(out), n_flow, len(insts))

    pack_a, pack_f = PACKERS["A"].pack, PACKERS["F"].pack
    pack_e, pack_c, pack_x = PACKERS["E"].pack, PACKERS["C"].pack, PACKERS["X"].pack
    pack_d, pack_u, pack_p = PACKERS["D"].pack, PACKERS["U"].pack, PACKERS["P"].pack
    pack_y, pack_l, pack_i = PACKERS["Y"].pack, PACKERS["L"].pack, PACKERS["I"].pack
    SIDE = (b"S", b"B")

    def new_ref(resting: bool = True) -> int:
        """The next order reference; for an order that will rest, one whose order-table set
        has a free way (Nasdaq's numbering has gaps anyway, so a skip is not visible)."""
        nonlocal next_ref
        next_ref += 1 + bits(2)
        if len(out) >= jump_at and next_ref < 1 << 32:
            # Once a day the references leap past 2**32: 32-bit storage must not survive.
            next_ref += (1 << 32) + randrange(1 << 20)
        if resting and set_live is not None:
            while set_live[set_of(next_ref)] >= ways:
                next_ref += 1
        return next_ref

    def new_match() -> int:
        nonlocal match
        match += 1 + bits(3)
        return match

    def remove(ref: int) -> None:
        nonlocal removed_at
        o = orders.pop(ref)
        if set_live is not None:
            set_live[o[4]] -= 1
        side = insts[o[0]].sides[o[1]]
        q = side[o[2]]
        q.remove(ref)
        if not q:
            del side[o[2]]
        # A ring of recent departures to draw unknown references from.
        if len(removed) < 512:
            removed.append((ref, o[0]))
        else:
            removed[removed_at] = (ref, o[0])
            removed_at = (removed_at + 1) & 511

    def rest(ii: int, buy: int, price: int, shares: int, ref: int) -> None:
        if set_live is None:
            orders[ref] = [ii, buy, price, shares]
        else:
            h = set_of(ref)
            set_live[h] += 1
            orders[ref] = [ii, buy, price, shares, h]
        side = insts[ii].sides[buy]
        q = side.get(price)
        if q is None:
            side[price] = [ref]
        else:
            q.append(ref)

    def fit(side: dict[int, list[int]], price: int) -> int:
        """`price`, or the nearest price the side already has if a new level would not fit."""
        if price in side or len(side) < max_levels:
            return price
        return min(side, key=lambda p: abs(p - price))

    def quote_price(inst: _Inst, buy: int) -> int:
        k = tick_tab[bits(12)] * inst.tick
        price = inst.mid - k if buy else inst.mid + k
        return max(price, inst.tick)

    def emit_delete(ii: int, ref: int) -> None:
        inst = insts[ii]
        append(pack_d(b"D", inst.locate, inst.tracking, ts >> 32, ts & 0xFFFFFFFF, ref))
        remove(ref)

    def far_order(ii: int) -> int | None:
        """An order of instrument `ii`, drawn with a preference for prices far from the touch,
        where real books do most of their cancelling."""
        sides = insts[ii].sides
        buy = bits(1)
        side = sides[buy] or sides[1 - buy]
        if not side:
            return None
        buy = 1 if side is sides[1] else 0
        prices = sorted(side, reverse=not buy)       # farthest first (lowest bid, highest ask)
        j = int(len(prices) * (1.0 - math.sqrt(rnd())))
        q = side[prices[j]]
        return q[int(rnd() * len(q))]

    def any_order(ii: int) -> int | None:
        sides = insts[ii].sides
        side = sides[bits(1)] or sides[0] or sides[1]
        if not side:
            return None
        prices = list(side)
        q = side[prices[int(rnd() * len(prices))]]
        return q[int(rnd() * len(q))]

    def touch_order(ii: int, buy: int) -> int | None:
        """The order first in time at the best price of side `buy` (or of the other side if
        that one is empty): the next one to execute."""
        sides = insts[ii].sides
        side = sides[buy] or sides[1 - buy]
        if not side:
            return None
        best = max(side) if side is sides[1] else min(side)
        return side[best][0]

    def uncross(inst: _Inst, buy: int, price: int) -> int:
        """`price`, moved back a tick inside the other side's best price if it would lock or
        cross it: a displayed order that reaches the other side trades instead of resting."""
        other = inst.sides[1 - buy]
        if other:
            if buy:
                best = min(other)
                if price >= best:
                    return max(best - inst.tick, inst.tick)
            else:
                best = max(other)
                if price <= best:
                    return best + inst.tick
        return price

    def make_room(ii: int) -> bool:
        """Delete an order so one more fits under `max_live`: preferably one of `ii`'s, else
        any instrument's. False if the stream has no room left for the delete."""
        if len(out) + 2 > end:
            return False
        ref = far_order(ii)
        if ref is None:
            ref = next(iter(orders))                  # the oldest live order of the market
        emit_delete(orders[ref][0], ref)
        return True

    def add(ii: int, kind: str) -> None:
        inst = insts[ii]
        if len(orders) >= max_live and not make_room(ii):
            return
        buy = bits(1)
        side = inst.sides[buy]
        price = quote_price(inst, buy)
        fair = uncross(inst, buy, price)
        if fair != price:
            if not inst.halted and rnd() < 0.5:
                # A marketable order trades with the first order on the other side, and now and
                # then sweeps the whole best level, which moves the price.
                other = inst.sides[1 - buy]
                queue = other[min(other) if buy else max(other)]
                if len(queue) <= _SWEEP_MAX and rnd() < _SWEEP and len(out) + len(queue) <= end:
                    for ref in list(queue):
                        o = orders[ref]
                        append(pack_e(b"E", inst.locate, inst.tracking, ts >> 32,
                                      ts & 0xFFFFFFFF, ref, o[3], new_match()))
                        remove(ref)
                else:
                    execute(ii, "E", 1 - buy)
                return
            price = fair
        if price not in side and len(side) >= max_levels:
            farthest = min(side) if buy else max(side)
            inside = price > farthest if buy else price < farthest
            if inside and rnd() < 0.3 and len(out) + len(side[farthest]) + 1 <= end:
                # The side's worst level goes away first: a burst of deletes, as when a
                # market maker pulls a stale quote.
                for ref in list(side[farthest]):
                    emit_delete(ii, ref)
            else:
                price = fit(side, price)
        shares = size_tab[bits(12)] * inst.lot
        ref = new_ref()
        if kind == "A":
            append(pack_a(b"A", inst.locate, inst.tracking, ts >> 32, ts & 0xFFFFFFFF, ref,
                          SIDE[buy], shares, inst.stock, price))
        else:
            append(pack_f(b"F", inst.locate, inst.tracking, ts >> 32, ts & 0xFFFFFFFF, ref,
                          SIDE[buy], shares, inst.stock, price, _MPIDS[bits(3)]))
        rest(ii, buy, price, shares, ref)

    def execute(ii: int, kind: str, buy: int) -> bool:
        ref = touch_order(ii, buy)
        if ref is None:
            return False
        inst = insts[ii]
        o = orders[ref]
        left = o[3]
        if left == 1 or rnd() < 0.5:
            shares = left
        elif left > 100:
            shares = 100 * (1 + randrange((left - 1) // 100)) if left > 200 else 100
            shares = min(shares, left - 1)
        else:
            shares = randrange(1, left)
        if kind == "E":
            append(pack_e(b"E", inst.locate, inst.tracking, ts >> 32, ts & 0xFFFFFFFF, ref,
                          shares, new_match()))
        else:
            r = rnd()
            off = 0 if r < 0.5 else (50 if inst.tick == 100 and r < 0.8 else inst.tick)
            price = max(o[2] + (off if bits(1) else -off), 1)
            append(pack_c(b"C", inst.locate, inst.tracking, ts >> 32, ts & 0xFFFFFFFF, ref,
                          shares, new_match(), b"Y" if rnd() < 0.85 else b"N", price))
        if shares == left:
            remove(ref)
        else:
            o[3] = left - shares
        return True

    def cancel(ii: int) -> bool:
        ref = any_order(ii)
        if ref is None:
            return False
        inst = insts[ii]
        o = orders[ref]
        left = o[3]
        if rnd() < _OVERCANCEL:
            shares = left + randrange(1, 1000)        # more than remains: the book clamps
        elif left == 1:
            shares = 1
        elif left > 100 and left % 100 == 0:
            shares = 100 * randrange(1, left // 100)
        else:
            shares = randrange(1, left)
        append(pack_x(b"X", inst.locate, inst.tracking, ts >> 32, ts & 0xFFFFFFFF, ref,
                      shares))
        if shares >= left:
            remove(ref)
        else:
            o[3] = left - shares
        return True

    def delete(ii: int) -> bool:
        ref = far_order(ii)
        if ref is None:
            return False
        emit_delete(ii, ref)
        return True

    def replace(ii: int) -> bool:
        nonlocal last_u
        ref = last_u if last_u in orders and rnd() < _CHAIN else any_order(ii)
        if ref is None:
            return False
        o = orders[ref]
        ii = o[0]
        inst = insts[ii]
        buy = o[1]
        if rnd() < 0.5:
            # Step the order a few ticks either way, as a pegging algorithm does.
            k = tick_tab[bits(12)] * inst.tick
            price = max(o[2] + (k if bits(1) else -k), inst.tick)
        else:
            price = quote_price(inst, buy)
        remove(ref)
        price = fit(inst.sides[buy], uncross(inst, buy, price))
        shares = size_tab[bits(12)] * inst.lot
        new = new_ref()
        append(pack_u(b"U", inst.locate, inst.tracking, ts >> 32, ts & 0xFFFFFFFF, ref, new,
                      shares, price))
        rest(ii, buy, price, shares, new)
        last_u = new
        return True

    def trade(ii: int) -> None:
        inst = insts[ii]
        k = tick_tab[bits(12)] * inst.tick
        price = max(inst.mid + (k if bits(1) else -k), inst.tick)
        append(pack_p(b"P", inst.locate, inst.tracking, ts >> 32, ts & 0xFFFFFFFF, 0, b"B",
                      size_tab[bits(12)] * inst.lot, inst.stock, price, new_match()))

    def unknown_ref(ii: int) -> None:
        """E/C/X/D/U naming a reference no book holds: never added, or already gone."""
        inst = insts[ii]
        if removed and bits(1):
            ref, j = removed[int(rnd() * len(removed))]
            inst = insts[j]                           # its own instrument, as a late message
        else:
            ref = new_ref()                           # skipped: never added
        hi, lo = ts >> 32, ts & 0xFFFFFFFF
        kind = "ECXDU"[int(rnd() * 5)]
        if kind == "E":
            append(pack_e(b"E", inst.locate, inst.tracking, hi, lo, ref, 100, new_match()))
        elif kind == "C":
            append(pack_c(b"C", inst.locate, inst.tracking, hi, lo, ref, 100, new_match(), b"Y",
                          inst.mid))
        elif kind == "X":
            append(pack_x(b"X", inst.locate, inst.tracking, hi, lo, ref, 100))
        elif kind == "D":
            append(pack_d(b"D", inst.locate, inst.tracking, hi, lo, ref))
        else:
            # The new reference is burnt: no later message uses it.
            append(pack_u(b"U", inst.locate, inst.tracking, hi, lo, ref, new_ref(),
                          size_tab[bits(12)] * inst.lot, inst.mid))

    def noise(ii: int) -> None:
        inst = insts[ii]
        hi, lo = ts >> 32, ts & 0xFFFFFFFF
        r = rnd()
        if r < 0.4:
            append(pack_y(b"Y", inst.locate, inst.tracking, hi, lo, inst.stock,
                          _REG_SHO[int(rnd() * 3)]))
        elif r < 0.7:
            append(pack_l(b"L", inst.locate, inst.tracking, hi, lo, _MPIDS[bits(3)],
                          inst.stock, b"Y" if bits(1) else b"N", b"N", b"A"))
        else:
            near = max(inst.mid + (bits(4) - 8) * inst.tick, inst.tick)
            append(pack_i(b"I", inst.locate, inst.tracking, hi, lo, 100 * bits(12),
                          100 * bits(10), _DIRECTIONS[bits(2)], inst.stock, 0, near, near,
                          _CROSSES[int(rnd() * 3)], b" "))

    while len(out) < end:
        ts += 1 + int(expovariate(rate))
        if halts and len(out) >= halts[-1][0]:
            _, j, state = halts.pop()
            inst = insts[j]
            trading_action(inst, state, "" if state == "T" else "LUDP" if j & 1 else "T1")
            inst.halted = state != "T"
            continue
        inst = inst_tab[bits(12)]
        ii = inst.locate - 1
        if rnd() < _WALK_RATE:
            m = inst.mid + (inst.tick if bits(1) else -inst.tick)
            asks, bids = inst.sides
            # The mid may lead the book by a tick, not leave it behind: prices move when
            # orders at the touch trade or leave, as in a real book.
            if inst.lo <= m <= inst.hi and not (
                    bids and m < max(bids) - inst.tick or asks and m > min(asks) + inst.tick):
                inst.mid = m
        kind = kind_tab[bits(13)]
        if inst.halted and kind in "ECP":
            kind = "D"                                # nothing executes during a halt
        if kind == "A" or kind == "F":
            add(ii, kind)
        elif kind == "D":
            delete(ii) or add(ii, "A")
        elif kind == "E" or kind == "C":
            execute(ii, kind, bits(1)) or add(ii, "A")
        elif kind == "U":
            replace(ii) or add(ii, "A")
        elif kind == "X":
            cancel(ii) or add(ii, "A")
        elif kind == "P":
            trade(ii)
        elif kind == "?":
            unknown_ref(ii)
        else:
            noise(ii)

    # -- the close --------------------------------------------------------------------------
    if len(out) < n_messages:
        ts = max(ts + 1, _MARKET_CLOSE)
        system(b"M")
    if len(out) < n_messages:
        ts = max(ts + 1, _SYSTEM_END)
        system(b"E")
    assert len(out) == n_messages, (len(out), n_messages)
    return out


def market_frames(messages: Sequence[bytes], feed: Feed | None = None,
                  max_messages: int = 24) -> list[bytes]:
    """`messages` packed in order into MoldUDP64/UDP/IPv4/Ethernet frames (no FCS) of `feed`
    (a new `Feed` if None): at most `max_messages` per packet and no more than fits one
    1500-byte IP packet, sequence numbers consecutive from `feed.seq` on, no gaps."""
    if max_messages < 1:
        raise ValueError(f"max_messages must be at least 1, not {max_messages}")
    feed = feed or Feed()
    return [feed.frame(batch) for batch in mold_batches(messages, MOLD_MAX_BLOCKS, max_messages)]
