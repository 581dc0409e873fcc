"""The card's register map: every register the host can reach, declared once (`hdl.regs`).

`CARD_MAP` is what the card's `RegisterBank` serves and what `python -m firmware.regmap`
exports; the host reads the export. Tables of the wire formats (`hdl.formats`, the
`data.Struct`s of the subscription and watchlist rows) give the widths, so a layout change moves
the map with it. The `limits`, `triggers`, `order`, `latency` and `events` blocks are declared
for the tick-to-trade work, which gives them their gateware; their meaning is `host.config`'s
and `host.model.risk`'s.

Bump `VERSION`'s minor for an addition the old host can ignore, its major for anything that
moves or changes an existing register.
"""

from amaranth import Shape
from amaranth.lib import data

from hdl.beats import Subscription
from hdl.book import WatchWrite
from hdl.formats import (
    BOOK_COUNTERS,
    ITCH_TYPES,
    N_SUBSCRIPTIONS,
    RISK_NOTIONAL_BITS,
    RISK_POSITION_BITS,
    RISK_PRICE_BITS,
    RISK_QTY_BITS,
    RISK_RATE_BITS,
    BookParams,
    Drop,
)
from hdl.regs import Block, Map, Register

__all__ = ["CARD_MAP", "VERSION", "EVENT_BITS", "LATENCY_BINS", "card_map", "struct_registers"]

VERSION = (1, 0)
EVENT_BITS = 128        # one event FIFO entry; its layout belongs to the event FIFO's gateware
LATENCY_BINS = 32


def struct_registers(layout, skip: tuple[str, ...] = (),
                     docs: dict[str, str] | None = None) -> tuple[Register, ...]:
    """An rw register per field of a `data.Struct` (in field order), so a row the host writes
    has exactly the struct's fields and widths."""
    docs = docs or {}
    return tuple(Register(name, Shape.cast(field.shape).width, doc=docs.get(name, ""))
                 for name, field in data.Layout.cast(layout) if name not in skip)


def card_map(book: BookParams | None = None) -> Map:
    slots = (book or BookParams()).slots
    qty, px, rate = RISK_QTY_BITS, RISK_PRICE_BITS, RISK_RATE_BITS
    return Map([
        Block("feed", (
            Register("frames_ok", access="ro", doc="frames that passed every check"),
            Register("gaps", access="ro", doc="MoldUDP64 sequence gaps detected"),
            Register("drops", access="ro", count=len(Drop),
                     labels=tuple(d.name.lower() for d in Drop),
                     doc="frames dropped, by hdl.formats.Drop reason ([0] unused)"),
            Register("messages_by_type", access="ro", count=len(ITCH_TYPES), labels=ITCH_TYPES,
                     doc="ITCH messages decoded, by type (hdl.formats.ITCH_TYPES order)"),
        ), doc="feed handler counters (hdl.feed.Counters)"),
        Block("book", tuple(Register(name, access="ro") for name in BOOK_COUNTERS),
              doc="order book counters (hdl.formats.BOOK_COUNTERS)"),
        Block("net", (
            Register("own_mac", 48, doc="the card's unicast MAC (frames to it pass the "
                                        "Ethernet filter); the top word write applies it"),
        ), doc="the card's own addresses"),
        Block("subscriptions", struct_registers(Subscription, docs={
            "valid": "1: the row is in use",
            "group": "IPv4 multicast group",
            "port": "UDP destination port",
            "session": "MoldUDP64 session, big-endian ASCII",
            "next_seq": "next expected sequence number; 0 = take the first seen",
        }), count=N_SUBSCRIPTIONS, shadow=True,
            doc="multicast feeds (hdl.beats.Subscription); a commit restarts the row's feed"),
        Block("watchlist", struct_registers(WatchWrite, skip=("slot",), docs={
            "symbol": "ITCH stock symbol: big-endian ASCII, space padded",
            "enable": "1: the slot keeps this instrument's book",
        }), count=slots, shadow=True,
            doc="watched instruments, one row per book slot (hdl.book.WatchWrite); a commit "
                "restarts the slot's book"),
        Block("limits", (
            Register("max_order_qty", qty, doc="shares per order, at most"),
            Register("max_order_notional", RISK_NOTIONAL_BITS,
                     doc="price x shares per order, at most (ITCH price units)"),
            Register("max_orders_per_second", rate, doc="card-wide order rate throttle"),
            Register("reduce_only", 1, doc="1: only orders that reduce a position"),
            Register("kill", 1, immediate=True, doc="1: send no order at all (not staged)"),
        ), shadow=True, doc="card-wide risk limits (host.config.Limits)"),
        Block("triggers", (
            Register("buy_enable", 1, doc="1: buy when the best ask <= buy_below"),
            Register("buy_below", px, doc="ITCH price"),
            Register("sell_enable", 1, doc="1: sell when the best bid >= sell_above"),
            Register("sell_above", px, doc="ITCH price"),
            Register("min_qty", qty, doc="the touched level must show at least this many shares"),
            Register("order_qty", qty, doc="shares per order, at most"),
            Register("max_position", RISK_POSITION_BITS,
                     doc="|position + open orders in the order's direction| bound"),
            Register("reference_px", px, doc="price collar centre"),
            Register("collar", px, doc="|order price - reference_px| bound"),
            Register("max_orders_per_second", rate, doc="this slot's throttle; 0: the card's"),
            Register("reduce_only", 1, doc="1: only orders that reduce this position"),
            Register("armed", 1, doc="1: the trigger may fire"),
            Register("kill", 1, immediate=True, doc="1: no order for this slot (not staged)"),
        ), count=slots, shadow=True,
            doc="per watched slot: trigger and risk parameters (host.config.Instrument)"),
        Block("order", (
            Register("dst_mac", 48, doc="next hop's MAC"),
            Register("src_mac", 48, doc="the card's MAC"),
            Register("src_ip", 32),
            Register("dst_ip", 32, doc="the exchange's order entry address"),
            Register("src_port", 16),
            Register("dst_port", 16),
            Register("ttl", 8, init=64),
            Register("next_user_ref", 32, init=1,
                     doc="OUCH UserRefNum of the next order (strictly increasing per day)"),
            Register("time_in_force", 8, init=ord("3"), doc="OUCH firm field, ASCII"),
            Register("display", 8, init=ord("Y"), doc="OUCH firm field, ASCII"),
            Register("capacity", 8, init=ord("A"), doc="OUCH firm field, ASCII"),
            Register("intermarket_sweep", 8, init=ord("N"), doc="OUCH firm field, ASCII"),
            Register("cross_type", 8, init=ord("N"), doc="OUCH firm field, ASCII"),
            Register("firm", 32, doc="OUCH Firm (4 ASCII, big-endian); 0: no Firm option"),
        ), shadow=True, doc="the order frame template: Ethernet/IPv4/UDP headers, OUCH fields"),
        Block("latency", (
            Register("bins", access="ro", count=LATENCY_BINS,
                     doc="tick-to-trade samples by cycles; the last bin counts the rest"),
            Register("clear", access="wo", doc="zero every bin"),
        ), doc="tick-to-trade latency histogram"),
        Block("events", (
            Register("data", EVENT_BITS, access="ro", read_strobe=True,
                     doc="the oldest event, 0 when empty; reading its low word pops it (read "
                         "the words low first)"),
            Register("level", 16, access="ro", doc="events waiting"),
            Register("overflow", access="ro", doc="events lost to a full FIFO"),
        ), doc="card-to-host event FIFO"),
    ], VERSION)


CARD_MAP = card_map()
