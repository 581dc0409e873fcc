"""sim.market: the realistic day holds the properties the book tests rely on.

The bounds are checked by replaying the stream through a small book written here, independent of
the generator's own bookkeeping: if the generator's book and the stream ever disagreed, the
replay would see levels, live orders or crossed quotes the generator thinks it prevented.
"""

import os
import random
from collections import Counter
from dataclasses import dataclass, field
from functools import cache

import pytest

from hdl.formats import ITCH_BODIES, ITCH_LENGTHS, order_hash
from host.model.itch import decode, encode, text
from host.model.pack import MOLD_MAX_BLOCKS, mold_unpack, payload_of
from sim.market import (
    CARD_TABLE,
    MARKET_SYMBOLS,
    PACKERS,
    _folder,
    market_frames,
    market_stream,
    preamble_length,
)
from sim.traffic import Feed

# itchcpp (itchfeed's optional C++ backend) would replace the decoder we check against.
os.environ["ITCH_NO_CPP"] = "1"
from itch.messages import messages as itchfeed_classes  # noqa: E402

WATCHED = (*MARKET_SYMBOLS, "ZXIET")      # one sub-dollar instrument among the watched
UNWATCHED = ("ZVZZT", "ZQZZT")
N = 200_000


@cache
def day(seed: int = 11, n: int = N) -> tuple[bytes, ...]:
    return tuple(market_stream(seed, n, WATCHED, unwatched=UNWATCHED))


@dataclass
class Replay:
    """What a plain, unbounded book sees in a stream, and every bound it checks on the way."""
    kinds: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)      # kind -> unknown-ref messages
    unknown_removed: int = 0          # unknown refs that were once live
    by_locate: Counter[int] = field(default_factory=Counter)
    max_levels: int = 0
    max_live: int = 0
    max_per_set: int = 0
    clamped: int = 0
    u_chains: int = 0
    sub_penny: int = 0
    half_penny_c: int = 0
    printable: Counter[int] = field(default_factory=Counter)
    price_moves: int = 0
    halts: list[tuple[int, str]] = field(default_factory=list)
    max_ref: int = 0


@cache
def day_replay() -> Replay:
    return replay(day())


def replay(messages: tuple[bytes, ...], table: tuple[int, int] = CARD_TABLE) -> Replay:
    r = Replay()
    sets = table[0]
    orders: dict[int, list[int]] = {}     # ref -> [locate, side, price, shares]
    gone: set[int] = set()
    levels: dict[tuple[int, int], Counter[int]] = {}
    per_set: Counter[int] = Counter()
    symbol_of: dict[int, int] = {}
    last_ref = last_match = last_ts = 0
    last_new = -1
    top: dict[int, tuple[int, int]] = {}

    def rest(ref: int, locate: int, side: int, price: int, shares: int) -> None:
        nonlocal last_ref
        assert ref not in orders and ref not in gone, f"reference {ref} used twice"
        assert ref > last_ref, "new order references must increase"
        assert shares > 0 and price > 0
        last_ref = ref
        r.max_ref = max(r.max_ref, ref)
        orders[ref] = [locate, side, price, shares]
        lv = levels.setdefault((locate, side), Counter())
        lv[price] += 1
        per_set[order_hash(ref, sets)] += 1
        r.max_levels = max(r.max_levels, len(lv))
        r.max_live = max(r.max_live, len(orders))
        r.max_per_set = max(r.max_per_set, per_set[order_hash(ref, sets)])

    def leave(ref: int) -> None:
        locate, side, price, _ = orders.pop(ref)
        gone.add(ref)
        per_set[order_hash(ref, sets)] -= 1
        lv = levels[(locate, side)]
        lv[price] -= 1
        if not lv[price]:
            del lv[price]

    for m in messages:
        kind = chr(m[0])
        assert len(m) == ITCH_LENGTHS[kind]
        r.kinds[kind] += 1
        locate = int.from_bytes(m[1:3], "big")
        ts = int.from_bytes(m[5:11], "big")
        assert ts >= last_ts, "timestamps must not go back"
        last_ts = ts
        r.by_locate[locate] += 1
        if kind not in ITCH_BODIES:
            assert locate in symbol_of
            continue
        d = decode(m)
        if kind == "R":
            symbol_of[locate] = d["stock"]
        elif kind == "H":
            assert symbol_of[locate] == d["stock"]
            r.halts.append((locate, chr(d["trading_state"])))
        elif kind == "S":
            assert chr(d["event_code"]) not in "OC" or r.kinds["S"] == 1, \
                "no S 'O' or 'C' after the start: the card clears its books on them"
        elif kind in "AF":
            assert symbol_of[locate] == d["stock"]
            assert chr(d["side"]) in "BS"
            if locate == WATCHED.index("ZXIET") + 1 and d["price"] % 100:
                r.sub_penny += 1
            rest(d["order_ref"], locate, d["side"], d["price"], d["shares"])
        elif kind == "P":
            assert d["order_ref"] == 0 and chr(d["side"]) == "B" and d["shares"] > 0
        if kind in "ECP":
            assert d["match"] > last_match, "match numbers must increase"
            last_match = d["match"]
        if kind in "ECXDU":
            ref = d["order_ref"]
            if ref not in orders:
                r.unknown[kind] += 1
                r.unknown_removed += ref in gone
                continue
            o = orders[ref]
            assert o[0] == locate, "a message on an order must carry the order's locate"
            if kind in "ECX":
                assert d["shares"] > 0
                r.clamped += d["shares"] > o[3]
                o[3] -= min(d["shares"], o[3])
                if kind == "C":
                    r.printable[d["printable"]] += 1
                    r.half_penny_c += d["price"] % 100 == 50
                if not o[3]:
                    leave(ref)
            else:
                leave(ref)
            if kind == "U":
                r.u_chains += ref == last_new
                last_new = d["new_ref"]
                rest(d["new_ref"], locate, o[1], d["price"], d["shares"])
        # A realistic book is never locked or crossed: a marketable order trades instead.
        if kind in "AFECXDU" and locate:
            bids = levels.get((locate, ord("B")))
            asks = levels.get((locate, ord("S")))
            if bids and asks:
                assert max(bids) < min(asks), f"locked or crossed book at locate {locate}"
            q = (max(bids) if bids else 0, min(asks) if asks else 0)
            r.price_moves += top.get(locate) != q
            top[locate] = q
    return r


def test_deterministic_per_seed() -> None:
    assert market_stream(3, 5000) == market_stream(3, 5000)
    assert market_stream(3, 5000) != market_stream(4, 5000)


@pytest.mark.parametrize("n", [preamble_length(10), preamble_length(10) + 1, 2000])
def test_exactly_n_messages(n: int) -> None:
    assert len(market_stream(1, n)) == n


def test_opening_and_close() -> None:
    msgs = day()
    names = [*WATCHED, *UNWATCHED]
    head = [decode(m) for m in msgs[:preamble_length(len(names))]]
    assert (head[0]["type"], chr(head[0]["event_code"])) == ("S", "O")
    rs, hs = head[1:1 + len(names)], head[1 + len(names):1 + 2 * len(names)]
    assert [(d["type"], d["locate"], text(d["stock"])) for d in rs] == \
        [("R", i + 1, s) for i, s in enumerate(names)]
    assert [(d["type"], d["locate"], chr(d["trading_state"])) for d in hs] == \
        [("H", i + 1, "T") for i in range(len(names))]
    assert [chr(d["event_code"]) for d in head[-2:]] == ["S", "Q"]
    assert [chr(decode(m)["event_code"]) for m in msgs[-2:]] == ["M", "E"]


def test_bounds_hold() -> None:
    r = day_replay()
    assert r.max_levels <= 12
    assert r.max_live == 4000


def test_more_instruments() -> None:
    # Names the generator does not know draw their own price (some under $1) and activity.
    symbols = (*MARKET_SYMBOLS, "ABCD", "EFGH", "IJKL", "MNOP", "QRST", "UVWX", "YZAB", "CDEF")
    msgs = tuple(market_stream(8, 40_000, symbols, unwatched=()))
    r = replay(msgs)
    assert set(r.by_locate) == {0, *range(1, len(symbols) + 1)}
    assert min(r.by_locate[i] for i in range(1, len(symbols) + 1)) > 500
    assert r.max_levels <= 12 and r.max_live <= 4000


def test_tighter_bounds_hold() -> None:
    table = (256, 4)
    r = replay(tuple(market_stream(5, 60_000, max_levels=4, max_live=300, table=table)), table)
    assert (r.max_levels, r.max_live) == (4, 300)
    assert r.max_per_set <= 4


def test_mix_of_kinds() -> None:
    r = day_replay()
    share = {k: r.kinds[k] / N for k in r.kinds}
    # Configured shares, shifted by the deletes that make room once the market is full and by
    # marketable adds that become executions (see the module docstring).
    expected = {"A": (0.33, 0.45), "F": (0.03, 0.06), "D": (0.25, 0.40), "E": (0.08, 0.14),
                "C": (0.006, 0.015), "X": (0.03, 0.07), "U": (0.05, 0.10), "P": (0.005, 0.015)}
    for kind, (lo, hi) in expected.items():
        assert lo <= share[kind] <= hi, (kind, share[kind])
    assert 0.0015 <= sum(share[k] for k in "ILY") <= 0.008
    unknown = sum(r.unknown.values()) / N
    assert 0.003 <= unknown <= 0.007, unknown
    assert set(r.unknown) == set("ECXDU")
    assert 0.2 < r.unknown_removed / sum(r.unknown.values()) < 0.8    # both flavours
    unwatched = sum(r.by_locate[len(WATCHED) + 1 + i] for i in range(len(UNWATCHED))) / N
    assert 0.07 <= unwatched <= 0.13, unwatched


def test_realistic_details() -> None:
    r = day_replay()
    assert r.clamped > 100                    # X (and nothing else) cancelling more than left
    assert r.u_chains > 100
    assert r.sub_penny > 1000                 # the sub-dollar stock quotes in $0.0001
    assert r.half_penny_c > 10                # midpoint executions
    assert set(r.printable) == {ord("Y"), ord("N")}
    assert r.max_ref > 1 << 32
    assert r.price_moves > N // 200     # the touch moves all day
    # Halts end: every H 'H' is followed by H 'T' for the same instrument (Q allowed between).
    halted: set[int] = set()
    for locate, state in r.halts:
        if state == "H":
            assert locate not in halted
            halted.add(locate)
        elif state == "T":
            halted.discard(locate)
    assert sum(s == "H" for _, s in r.halts) >= 1
    assert not halted


def test_byte_identical_to_encode() -> None:
    rng = random.Random(2)
    texts = {"stock": 8, "attribution": 4}
    for kind, packer in PACKERS.items():
        if kind not in ITCH_BODIES:
            continue
        for _ in range(200):
            fields = {"type": kind, "locate": rng.randrange(1 << 16),
                      "tracking": rng.randrange(1 << 16), "timestamp": rng.randrange(1 << 48)}
            values = []
            for name, size in ITCH_BODIES[kind]:
                if name in texts:
                    s = "".join(rng.choice("ABCXYZ") for _ in range(rng.randint(1, size)))
                    fields[name] = s
                    values.append(s.encode().ljust(size))
                elif size == 1:
                    c = rng.choice("BSYNOQ")
                    fields[name] = c
                    values.append(c.encode())
                else:
                    fields[name] = rng.randrange(1 << 8 * size)
                    values.append(fields[name])
            ts = fields["timestamp"]
            assert packer.pack(kind.encode(), fields["locate"], fields["tracking"], ts >> 32,
                               ts & 0xFFFFFFFF, *values) == encode(fields)


def test_stream_round_trips_and_parses_with_itchfeed() -> None:
    msgs = day()
    for m in msgs:
        if chr(m[0]) in ITCH_BODIES:
            assert encode(decode(m)) == m
    # An independent decoder agrees on the header of every kind the stream carries.
    seen: set[str] = set()
    for m in msgs[:40_000]:
        theirs = itchfeed_classes[m[:1]](m)
        assert theirs.stock_locate == int.from_bytes(m[1:3], "big")
        seen.add(chr(m[0]))
    assert seen >= set("SRHAFECXDUPILY")


def test_fold_is_order_hash() -> None:
    rng = random.Random(4)
    for sets in (2, 256, 2048, 4096):
        fold = _folder(sets)
        for _ in range(2000):
            ref = rng.getrandbits(rng.choice((12, 33, 64)))
            assert fold(ref) == order_hash(ref, sets)


def test_frames_carry_the_stream_in_order() -> None:
    msgs = list(day()[:5000])
    feed = Feed(seq=41)
    frames = market_frames(msgs, feed, max_messages=24)
    seq, back = 41, []
    for f in frames:
        payload = payload_of(f)
        assert payload is not None and len(payload) <= MOLD_MAX_BLOCKS + 20
        session, first, count, blocks = mold_unpack(payload)
        assert (session, first) == (feed.session, seq) and 1 <= count <= 24
        seq += count
        back += blocks
    assert back == msgs and feed.seq == seq


@pytest.mark.parametrize("kwargs, what", [
    ({"n_messages": 10}, "n_messages"),
    ({"symbols": ("AAPL", "AAPL")}, "repeat"),
    ({"symbols": ("TOOLONGSYM",)}, "symbol"),
    ({"unwatched": ("AAPL",)}, "repeat"),
    ({"max_levels": 1}, "max_levels"),
    ({"table": (1000, 8)}, "table"),
    ({"unknown_rate": 0.5}, "unknown_rate"),
])
def test_bad_arguments_say_what_is_allowed(kwargs: dict, what: str) -> None:
    args = {"seed": 1, "n_messages": 1000, **kwargs}
    with pytest.raises(ValueError, match=what):
        market_stream(**args)
