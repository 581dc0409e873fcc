"""The core (feed handler + order book) in Verilator, and the models it is compared with.

Both engines run a `sim.feed_rtl.Schedule` whose `watch` list is the book's watchlist and give a
`BookOutcome`: the top-of-book updates, the feed and book counters. The model chain is the
feed model's messages, verdicts and gaps fed to the book model in the order the gateware sees
them (a frame's messages, then its verdict and gap).
"""

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdl.book import TopUpdate as TopUpdateLayout
from hdl.book import WatchWrite
from hdl.core import Core
from hdl.formats import BOOK_COUNTERS, BookParams
from host.model import pack
from host.model.book import BookModel, TopUpdate, symbol_code
from host.model.feed import FeedModel, Subscription
from sim.feed_rtl import Schedule, decode_counters, stimulus, unpack
from sim.traffic import Feed
from sim.verilated import Stimulus, Verilated

__all__ = ["BookOutcome", "run_book_model", "CoreRtl", "decode_update", "book_schedule"]


@dataclass
class BookOutcome:
    updates: list[TopUpdate]
    counters: dict[str, Any]          # the feed handler's, as counters.json has them
    book: dict[str, int]              # the book's, by BOOK_COUNTERS name
    cycles: int = 0
    seconds: float = 0.0
    update_at: list[int] = field(default_factory=list)    # cycle each update was valid (rtl)


def book_schedule(messages: Sequence[bytes], watch: Sequence[str | None], *,
                  rng: random.Random | None = None, max_per_frame: int = 16,
                  bad_fcs: float = 0.0, gaps: float = 0.0) -> Schedule:
    """`messages` on one MoldUDP64 feed, subscribed in row 0, in frames of 1..`max_per_frame`
    messages (all `max_per_frame` without `rng`) at the minimum inter-frame gap. With `rng`,
    a fraction `bad_fcs` of the frames get a corrupt FCS (dropped after their messages went
    through: cut-through), and before a fraction `gaps` of them a few sequence numbers are
    skipped (a gap the card reports)."""
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
        if rng and rng.random() < bad_fcs:
            fcs = bytearray(pack.fcs(frame))
            fcs[0] ^= 0xFF
            sched.add_frame(frame + bytes(fcs), fcs=False)
        else:
            sched.add_frame(frame)
    return sched


def run_book_model(schedule: Schedule, params: BookParams | None = None) -> BookOutcome:
    feed = FeedModel(schedule.own_mac, [
        Subscription(s.group, s.port, s.session, s.next_seq) if s else None
        for s in schedule.subscriptions])
    book = BookModel(params)
    for slot, symbol in enumerate(schedule.watch):
        book.watch(slot, symbol)
    updates = []
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
        if r.gap:
            book.gap()
    return BookOutcome(updates, feed.counters(), book.counters())


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
                             streams=("update",), build_dir=build_dir)

    def run(self, schedule: Schedule) -> BookOutcome:
        if len(schedule.watch) > self.params.slots:
            raise ValueError(f"the watchlist has {self.params.slots} slots, "
                             f"not {len(schedule.watch)}")

        def watch(st: Stimulus, slot: int, symbol: str | None) -> None:
            row = {"slot": slot} if symbol is None else {
                "slot": slot, "symbol": symbol_code(symbol), "enable": 1}
            st.set("watch_write__payload", WatchWrite.const(row).as_value().value)
            st.pulse("watch_write__valid")

        r = self.sim.run(stimulus(schedule, watch), drain=64)
        words = r.final["book_counters"]
        book = {name: (words >> (32 * i)) & 0xFFFFFFFF for i, name in enumerate(BOOK_COUNTERS)}
        return BookOutcome([decode_update(v) for _, v in r.events["update"]],
                           decode_counters(r.final), book, r.cycles, r.seconds,
                           [cycle for cycle, _ in r.events["update"]])
