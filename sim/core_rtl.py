"""The core (feed handler, order book, order path) in Verilator, and the models it is compared
with.

Both engines run a `sim.feed_rtl.Schedule` whose `watch` list is the book's watchlist and give a
`BookOutcome`: the top-of-book updates, the feed and book counters, and with a strategy and
limits file (`host.config.CardConfig`, whose instruments must be the watchlist) an
`OrderOutcome`: the orders sent, the risk counters and the order frames as they went on the
wire. The model chain is the feed model's messages, verdicts and gaps fed to the book model in
the order the gateware sees them (a frame's messages, then its verdict and gap), and the book's
updates to `host.model.orders.OrderFlow`; its frames are `host.model.order_frame`'s with their
FCS.
"""

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amaranth.lib import data

from hdl.book import TopUpdate as TopUpdateLayout
from hdl.book import WatchWrite
from hdl.core import Core
from hdl.core import SentOrder as SentLayout
from hdl.formats import BOOK_BUY, BOOK_COUNTERS, ETH_PREAMBLE_LEN, BookParams, Drop, Reject
from hdl.itch import REF_AT
from hdl.risk import CardLimits, SlotLimits
from hdl.trigger import Intent, TriggerConfig
from host.config import CardConfig
from host.model import pack
from host.model.book import BookModel, TopUpdate, symbol_code
from host.model.feed import FeedModel, Subscription
from host.model.order_frame import DEFAULT_TEMPLATE, OrderTemplate, order_frame, template_bits
from host.model.orders import OrderFlow, SentOrder, fcs_mode
from host.model.ouch import decode_enter_order
from sim.feed_rtl import Schedule, decode_counters, stimulus, unpack
from sim.tick import card_limits, slot_limit_rows, trigger_rows
from sim.traffic import Feed
from sim.verilated import Stimulus, Verilated

__all__ = ["BookOutcome", "OrderOutcome", "run_book_model", "CoreRtl", "decode_update",
           "book_schedule", "wire_frames", "BOOK_LATENCY_TARGETS", "BOOK_LATENCY",
           "update_latencies"]

# The order book issue's targets, in cycles from a message's last byte on the GMII pins to its
# top-of-book update, by group of message types (the E/C/X target is X's and E/C's).
# D is its own group: its reference is its last field, so it alone waits for its lookup; X's is
# 4 bytes before its end, one cycle less than its lookup takes.
BOOK_LATENCY_TARGETS = {"A/F": 4, "E/C": 6, "X": 6, "D": 6, "U": 6, "H": 4}
# What `hdl.book` does, by its stage table: every update of a group takes exactly this long.
# U and D miss their target, for the clock (docs/book-timing.md): U's add scans the side its
# removal left, and the edit runs a cycle after its decision; D's lookup, which it alone waits
# for, has a cycle for the address to reach each block RAM's own copy and one for the entries
# to leave the block RAMs' registers (`hdl.ebr`).
BOOK_LATENCY = {"A/F": 3, "E/C": 5, "X": 6, "D": 8, "U": 7, "H": 3}
_GROUP = {"A": "A/F", "F": "A/F", "E": "E/C", "C": "E/C", "X": "X", "D": "D", "U": "U",
          "H": "H"}


@dataclass
class OrderOutcome:
    sent: list[SentOrder]
    counters: dict[str, object]       # "orders" and "rejects", as counters.json has them
    frames: list[bytes]               # each order frame as on the wire, FCS included
    latency: list[tuple[bool, int]] = field(default_factory=list)   # (add?, cycles) (rtl)
    started: list[int] = field(default_factory=list)    # cycle each frame started (rtl)


@dataclass
class BookOutcome:
    updates: list[TopUpdate]
    counters: dict[str, Any]          # the feed handler's, as counters.json has them
    book: dict[str, int]              # the book's, by BOOK_COUNTERS name
    cycles: int = 0
    seconds: float = 0.0
    update_at: list[int] = field(default_factory=list)    # cycle each update was valid (rtl)
    orders: OrderOutcome | None = None


def update_latencies(messages: Sequence[bytes], outcome: BookOutcome) -> dict[str, list[int]]:
    """The gateware's update latencies by group (`BOOK_LATENCY_TARGETS`), in cycles;
    `messages` are the ITCH messages the schedule carried, in order."""
    by_group: dict[str, list[int]] = {}
    for u, at in zip(outcome.updates, outcome.update_at, strict=True):
        if not u.clear:
            by_group.setdefault(_GROUP[chr(messages[u.index][0])], []).append(at - u.rx_cycle)
    return by_group


def book_schedule(messages: Sequence[bytes], watch: Sequence[str | None], *,
                  rng: random.Random | None = None, max_per_frame: int = 16,
                  bad_fcs: float = 0.0, gaps: float = 0.0, truncate: float = 0.0) -> Schedule:
    """`messages` on one MoldUDP64 feed, subscribed in row 0, in frames of 1..`max_per_frame`
    messages (all `max_per_frame` without `rng`) at the minimum inter-frame gap. With `rng`,
    a fraction `bad_fcs` of the frames get a corrupt FCS (dropped after their messages went
    through: cut-through), and before a fraction `gaps` of them a few sequence numbers are
    skipped (a gap the card reports). A fraction `truncate` of them stop on the wire inside
    one of their messages (the rest of the frame, and its FCS, never come); half of those cuts
    fall within a byte of an A or F's reference's last byte, where the book starts that
    order's lookup (`hdl.itch.REF_AT`)."""
    feed, sched = Feed(), Schedule(watch=list(watch))
    sched.subscriptions[0] = Subscription(feed.group, feed.port, feed.session)
    pos = 0
    while pos < len(messages):
        n = rng.randint(1, max_per_frame) if rng else max_per_frame
        n = min(n, len(messages) - pos)
        while sum(2 + len(m) for m in messages[pos:pos + n]) > pack.MOLD_MAX_BLOCKS:
            n -= 1
        if rng and rng.random() < gaps:
            feed.seq += rng.randint(1, 3)
        frame = feed.frame(messages[pos:pos + n])
        pos += n
        if rng and truncate and rng.random() < truncate:   # (no draw: other days unchanged)
            sched.add_frame(_cut(rng, frame, messages[pos - n:pos]), fcs=False)
        elif rng and rng.random() < bad_fcs:
            fcs = bytearray(pack.fcs(frame))
            fcs[0] ^= 0xFF
            sched.add_frame(frame + bytes(fcs), fcs=False)
        else:
            sched.add_frame(frame)
    return sched


def _cut(rng: random.Random, frame: bytes, messages: Sequence[bytes]) -> bytes:
    """`frame` (of `messages`, without FCS) cut inside one of its messages."""
    starts, at = [], len(frame) - sum(2 + len(m) for m in messages)
    for m in messages:
        starts.append(at + 2)               # the message's type byte, after its length
        at += 2 + len(m)
    adds = [i for i, m in enumerate(messages) if m[:1] in (b"A", b"F")]
    if adds and rng.random() < 0.5:
        # Its last byte delivered at REF_AT - 2, - 1 (the decoder left at REF_AT, where
        # `early_af` fires) or REF_AT.
        return frame[:starts[rng.choice(adds)] + REF_AT + rng.randint(-1, 1)]
    i = rng.randrange(len(messages))
    return frame[:starts[i] + rng.randrange(len(messages[i]))]


def _check_config(schedule: Schedule, config: CardConfig | None) -> None:
    if config is not None and [i.symbol for i in config.instruments] != schedule.watch:
        raise ValueError("the config's instruments must be the schedule's watchlist, in order")


def run_book_model(schedule: Schedule, params: BookParams | None = None,
                   config: CardConfig | None = None,
                   template: OrderTemplate = DEFAULT_TEMPLATE,
                   fcs_safe: bool = False) -> BookOutcome:
    _check_config(schedule, config)
    feed = FeedModel(schedule.own_mac, [
        Subscription(s.group, s.port, s.session, s.next_seq) if s else None
        for s in schedule.subscriptions])
    book = BookModel(params)
    for slot, symbol in enumerate(schedule.watch):
        book.watch(slot, symbol)
    updates = []
    bad: set[int] = set()               # messages of frames dropped after they went through
    for burst, start in zip(schedule.bursts, schedule.start_cycles(), strict=True):
        for index, sub in burst.writes:
            feed.subscribe(index, None if sub is None else Subscription(
                sub.group, sub.port, sub.session, sub.next_seq))
        r = feed.receive(burst.data, burst.error_at, start)
        for msg in r.messages:
            u = book.message(msg)
            if u is not None:
                updates.append(u)
        book.verdict(r.drop)
        if r.drop is not Drop.NONE:
            bad.update(msg["index"] for msg in r.messages)
        if r.gap:
            book.gap()
    outcome = BookOutcome(updates, feed.counters(), book.counters())
    if config is not None:
        flow = OrderFlow(config, template)
        sent, fcs = fcs_mode([o for u in updates for o in flow.update(u)], bad, fcs_safe,
                             template)
        frames = [pack.with_fcs(order_frame(template, o.user_ref, o.side, o.qty, o.symbol,
                                            o.price)) for o in sent]
        counters = {**flow.counters(), "orders": len(sent), **fcs}
        outcome.orders = OrderOutcome(sent, counters, frames)
    return outcome


def wire_frames(tx: list[tuple[int, int]]) -> list[bytes]:
    """GMII TX bytes (cycle, txd) recorded while TX_EN was high as frames: a frame is a run of
    consecutive cycles; its preamble and SFD are checked and stripped, its FCS kept."""
    frames: list[bytes] = []
    run: list[int] = []
    last = None
    for cycle, byte in [*tx, (None, None)]:
        if run and (cycle is None or cycle != last + 1):
            head = bytes(run[:ETH_PREAMBLE_LEN + 1])
            if head != pack.gmii(b"")[:ETH_PREAMBLE_LEN + 1]:
                raise ValueError(f"a TX frame starts with {head.hex()}, not preamble and SFD")
            frames.append(bytes(run[ETH_PREAMBLE_LEN + 1:]))
            run = []
        if cycle is not None:
            run.append(byte)
            last = cycle
    return frames


def decode_update(value: int) -> TopUpdate:
    f = unpack(TopUpdateLayout, value)
    return TopUpdate(f["slot"], f["locate"], f["bid_px"], f["bid_qty"], f["ask_px"],
                     f["ask_qty"], bool(f["uncertain"]), bool(f["halted"]), chr(f["state"]),
                     f["index"], f["rx_cycle"], bool(f["clear"]))


class CoreRtl:
    """Builds (once per parameter set, cached on disk) and runs `hdl.core.Core` in Verilator."""

    @staticmethod
    @functools.cache
    def shared(params: BookParams | None = None) -> "CoreRtl":
        return CoreRtl(params)

    def __init__(self, params: BookParams | None = None,
                 build_dir: Path = Path("build/verilated")) -> None:
        self.params = params or BookParams()
        p = self.params
        name = f"core_w{p.slots}_s{p.sets}_k{p.ways}_l{p.levels}"
        self.sim = Verilated(Core(self.params), name=name,
                             gmii=("gmii__rxd", "gmii__rx_dv", "gmii__rx_er"),
                             streams=("update", "decision", "sent",
                                      ("tx", "gmii_tx__tx_en", "gmii_tx__txd")),
                             build_dir=build_dir)

    def configure(self, st: Stimulus, config: CardConfig, template: OrderTemplate) -> None:
        """The strategy, limits and order template into the core's configuration inputs, and
        `limits_load` raised to fill the token buckets: the caller lowers it after a cycle (it
        takes no cycle of its own, so the models' cycle stamps stay those of the schedule)."""
        W = self.params.slots

        def array(layout: Any, rows: list[dict[str, Any]]) -> int:
            return int(data.ArrayLayout(layout, W).const(rows).as_value().value)

        st.set("triggers", array(TriggerConfig, trigger_rows(config, W)))
        st.set("slot_limits", array(SlotLimits, slot_limit_rows(config, W)))
        st.set("card_limits", CardLimits.const(card_limits(config)).as_value().value)
        st.set("order_template", template_bits(template))
        st.set("limits_load", 1)

    def run(self, schedule: Schedule, config: CardConfig | None = None,
            template: OrderTemplate = DEFAULT_TEMPLATE,
            at: Sequence[tuple[int, str, int]] = (), fcs_safe: bool = False) -> BookOutcome:
        """Run `schedule` (and with `config` the order path); `at` sets input ports at given
        cycles, e.g. (cycle, "kill_card", 1)."""
        if len(schedule.watch) > self.params.slots:
            raise ValueError(f"the watchlist has {self.params.slots} slots, "
                             f"not {len(schedule.watch)}")
        _check_config(schedule, config)

        def watch(st: Stimulus, slot: int, symbol: str | None) -> None:
            row = {"slot": slot} if symbol is None else {
                "slot": slot, "symbol": symbol_code(symbol), "enable": 1}
            st.set("watch_write__payload", WatchWrite.const(row).as_value().value)
            st.pulse("watch_write__valid")

        def setup(st: Stimulus, slot: int, symbol: str | None) -> None:
            if config is not None and slot == 0:
                self.configure(st, config, template)
                st.set("fcs_safe", int(fcs_safe))
            watch(st, slot, symbol)
            if config is not None and slot == 0:
                st.set("limits_load", 0)

        st = stimulus(schedule, setup, at)
        # An order frame takes ~125 cycles of line; leave time for the queue to empty.
        r = self.sim.run(st, drain=64 if config is None else 64 + 130 * 16)
        words = r.final["book_counters"]
        book = {name: (words >> (32 * i)) & 0xFFFFFFFF for i, name in enumerate(BOOK_COUNTERS)}
        outcome = BookOutcome([decode_update(v) for _, v in r.events["update"]],
                              decode_counters(r.final), book, r.cycles, r.seconds,
                              [cycle for cycle, _ in r.events["update"]])
        if config is not None:
            outcome.orders = self._orders(r, config)
        return outcome

    def _orders(self, r: Any, config: CardConfig) -> OrderOutcome:
        frames = wire_frames(r.events["tx"])
        sent = []
        latency = []
        started = []
        for (_, value), frame in zip(r.events["sent"], frames, strict=False):
            f = unpack(SentLayout, value)
            it = unpack(Intent, f["intent"])
            msg = pack.payload_of(frame[:-4])
            assert msg is not None, "an order frame without a UDP payload"
            fields, _ = decode_enter_order(msg[3:])
            sent.append(SentOrder(it["index"], it["slot"], config.instruments[it["slot"]].symbol,
                                  "B" if it["side"] == BOOK_BUY else "S", it["qty"], it["price"],
                                  fields["user_ref"], msg[3:]))
            latency.append((bool(it["add"]), f["tx_cycle"] - it["rx_cycle"]))
            started.append(f["tx_cycle"])
        if len(r.events["sent"]) != len(frames):
            raise RuntimeError(f"{len(r.events['sent'])} orders started but {len(frames)} "
                               f"frames went out (a longer drain?)")
        words = r.final["risk_counters"]
        count = {reason: (words >> (32 * reason)) & 0xFFFFFFFF for reason in Reject}
        counters = {"orders": len(frames),
                    "rejects": {k.name.lower(): v for k, v in count.items()
                                if k is not Reject.NONE and v},
                    "bad_frame_orders": r.final["bad_frame_orders"],
                    "fcs_discarded": r.final["fcs_discarded"]}
        return OrderOutcome(sent, counters, frames, latency, started)
