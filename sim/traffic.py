"""Random but plausible ITCH 5.0 traffic for tests and benchmarks.

Every generator takes a `random.Random`, so a failing case is reproduced from its seed. Frames
come back without FCS (as in a pcap); `host.model.pack.with_fcs` adds it for a MAC.
"""

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hdl.formats import ITCH_BODIES, ITCH_LENGTHS, ITCH_TYPES, MOLD_END_OF_SESSION
from host.model.itch import encode
from host.model.pack import (
    FEED_GROUP,
    FEED_PORT,
    FEED_SRC_IP,
    FEED_SRC_PORT,
    MOLD_MAX_BLOCKS,
    mold_packet,
    udp_frame,
)

__all__ = ["SYMBOLS", "random_message", "random_stream", "Feed", "random_frames",
           "random_packets", "book_torture"]

# Few symbols, so random adds, executes and deletes often hit the same instrument.
SYMBOLS = ("AAPL", "MSFT", "NVDA", "QQQ", "SPY", "TSLA", "IVOO", "ZVZZT")
# Order and match numbers are day-unique and grow large during a session: use the full 64 bits
# sometimes so no decoder quietly truncates them.
_REF_BITS = (16, 40, 64)


def _ref(rng: random.Random) -> int:
    return rng.getrandbits(rng.choice(_REF_BITS))


def _price(rng: random.Random) -> int:
    # Mostly realistic (under $1000), sometimes up to the top bit of a u32 price being clear.
    return rng.randrange(1, 10_000_000) if rng.random() < 0.9 else rng.randrange(1, 2**31)


def _common(rng: random.Random) -> dict[str, Any]:
    return {"locate": rng.randrange(1, 12_000), "tracking": rng.randrange(1 << 16),
            "timestamp": rng.randrange(86_400 * 10**9)}


_BODY_FIELDS: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "S": lambda r: {"event_code": r.choice("OSQMEC")},
    "R": lambda r: {
        "stock": r.choice(SYMBOLS), "market_category": r.choice("QGSNAPZV "),
        "financial_status": r.choice("DEQSGHJKCN "), "round_lot_size": r.choice((1, 10, 100)),
        "round_lots_only": r.choice("YN"), "issue_classification": r.choice("ACEFILNOPQRSTUVW"),
        "issue_subtype": r.choice(("Z ", "A ", "AI", "C ", "CF", "X ")),
        "authenticity": r.choice("PT"), "short_sale_threshold": r.choice("YN "),
        "ipo_flag": r.choice("YN "), "luld_tier": r.choice("12 "), "etp_flag": r.choice("YN "),
        "etp_leverage": r.randrange(4), "inverse": r.choice("YN")},
    "H": lambda r: {"stock": r.choice(SYMBOLS), "trading_state": r.choice("HPQT"), "reserved": " ",
                    "reason": r.choice(("", "T1", "H10", "LUDP", "MWC1"))},
    "A": lambda r: {"order_ref": _ref(r), "side": r.choice("BS"), "shares": r.randrange(1, 100_000),
                    "stock": r.choice(SYMBOLS), "price": _price(r)},
    "F": lambda r: {**_BODY_FIELDS["A"](r), "attribution": r.choice(("NSDQ", "GSCO", "VIRT"))},
    "E": lambda r: {"order_ref": _ref(r), "shares": r.randrange(1, 10_000), "match": _ref(r)},
    "C": lambda r: {**_BODY_FIELDS["E"](r), "printable": r.choice("YN"), "price": _price(r)},
    "X": lambda r: {"order_ref": _ref(r), "shares": r.randrange(1, 10_000)},
    "D": lambda r: {"order_ref": _ref(r)},
    "U": lambda r: {"order_ref": _ref(r), "new_ref": _ref(r), "shares": r.randrange(1, 100_000),
                    "price": _price(r)},
    "P": lambda r: {**_BODY_FIELDS["A"](r), "match": _ref(r)},
}
assert set(_BODY_FIELDS) == set(ITCH_BODIES)


def random_message(rng: random.Random, kind: str) -> bytes:
    """A random ITCH message of type `kind` (any key of `ITCH_LENGTHS`). Decoded types get
    plausible field values; the others are the type byte followed by random bytes."""
    if kind not in ITCH_LENGTHS:
        raise ValueError(f"kind must be one of {''.join(ITCH_LENGTHS)}, not {kind!r}")
    if kind not in ITCH_BODIES:
        return kind.encode() + rng.randbytes(ITCH_LENGTHS[kind] - 1)
    return encode({"type": kind, **_common(rng), **_BODY_FIELDS[kind](rng)})


def random_stream(rng: random.Random, n_messages: int,
                  kinds: Sequence[str] = ITCH_TYPES) -> list[bytes]:
    """`n_messages` random messages, each of a type drawn uniformly from `kinds`."""
    return [random_message(rng, rng.choice(kinds)) for _ in range(n_messages)]


@dataclass
class Feed:
    """One MoldUDP64 session on one group:port. `seq` is the sequence number of the next
    message, so packets built through one Feed number their messages without gaps."""
    session: bytes = b"TICKNIC001"
    group: int = FEED_GROUP
    port: int = FEED_PORT
    seq: int = 1
    src_ip: int = FEED_SRC_IP
    src_port: int = FEED_SRC_PORT

    def frame(self, messages: Sequence[bytes], *, vlan: int | None = None,
              count: int | None = None) -> bytes:
        """A frame (no FCS) carrying `messages` from `seq` on; `seq` advances past them."""
        payload = mold_packet(self.session, self.seq, messages, count)
        self.seq += len(messages)
        return udp_frame(payload, dst_ip=self.group, dst_port=self.port, src_ip=self.src_ip,
                         src_port=self.src_port, vlan=vlan)

    def heartbeat(self, *, vlan: int | None = None) -> bytes:
        """A heartbeat: count 0, carrying the next sequence number."""
        return self.frame([], vlan=vlan)

    def end_of_session(self, *, vlan: int | None = None) -> bytes:
        """The end-of-session packet: count 0xFFFF and no blocks."""
        return self.frame([], vlan=vlan, count=MOLD_END_OF_SESSION)


def random_frames(rng: random.Random, feed: Feed, n_packets: int, *, max_messages: int = 32,
                  vlan_choices: Sequence[int | None] = (None, 5),
                  kinds: Sequence[str] = ITCH_TYPES) -> list[bytes]:
    """`n_packets` frames (no FCS) from `feed`, continuing its sequence numbers, each with
    1..`max_messages` random messages (fewer if the next would not fit a 1500-byte IP MTU)
    on a VLAN drawn from `vlan_choices` (None: untagged)."""
    frames = []
    for _ in range(n_packets):
        messages: list[bytes] = []
        size, want = 0, rng.randint(1, max_messages)
        while len(messages) < want:
            m = random_message(rng, rng.choice(kinds))
            if size + 2 + len(m) > MOLD_MAX_BLOCKS:
                break
            messages.append(m)
            size += 2 + len(m)
        frames.append(feed.frame(messages, vlan=rng.choice(vlan_choices)))
    return frames


def random_packets(rng: random.Random, n_packets: int, *, session: bytes = b"TICKNIC001",
                   first_seq: int = 1, group: int = FEED_GROUP, port: int = FEED_PORT,
                   max_messages: int = 32, vlan_choices: Sequence[int | None] = (None, 5),
                   kinds: Sequence[str] = ITCH_TYPES) -> list[bytes]:
    """Like `random_frames` on a new `Feed`; messages are numbered from `first_seq` on. To keep
    numbering across calls, make one `Feed` and call `random_frames` with it."""
    feed = Feed(session, group, port, first_seq)
    return random_frames(rng, feed, n_packets, max_messages=max_messages,
                         vlan_choices=vlan_choices, kinds=kinds)


def book_torture(rng: random.Random, n_messages: int, symbols: Sequence[str] = SYMBOLS[:5],
                 *, refs: int = 64, prices: int = 12) -> list[bytes]:
    """Adversarial order-book traffic: `n_messages` of A F E C X D U H (and rare clearing S,
    R and P) over `symbols`, with references from a pool of `refs` and prices from a pool of
    `prices` (plus the lowest and highest), so duplicates, unknown references, clamps, zero
    shares, shared levels, crossed books and, against small capacities, full table sets and
    pushed-out levels all happen often. Locates follow the symbols (1, 2, ...) except now and
    then, when a message says a wrong one."""
    pool = [rng.getrandbits(rng.choice(_REF_BITS)) for _ in range(refs)]
    pxs = [1, 0xFFFFFFFF] + [rng.randrange(1, 2_000_000) for _ in range(prices)]
    kinds = "AAAAFEECXXDDDUUHRPS"
    out = []
    for _ in range(n_messages):
        kind = rng.choice(kinds)
        sym = rng.randrange(len(symbols))
        locate = sym + 1 if rng.random() < 0.97 else rng.randrange(1, 12)
        shares = rng.choice((0, 1, 2, 100, 300, rng.randrange(1 << 32))) \
            if rng.random() < 0.1 else rng.randrange(1, 500)
        fields: dict[str, Any] = {
            "type": kind, "locate": locate, "timestamp": rng.randrange(1 << 48),
            "order_ref": rng.choice(pool), "new_ref": rng.choice(pool), "shares": shares,
            "side": rng.choice("BS"), "stock": symbols[sym],
            "price": 0 if rng.random() < 0.02 else rng.choice(pxs),
            "trading_state": rng.choice("HPQTT"), "match": rng.getrandbits(40),
            "printable": "Y", "event_code": rng.choice("OCSQME"),
        }
        out.append(encode(fields))
    return out
