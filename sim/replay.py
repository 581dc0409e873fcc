"""`hostctl replay`: a capture through the model or the gateware, results into a folder.

The capture's frames are sent back to back at the minimum inter-frame gap, as fast as a 1 Gb/s
link can carry them. The card subscribes to every multicast group:port the capture carries
MoldUDP64 on (the first N_SUBSCRIPTIONS, in order of appearance), with the session of its first
packet and next_seq 0 (synchronise on the first packet), unless `feeds` names them: then a feed
without a session takes it from the capture's first packet to that group:port.
Writes DIR/counters.json (DESIGN.md §4). With a watchlist the order book runs too (the core:
feed handler + book) and DIR/bbo.csv is written, and the book's counters join counters.json
under "book". With a strategy and limits file (`host.config`) its instruments are the
watchlist, the order path runs on the book's updates (the models' `host.model.orders`, or the
core's triggers, risk gate and order builder, whose frames on the TX pins give the orders),
DIR/orders.csv is written and counters.json gains "orders" and "rejects".
"""

import ipaddress
import json
from pathlib import Path
from typing import Literal

from hdl.formats import MOLD_HEADER_LEN, N_SUBSCRIPTIONS, SESSION_LEN, BookParams
from host.capture import read_capture
from host.config import CardConfig
from host.model.book import bbo_csv
from host.model.feed import Subscription
from host.model.orders import orders_csv
from host.model.pack import udp_endpoint
from sim.core_rtl import BookOutcome, run_book_model
from sim.feed_rtl import Outcome, Schedule, run_model

__all__ = ["Engine", "discover_feeds", "replay"]

Engine = Literal["model", "rtl"]


def discover_feeds(frames: list[bytes]) -> list[Subscription]:
    """The MoldUDP64 streams on multicast groups in `frames`, first seen first."""
    feeds: dict[tuple[int, int], Subscription] = {}
    for frame in frames:
        endpoint = udp_endpoint(frame)
        if endpoint is None:
            continue
        group, port, payload = endpoint
        is_multicast = group >> 28 == 0xE      # 224.0.0.0/4
        if is_multicast and len(payload) >= MOLD_HEADER_LEN and (group, port) not in feeds:
            feeds[(group, port)] = Subscription(group, port, payload[:SESSION_LEN])
            if len(feeds) == N_SUBSCRIPTIONS:
                break
    return list(feeds.values())


Feed = tuple[int, int, bytes | None]     # group, port, session (None: from the capture)


def replay(capture: Path, out: Path, engine: Engine = "model",
           feeds: list[Feed] | None = None, watch: list[str] | None = None,
           config: CardConfig | None = None, fcs_safe: bool = False) -> Outcome | BookOutcome:
    """Replay `capture` and write `out`/counters.json (and bbo.csv if `watch` names symbols;
    and orders.csv with a `config`). Raises ValueError for a bad capture, a feed whose session
    cannot be found, a watchlist the book cannot take or a combination not built yet."""
    params = BookParams()
    if config is not None:
        if watch is not None:
            raise ValueError("--watch and --config both name the watchlist: give one (a "
                             "config's [[instrument]] tables are its watchlist)")
        watch = [i.symbol for i in config.instruments]
    if watch is not None and len(watch) > params.slots:
        raise ValueError(f"--watch takes at most {params.slots} symbols, not {len(watch)}")
    frames = read_capture(capture).as_frames()
    schedule = Schedule(watch=list(watch or []))
    for i, sub in enumerate(discover_feeds(frames) if feeds is None
                            else [_subscription(frames, *f) for f in feeds]):
        schedule.subscriptions[i] = sub
    for frame in frames:
        schedule.add_frame(frame)
    out.mkdir(parents=True, exist_ok=True)
    if watch or config is not None:       # a config with no instrument still writes orders.csv
        if engine == "rtl":
            from sim.core_rtl import CoreRtl  # builds the Verilator model on first use
            book = CoreRtl.shared(params).run(schedule, config, fcs_safe=fcs_safe)
        else:
            book = run_book_model(schedule, params, config, fcs_safe=fcs_safe)
        (out / "bbo.csv").write_text(bbo_csv(book.updates, watch))
        counters = {**book.counters, "book": book.book}
        if book.orders is not None:
            (out / "orders.csv").write_text(orders_csv(book.orders.sent))
            counters |= book.orders.counters
        (out / "counters.json").write_text(json.dumps(counters, indent=2) + "\n")
        return book
    if engine == "rtl":
        from sim.feed_rtl import FeedRtl  # builds the Verilator model on first use
        outcome = FeedRtl.shared().run(schedule)
    else:
        outcome = run_model(schedule)
    (out / "counters.json").write_text(json.dumps(outcome.counters, indent=2) + "\n")
    return outcome


def _subscription(frames: list[bytes], group: int, port: int, session: bytes | None
                  ) -> Subscription:
    if session is None:
        session = next((p[:SESSION_LEN] for f in frames
                        if (e := udp_endpoint(f)) and e[:2] == (group, port)
                        and len(p := e[2]) >= MOLD_HEADER_LEN), None)
        if session is None:
            raise ValueError(
                f"no MoldUDP64 packet to {ipaddress.IPv4Address(group)}:{port} in the capture "
                f"to take the session from; give it as GROUP:PORT:SESSION")
    return Subscription(group, port, session)
