"""Throughput of the order-book reference model against two independent books, on one
million-message realistic day (`sim.market.market_stream`, fixed seed, the 8 default symbols
watched, 2 unwatched).

- our model: `host.model.itch.decode` + `host.model.book.BookModel.message` for every message
  (types without a body table are only skipped, as the card counts them), all 8 symbols
  watched: what `hostctl replay --engine model` does per message, minus the feed layers;
- itch-book 0.2.1: its C++ parser and books for every instrument, bbo table only
  (`sim.refbooks.itchbook_run`: `Session.feed` + `take_bbo`, BinaryFILE bytes prepared first);
- MeatPy 0.5.0: its ITCH 5.0 message parser and one pure-Python limit order book per
  instrument (`sim.refbooks.meatpy_run`), every instrument.

Messages per second by wall clock, each run timed alone with the heap left by the generator
frozen (so the garbage collector does not rescan a million message bytes objects on every
pass). `TICKNIC_BENCH_MESSAGES` shrinks the day for a quick look.
"""

import gc
import os
import time
from collections.abc import Callable, Sequence

import pytest

from hdl.formats import ITCH_BODIES
from host.model.book import BookModel
from host.model.itch import decode
from sim.market import MARKET_SYMBOLS, market_stream
from sim.refbooks import itchbook_run, meatpy_run

N = int(os.environ.get("TICKNIC_BENCH_MESSAGES", "1000000"))
SEED = 20240102


def model_seconds(messages: Sequence[bytes]) -> tuple[float, int]:
    """Seconds for decode + BookModel.message over `messages`, and the updates it made."""
    model = BookModel()
    for slot, symbol in enumerate(MARKET_SYMBOLS):
        model.watch(slot, symbol)
    decoded = frozenset(ord(k) for k in ITCH_BODIES)
    message = model.message
    updates = 0
    start = time.perf_counter()
    for index, m in enumerate(messages):
        if m[0] in decoded:
            msg = decode(m)
            msg["index"] = index
            if message(msg) is not None:
                updates += 1
    return time.perf_counter() - start, updates


def frozen(run: Callable[[], float]) -> float:
    gc.collect()
    gc.freeze()
    try:
        return run()
    finally:
        gc.unfreeze()


@pytest.mark.bench
def test_book_throughput(figure):
    start = time.perf_counter()
    messages = market_stream(SEED, N)
    gen = time.perf_counter() - start
    figure(f"book bench day: {N} messages from sim.market generated in {gen:.1f} s "
           f"({N / gen:.0f} messages/s)")

    updates = 0

    def ours() -> float:
        nonlocal updates
        seconds, updates = model_seconds(messages)
        return seconds

    model_s = frozen(ours)
    ib = itchbook_run(messages)
    mp = meatpy_run(messages)
    model_rate, ib_rate, mp_rate = N / model_s, N / ib.seconds, N / mp.seconds
    figure(f"book model throughput: {model_rate:.0f} messages/s (decode + BookModel.message, "
           f"{len(MARKET_SYMBOLS)} instruments watched, {updates} updates, {model_s:.2f} s)")
    figure(f"itch-book 0.2.1 throughput: {ib_rate:.0f} messages/s (C++ parse + books for all "
           f"instruments, bbo table: {ib.rows} rows, {ib.seconds:.3f} s); "
           f"model/itch-book = {model_rate / ib_rate:.4f}")
    figure(f"MeatPy 0.5.0 throughput: {mp_rate:.0f} messages/s (Python parse + one book per "
           f"instrument, {mp.seconds:.2f} s, {mp.rows} messages raised); "
           f"model/MeatPy = {model_rate / mp_rate:.2f}")
