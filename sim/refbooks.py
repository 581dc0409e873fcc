"""Independent order books, run over the same ITCH 5.0 messages as ours: itch-book (C++ core,
the one our model is checked against row for row) and MeatPy (pure Python, timed only).

Neither shares a line of code or a reading of the spec with `host.model.book`, which is the
point: where they agree with our model on a long realistic stream (`sim.market`), the model
is right or all three are wrong the same way.

Facts about the pinned versions that these adapters rely on (measured, not documented):

- itch-book 0.2.1, `itch_book.Session(tables, depth, symbols)`: `feed` takes BinaryFILE bytes
  (u16 big-endian length + message, repeated) in chunks of any size and keeps its books and its
  message counter across calls; `symbols=[]` keeps every instrument. In the `bbo` table `seq` is
  the 1-based index of the message among *all* messages fed (types it does not decode, such as
  L or I, count too), prices are the raw ITCH integer (the float conversion lives in the Python
  `Feed` wrapper, not in `Session`), an empty side is price 0 and size 0, and a row is written
  whenever the best price or size of either side changes. It never clears its books on S
  messages; a U with zero shares or price removes the old order and rejects the new; an add onto
  a live reference evicts the old order; over-sized executes and cancels clamp.
- MeatPy 0.5.0 builds one book per instrument (`ITCH50MarketProcessor(symbol, date)`) and keeps
  the references of that instrument's adds; every message goes to every processor in its own
  usage, we route by stock locate instead (the same work per book, minus N-1 set lookups).
  Its book is lists scanned linearly, and it raises where a feed is merely unusual: a cancel
  of more than remains (`VolumeInconsistencyException`), an execute out of time priority
  (buffered, then `ExecutionPriorityExceptionList`), any message on an order that an execute
  emptied (it keeps the reference until a D). `meatpy_run` counts those and goes on.
"""

import datetime
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["itchbook_bbo", "itchbook_run", "meatpy_run", "binaryfile", "RefRun"]

# Messages per `Session.feed` call: bounds the BinaryFILE buffer and the pending bbo columns.
CHUNK = 100_000

BboRow = tuple[int, int, int, int, int, int]


def binaryfile(messages: Sequence[bytes]) -> bytes:
    """`messages` as a Nasdaq BinaryFILE: u16 big-endian length + message, repeated."""
    return b"".join(len(m).to_bytes(2, "big") + m for m in messages)


def _session() -> Any:
    import itch_book

    return itch_book.Session(["bbo"], 0, [])


def itchbook_bbo(messages: Sequence[bytes], locates: Iterable[int] | None = None,
                 chunk: int = CHUNK) -> list[BboRow]:
    """itch-book's top-of-book rows for `messages`: (msg, locate, bid_px, bid_qty, ask_px,
    ask_qty) as plain ints, `msg` the 0-based message index and prices ITCH integers, the same
    shape as `host.model.book.bbo_rows`; only instruments in `locates`, if given."""
    import numpy as np

    keep = None if locates is None else np.array(sorted(set(locates)), dtype=np.uint16)
    session = _session()
    rows: list[BboRow] = []
    for start in range(0, len(messages), chunk):
        session.feed(binaryfile(messages[start:start + chunk]))
        t = session.take_bbo()
        cols = [t["seq"].astype(np.int64) - 1, t["locate"], t["bid_px"], t["bid_sz"],
                t["ask_px"], t["ask_sz"]]
        if keep is not None:
            mask = np.isin(t["locate"], keep)
            cols = [c[mask] for c in cols]
        # tolist() turns numpy scalars into Python ints in one C loop.
        rows += zip(*(c.tolist() for c in cols), strict=True)
    stats = session.stats()
    if stats["pending_bytes"] or stats["messages"] != len(messages):
        raise ValueError(f"itch-book read {stats['messages']} of {len(messages)} messages "
                         f"({stats['pending_bytes']} bytes left over): not an ITCH 5.0 stream")
    return rows


@dataclass
class RefRun:
    messages: int
    seconds: float          # the book's own work only (see each runner)
    rows: int               # itch-book: bbo rows; MeatPy: messages that raised
    stats: dict[str, object]
    books: dict[int, Any] = field(default_factory=dict)    # MeatPy: locate -> its processor


def itchbook_run(messages: Sequence[bytes], chunk: int = CHUNK) -> RefRun:
    """itch-book over `messages`, bbo table only, for timing: the BinaryFILE chunks are built
    first and only `feed` + `take_bbo` are inside the clock (the parse, the books and the bbo
    columns; no conversion to Python rows)."""
    bufs = [binaryfile(messages[i:i + chunk]) for i in range(0, len(messages), chunk)]
    session = _session()
    rows = 0
    start = time.perf_counter()
    for buf in bufs:
        session.feed(buf)
        rows += len(session.take_bbo()["seq"])
    seconds = time.perf_counter() - start
    return RefRun(len(messages), seconds, rows, session.stats())


def meatpy_run(messages: Sequence[bytes], locates: Iterable[int] | None = None) -> RefRun:
    """MeatPy 0.5.0 over `messages`: its ITCH 5.0 message parser (`from_bytes`, as its file
    reader calls it) and one `ITCH50MarketProcessor` limit order book per instrument of the
    stock directory (or only those with a locate in `locates`). Everything is inside the clock
    except reading the directory; `rows` counts the messages MeatPy raised on, `books` holds
    the processors (`.current_lob`) as the day left them."""
    from meatpy.itch50 import ITCH50MarketProcessor, StockDirectoryMessage, SystemEventMessage
    from meatpy.itch50.itch50_market_message import ITCH50MarketMessage

    from_bytes = ITCH50MarketMessage.from_bytes
    wanted = None if locates is None else set(locates)
    day = datetime.datetime(2024, 1, 2)
    books: dict[int, ITCH50MarketProcessor] = {}
    for m in messages:
        if m[:1] == b"R":
            r = from_bytes(m)
            assert isinstance(r, StockDirectoryMessage)
            if wanted is None or r.stock_locate in wanted:
                books[r.stock_locate] = ITCH50MarketProcessor(r.stock.decode().rstrip(), day)
    every = list(books.values())
    errors = 0
    start = time.perf_counter()
    for m in messages:
        msg = from_bytes(m)
        if isinstance(msg, SystemEventMessage):
            targets = every
        else:
            book = books.get(msg.stock_locate)
            if book is None:
                continue
            targets = [book]
        for book in targets:
            try:
                book.process_message(msg)
            except Exception:  # noqa: BLE001 - MeatPy raises plain Exception for feed quirks
                errors += 1
    seconds = time.perf_counter() - start
    return RefRun(len(messages), seconds, errors, {"books": len(books)}, books)
