"""The card's register map: every register the host can reach, declared once (`hdl.regs`).

`CARD_MAP` is what the card's `RegisterBank` serves (`hdl.card.Card`) and what
`python -m firmware.regmap` exports; the host reads the export. Tables of the wire formats
(`hdl.formats`, the `data.Struct`s of the subscription and watchlist rows, the order template)
give the widths, so a layout change moves the map with it. What each block means to the card
is `hdl.card`'s docstring; the register names are the contract the host codes against
(`host.regmap.RegMap` lookups such as `triggers[3].buy_below`).

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
    LATENCY_BINS,
    LATENCY_KINDS,
    N_SUBSCRIPTIONS,
    RISK_CREDIT_BITS,
    RISK_NOTIONAL_BITS,
    RISK_POSITION_BITS,
    RISK_PRICE_BITS,
    RISK_QTY_BITS,
    BookParams,
    Drop,
    Reject,
)
from hdl.order_builder import TemplateLayout
from hdl.regs import Block, Map, Register

__all__ = ["CARD_MAP", "VERSION", "EVENT_BITS", "LATENCY_BINS", "card_map", "struct_registers"]

# 2.0: the tick-to-trade blocks as the card implements them (rate_period/rate_cap instead of
# max_orders_per_second, positions, host_op, tops, risk, latency rows, the order template of
# hdl.formats.ORDER_TEMPLATE without `firm`).
# 3.0: order.user_ref_next (ro), which moves order.commit and the order block's live words.
VERSION = (3, 0)
EVENT_BITS = 160        # one event FIFO entry: hdl.card.Event


def struct_registers(layout, skip: tuple[str, ...] = (),
                     docs: dict[str, str] | None = None,
                     inits: dict[str, int] | None = None) -> tuple[Register, ...]:
    """An rw register per field of a `data.Struct` (in field order), so a row the host writes
    has exactly the struct's fields and widths."""
    docs, inits = docs or {}, inits or {}
    return tuple(Register(name, Shape.cast(field.shape).width, doc=docs.get(name, ""),
                          init=inits.get(name, 0))
                 for name, field in data.Layout.cast(layout) if name not in skip)


def _rate_docs(whose: str) -> tuple[Register, Register]:
    return (
        Register("rate_period", RISK_CREDIT_BITS,
                 doc=f"{whose} token bucket: cycles per order, CARD_CLOCK_HZ // orders per "
                     f"second (host.model.risk.Bucket); 0 blocks every order"),
        Register("rate_cap", RISK_CREDIT_BITS,
                 doc=f"{whose} token bucket when full, in cycles: orders per second x "
                     f"rate_period"),
    )


def card_map(book: BookParams | None = None) -> Map:
    slots = (book or BookParams()).slots
    qty, px = RISK_QTY_BITS, RISK_PRICE_BITS
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
            Register("fcs_safe", 1, doc="1: an order waits for its frame's good FCS (FCS-safe "
                                        "mode); 0: cut-through"),
        ), doc="the card's own addresses and its wire mode"),
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
            *_rate_docs("the card-wide"),
            Register("reduce_only", 1, doc="1: only orders that reduce a position"),
            Register("kill", 1, immediate=True, doc="1: send no order at all (not staged)"),
        ), shadow=True,
            doc="card-wide risk limits (host.config.Limits); a commit (of this or of any "
                "triggers row) refills every token bucket"),
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
            *_rate_docs("this slot's"),
            Register("reduce_only", 1, doc="1: only orders that reduce this position"),
            Register("armed", 1, doc="1: the trigger may fire (ANDed into buy/sell_enable)"),
            Register("kill", 1, immediate=True, doc="1: no order for this slot (not staged)"),
        ), count=slots, shadow=True,
            doc="per watched slot: trigger and risk parameters (host.config.Instrument); a "
                "commit refills every token bucket"),
        Block("positions", (
            Register("position", RISK_POSITION_BITS, access="ro",
                     doc="shares held, signed (two's complement): fills and loads by host_op"),
            Register("open_buy", qty, access="ro", doc="shares of buy orders sent, not closed"),
            Register("open_sell", qty, access="ro",
                     doc="shares of sell orders sent, not closed"),
        ), count=slots, doc="the risk gate's positions and open orders, per slot"),
        Block("host_op", (
            Register("kind", 2, doc="0 release (open shares gone), 1 fill (open shares to the "
                                    "position), 2 load the position (hdl.formats.HostOpKind)"),
            Register("slot", 8),
            Register("side", 1, doc="0 buy, 1 sell"),
            Register("qty", qty, doc="shares; for kind 2 the position, two's complement"),
            Register("apply", access="wo",
                     doc="apply the op once; the gate takes it between orders (a few cycles)"),
        ), doc="the host's fills, releases and position loads (hdl.risk.HostOp)"),
        Block("tops", (
            Register("bid_px", px, access="ro"),
            Register("bid_qty", qty, access="ro"),
            Register("ask_px", px, access="ro"),
            Register("ask_qty", qty, access="ro"),
            Register("uncertain", 1, access="ro", doc="1: the book cannot vouch for its top"),
            Register("halted", 1, access="ro", doc="1: the trading state is not T"),
            Register("state", 8, access="ro", doc="ITCH trading state, ASCII"),
            Register("locate", 16, access="ro", doc="ITCH stock locate"),
        ), count=slots,
            doc="per slot: its last top-of-book update (a clear empties every slot's quote)"),
        Block("order", (
            *struct_registers(TemplateLayout, docs={
                "dst_mac": "next hop's MAC", "src_mac": "the card's MAC",
                "dst_ip": "the exchange's order entry address",
                "ttl": "IPv4 time to live",
                **{n: "OUCH field, ASCII" for n in ("time_in_force", "display", "capacity",
                                                    "intermarket_sweep", "cross_type")},
            }, inits={"ttl": 64, "time_in_force": ord("3"), "display": ord("Y"),
                      "capacity": ord("A"), "intermarket_sweep": ord("N"),
                      "cross_type": ord("N")}),
            Register("next_user_ref", 32, init=1,
                     doc="OUCH UserRefNum of the next order once written and committed "
                         "(strictly increasing per day); a commit without a write keeps the "
                         "count going"),
            Register("user_ref_next", 32, access="ro",
                     doc="the OUCH UserRefNum the card's next order takes: 1 after reset, one "
                         "more after each order frame started, next_user_ref once committed "
                         "(the host's proof of which numbers the card has used today)"),
        ), shadow=True,
            doc="the order frame template (hdl.formats.ORDER_TEMPLATE): Ethernet/IPv4/UDP "
                "headers, OUCH firm fields"),
        Block("risk", (
            Register("decisions", access="ro", count=len(Reject),
                     labels=tuple(r.name.lower() for r in Reject),
                     doc="risk gate verdicts by hdl.formats.Reject; [none] is orders sent"),
            Register("killed", access="ro",
                     doc="queued orders discarded by a kill switch (never sent)"),
            Register("trigger_overruns", access="ro",
                     doc="trigger fires lost while the gate was held up"),
            Register("tx_frames", access="ro", doc="frames the TX MAC sent"),
            Register("tx_underruns", access="ro", doc="TX frames cut short by a late byte"),
            Register("bad_frame_orders", access="ro",
                     doc="cut-through: orders sent from a frame that was then dropped"),
            Register("fcs_discarded", access="ro",
                     doc="FCS-safe: orders not sent because their frame was dropped"),
        ), doc="the order path's counters"),
        Block("latency", (
            Register("count", access="ro", doc="orders sampled"),
            Register("last", 16, access="ro", doc="cycles, the latest order"),
            Register("min", 16, access="ro", doc="cycles; 0xFFFF before the first sample"),
            Register("max", 16, access="ro", doc="cycles"),
            Register("bins", access="ro", count=LATENCY_BINS,
                     doc="samples by cycles; the last bin counts that many or more"),
        ), count=len(LATENCY_KINDS),
            doc="tick-to-trade latency in cycles (hdl.latency), by the triggering message: "
                "row 0 an add, row 1 a removal (hdl.formats.LATENCY_KINDS)"),
        Block("events", (
            Register("data", EVENT_BITS, access="ro", read_strobe=True,
                     doc="the oldest event (hdl.card.Event; kind 0 when empty); reading its "
                         "low word pops it, so read the words low first"),
            Register("level", 16, access="ro", doc="events waiting"),
            Register("overflow", access="ro", doc="events lost to a full FIFO"),
        ), doc="card-to-host event FIFO (hdl.card.Event; its layout is the JSON's \"event\")"),
    ], VERSION)


CARD_MAP = card_map()
