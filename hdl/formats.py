"""Wire formats shared by the gateware and the host: plain Python, no Amaranth.

Everything that crosses the host/card boundary is defined here once. The gateware builds its
`data.Struct` layouts from these tables (`hdl.itch`), and the reference models in `host/model/`
read them directly, so the two can never disagree about a field.

All wire integers are big-endian.
"""

import enum
from dataclasses import dataclass

__all__ = [
    "ETH_MIN_FRAME", "ETH_MAX_FRAME", "FCS_LEN", "ETH_PREAMBLE", "ETH_PREAMBLE_LEN", "ETH_SFD",
    "ETH_IFG", "ETHERTYPE_IPV4", "ETHERTYPE_VLAN",
    "IP_PROTO_UDP", "MOLD_HEADER_LEN", "MOLD_HEARTBEAT", "MOLD_END_OF_SESSION", "SESSION_LEN",
    "N_SUBSCRIPTIONS", "Drop", "ITCH_LENGTHS", "ITCH_TYPES", "ITCH_HEADER", "ITCH_BODIES",
    "ITCH_HEADER_LEN", "ITCH_MAX_BODY", "multicast_mac", "BOOK_CLEAR_EVENTS", "BOOK_QTY_BITS",
    "BOOK_COUNT_BITS", "BOOK_GEN_BITS", "BOOK_BANKS", "BOOK_BUY", "BOOK_SELL", "BOOK_TRADING",
    "BOOK_COUNTERS", "order_hash", "order_sets", "BookParams", "RISK_QTY_BITS", "RISK_PRICE_BITS",
    "RISK_NOTIONAL_BITS", "RISK_POSITION_BITS", "RISK_RATE_BITS", "RISK_CREDIT_BITS",
    "CARD_CLOCK_HZ", "LATENCY_KINDS", "LATENCY_BINS", "HostOpKind", "Reject",
    "OUCH_ENTER_ORDER", "OUCH_ENTER_ORDER_LEN", "OUCH_IOC", "OUCH_SIDES", "SOUPBIN_UNSEQUENCED",
    "ORDER_TEMPLATE", "ORDER_TEMPLATE_TEXT",
]

# Ethernet frame sizes count the destination MAC through the FCS, not preamble/SFD.
ETH_MIN_FRAME = 64
ETH_MAX_FRAME = 1522          # 1518 + one 802.1Q tag
FCS_LEN = 4
# Around a frame on the wire (GMII), in byte times: preamble, SFD, and the idle gap after it.
ETH_PREAMBLE = 0x55
ETH_PREAMBLE_LEN = 7
ETH_SFD = 0xD5
ETH_IFG = 12                  # the least idle time between the end of a frame and the next
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_VLAN = 0x8100
IP_PROTO_UDP = 17

MOLD_HEADER_LEN = 20          # session (10), sequence number (8), message count (2)
SESSION_LEN = 10
MOLD_HEARTBEAT = 0
MOLD_END_OF_SESSION = 0xFFFF

N_SUBSCRIPTIONS = 4


def multicast_mac(group: int) -> int:
    """The Ethernet MAC an IPv4 multicast group maps to (RFC 1112: 01:00:5e + low 23 bits)."""
    return 0x01005E000000 | (group & 0x7FFFFF)


class Drop(enum.IntEnum):
    """Why a frame was dropped. A frame is counted once, under the first reason in this order:
    MAC errors (known only at the end of the frame) first, then the layers in the order the
    bytes flow through them. `NONE` means the frame was good."""
    NONE = 0
    MAC_PHY_ERROR = 1         # the PHY raised RX_ER during the frame
    MAC_PREAMBLE = 2          # the frame did not start with 0x55... 0xD5
    MAC_OVERSIZE = 3          # longer than ETH_MAX_FRAME
    MAC_RUNT = 4              # shorter than ETH_MIN_FRAME
    MAC_FCS = 5               # CRC-32 mismatch
    ETH_DST = 6               # neither our unicast MAC nor a subscribed group's multicast MAC
    ETH_TYPE = 7              # not IPv4 after zero or one 802.1Q tag
    IP_VERSION = 8            # version != 4 or IHL < 5
    IP_LENGTH = 9             # total length below header + UDP header, or frame shorter
    IP_FRAGMENT = 10          # MF set or fragment offset != 0
    IP_PROTO = 11             # not UDP
    IP_CHECKSUM = 12          # header checksum wrong
    UDP_NO_SUB = 13           # destination group:port not in the subscription table
    UDP_LENGTH = 14           # UDP length != IPv4 payload length
    MOLD_SESSION = 15         # session differs from the subscription's
    MOLD_DUPLICATE = 16       # every message already seen
    MOLD_TRUNCATED = 17       # payload ends inside the header or before `count` blocks
    MOLD_TRAILING = 18        # bytes after the last counted block
    MOLD_EMPTY_BLOCK = 19     # a message block of length 0
    ITCH_UNKNOWN_TYPE = 20    # message type not in ITCH 5.0; rest of the packet dropped
    ITCH_BAD_LENGTH = 21      # block length differs from the type's length; rest dropped


# ITCH 5.0 message lengths, type byte included. Every known type; the decoder skips the ones
# without a body table below by their length.
ITCH_LENGTHS: dict[str, int] = {
    "S": 12, "R": 39, "H": 25, "Y": 20, "L": 26, "V": 35, "W": 12, "K": 28, "J": 35, "h": 21,
    "A": 36, "F": 40, "E": 31, "C": 36, "X": 23, "D": 19, "U": 35, "P": 44, "Q": 40, "B": 19,
    "I": 50, "N": 20, "O": 48,
}
# Counter order for messages_by_type.
ITCH_TYPES: tuple[str, ...] = tuple(ITCH_LENGTHS)

# Common header of every ITCH 5.0 message: (field, bytes), in wire order.
ITCH_HEADER: tuple[tuple[str, int], ...] = (
    ("type", 1), ("locate", 2), ("tracking", 2), ("timestamp", 6),
)
ITCH_HEADER_LEN = sum(n for _, n in ITCH_HEADER)

# Bodies (after the common header) of the decoded types: (field, bytes), in wire order.
# Text fields (stock, codes) stay integers: big-endian ASCII, first character most significant.
ITCH_BODIES: dict[str, tuple[tuple[str, int], ...]] = {
    "S": (("event_code", 1),),
    "R": (("stock", 8), ("market_category", 1), ("financial_status", 1),
          ("round_lot_size", 4), ("round_lots_only", 1), ("issue_classification", 1),
          ("issue_subtype", 2), ("authenticity", 1), ("short_sale_threshold", 1),
          ("ipo_flag", 1), ("luld_tier", 1), ("etp_flag", 1), ("etp_leverage", 4),
          ("inverse", 1)),
    "H": (("stock", 8), ("trading_state", 1), ("reserved", 1), ("reason", 4)),
    "A": (("order_ref", 8), ("side", 1), ("shares", 4), ("stock", 8), ("price", 4)),
    "F": (("order_ref", 8), ("side", 1), ("shares", 4), ("stock", 8), ("price", 4),
          ("attribution", 4)),
    "E": (("order_ref", 8), ("shares", 4), ("match", 8)),
    "C": (("order_ref", 8), ("shares", 4), ("match", 8), ("printable", 1), ("price", 4)),
    "X": (("order_ref", 8), ("shares", 4)),
    "D": (("order_ref", 8),),
    "U": (("order_ref", 8), ("new_ref", 8), ("shares", 4), ("price", 4)),
    "P": (("order_ref", 8), ("side", 1), ("shares", 4), ("stock", 8), ("price", 4),
          ("match", 8)),
}
for _t, _fields in ITCH_BODIES.items():
    assert ITCH_HEADER_LEN + sum(n for _, n in _fields) == ITCH_LENGTHS[_t], _t
ITCH_MAX_BODY = max(ITCH_LENGTHS[t] for t in ITCH_BODIES) - ITCH_HEADER_LEN


# OUCH 5.0 Enter Order (host.model.ouch; the order builder), checked byte for byte against the
# real capture in ../shared/data/nasdaq/Nasdaq.Nsm.Ouch.v5.0/EnterOrderMessage.pcap. All
# integers big-endian; price with 4 implied decimals; appendage (tag-value options) follows.
OUCH_ENTER_ORDER: tuple[tuple[str, int], ...] = (
    ("type", 1), ("user_ref", 4), ("side", 1), ("quantity", 4), ("symbol", 8), ("price", 8),
    ("time_in_force", 1), ("display", 1), ("capacity", 1), ("intermarket_sweep", 1),
    ("cross_type", 1), ("cl_ord_id", 14), ("appendage_length", 2),
)
OUCH_ENTER_ORDER_LEN = sum(n for _, n in OUCH_ENTER_ORDER)      # 47
OUCH_IOC = "3"                # time in force: immediate or cancel (0 day, 5 GTX, 6 GTT, E)
SOUPBIN_UNSEQUENCED = "U"     # SoupBinTCP packet type framing each message we send

# The order template the host loads into the order builder (hdl.order_builder.TemplateLayout,
# host.model.order_frame.OrderTemplate): everything of an order frame that is not the order.
# (field, bytes), packed into the register LSB-first in this order (the first field in the
# lowest bits). Integers are the wire values (MACs and IPv4 addresses as ints); the firm fields
# (ORDER_TEMPLATE_TEXT) are one OUCH character each, held as its ASCII code. No VLAN tag: a card
# port faces the exchange's access switch untagged.
ORDER_TEMPLATE: tuple[tuple[str, int], ...] = (
    ("dst_mac", 6), ("src_mac", 6), ("src_ip", 4), ("dst_ip", 4), ("src_port", 2),
    ("dst_port", 2), ("ttl", 1), ("time_in_force", 1), ("display", 1), ("capacity", 1),
    ("intermarket_sweep", 1), ("cross_type", 1),
)
ORDER_TEMPLATE_TEXT = ("time_in_force", "display", "capacity", "intermarket_sweep", "cross_type")
assert all(dict(OUCH_ENTER_ORDER)[n] == dict(ORDER_TEMPLATE)[n] for n in ORDER_TEMPLATE_TEXT)


# Order book (hdl.book, host.model.book).
BOOK_CLEAR_EVENTS = "OC"      # S event codes that empty every book: start and end of messages
BOOK_QTY_BITS = 32            # shares of an order and of a price level
BOOK_COUNT_BITS = 16          # orders per level, orphans per side
BOOK_GEN_BITS = 16            # order table generation: a clear is one increment
BOOK_BANKS = 2                # order table banks, one candidate set in each (`order_sets`)
BOOK_BUY, BOOK_SELL = 0, 1    # side index in a book row and an order entry
# The OUCH side letter of each side index (the order builder's request carries the index).
OUCH_SIDES = ("B", "S")
assert (OUCH_SIDES[BOOK_BUY], OUCH_SIDES[BOOK_SELL]) == ("B", "S")
BOOK_TRADING = "T"            # the H trading state that is not halted; also the initial one
# The book's counters, in the order the gateware exports them (counters.json "book").
BOOK_COUNTERS = ("updates", "unknown_ref", "clamped", "rejected", "duplicate_ref", "table_full",
                 "level_overflow", "clears")


# Trigger and risk registers (the tick-to-trade gateware, host.config): the widths every value
# of a strategy and limits file must fit.
RISK_QTY_BITS = 32            # shares: order and level quantities (ITCH and OUCH carry 4 bytes)
RISK_PRICE_BITS = 32          # ITCH prices, 1/10000 dollar
RISK_NOTIONAL_BITS = 64       # price x shares
RISK_POSITION_BITS = 32       # signed shares: position and exposure bounds
RISK_RATE_BITS = 16           # orders per second
RISK_CREDIT_BITS = 32         # a token bucket's credit in cycles (at most CARD_CLOCK_HZ)
CARD_CLOCK_HZ = 125_000_000   # the core clock the rate throttle counts (1 Gb/s GMII)
# Tick-to-trade latency counters (hdl.latency): per kind of triggering message, a histogram of
# one bin per cycle, the last bin counting that many cycles or more.
LATENCY_KINDS = ("add", "removal")     # A/F; E/C/X/D/U
LATENCY_BINS = 32


class HostOpKind(enum.IntEnum):
    """What a host op (`host_op` registers, `hdl.risk.HostOp`) does to a slot's exposure."""
    RELEASE = 0               # qty of an open order is gone (cancelled, expired)
    FILL = 1                  # qty of an open order filled: it moves to the position
    POSITION = 2              # load the position (qty as a signed value)


class Reject(enum.IntEnum):
    """Why the risk gate refused an order. Checked in this order; an order is counted once,
    under the first that applies. `NONE`: sent."""
    NONE = 0
    KILL_CARD = 1             # the card-wide kill switch is set
    KILL_INSTRUMENT = 2       # this instrument's kill switch is set
    HALTED = 3                # its trading state is not T
    UNCERTAIN = 4             # its book cannot vouch for its top
    REDUCE_ONLY = 5           # reduce-only (card or instrument) and the order would not reduce
    MAX_QTY = 6               # qty > max_order_qty
    MAX_NOTIONAL = 7          # qty x price > max_order_notional
    COLLAR = 8                # |price - reference_px| > collar
    MAX_POSITION = 9          # position + open orders that way + qty > max_position
    RATE_CARD = 10            # the card-wide token bucket is empty
    RATE_INSTRUMENT = 11      # this instrument's token bucket is empty


def order_hash(ref: int, sets: int) -> int:
    """The XOR of the log2(sets)-bit chunks of `ref`: the set of bank 0 (`order_sets`)."""
    bits = sets.bit_length() - 1
    index = 0
    while ref:
        index ^= ref & (sets - 1)
        ref >>= bits
    return index


def order_sets(ref: int, sets: int) -> tuple[int, int]:
    """The set of reference `ref` in each of the order table's two banks ("2-left" hashing: an
    order goes to whichever of its two sets has more free ways, bank 0 on a tie, so one full
    set no longer means a lost order). Bank 0 takes the XOR of the reference's log2(sets)-bit
    chunks; bank 1 the same with the lowest chunk bit-reversed, so references that collide in
    one bank mostly do not in the other. Both keep the lowest chunk recoverable from the set
    and the chunks above, so an entry stores only the reference's bits above the lowest chunk.
    """
    bits = sets.bit_length() - 1
    low = ref & (sets - 1)
    high = order_hash(ref >> bits, sets)
    return low ^ high, int(f"{low:0{bits}b}"[::-1], 2) ^ high


@dataclass(frozen=True)
class BookParams:
    """Build parameters of the order book, shared by `hdl.book` and `host.model.book`."""
    slots: int = 16           # watched instruments
    # The order table: 2 banks x `sets` x `ways` entries (16,384). 2,048 x 4, not 512 x 16:
    # 32 ways of block RAM did not route in an hour, 8 ways of 2,048 route at 123.5-126.4
    # MHz (two seeds; docs/book-timing.md, "Eleventh session"). The price: with 4 ways a set fills
    # sooner, and 2-left refuses its first realistic order at about 62% of the entries, not
    # 84% (benchmarks/test_book_capacity.py).
    sets: int = 2048          # sets in each of the order table's 2 banks (a power of two)
    ways: int = 4             # orders per set
    # Price levels kept per instrument and side. 8, not 16: the levels' logic (kept in place,
    # ranked, scanned and edited in a cycle each) is most of the book, and a book of 16 does
    # not route at 125 MHz on the ECP5 even with almost no order table (113.6 MHz mean over
    # three seeds, 24,295 LUT4; 8 levels: 16,039 LUT4, 125.7-127.0 MHz; docs/book-timing.md,
    # "Tenth session"). Deeper prices become orphans (`host.model.book`), so the top stays
    # exact while any level is kept: on a million-message generated day, 492 push-outs and
    # not one uncertain update.
    levels: int = 8

    def __post_init__(self) -> None:
        if self.sets < 2 or self.sets & (self.sets - 1):
            raise ValueError(f"sets must be a power of two >= 2, not {self.sets}")
        for name in ("slots", "ways", "levels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")

    @property
    def capacity(self) -> int:
        return BOOK_BANKS * self.sets * self.ways
