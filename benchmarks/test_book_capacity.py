"""How many live orders the order table holds before an order finds no room (a measurement).

The table has 2 banks x `sets` x `ways` entries (16,384), but an order can only go into one of
its two sets (`hdl.formats.order_sets`, 2-left hashing), so on realistic references the table
refuses an order before every entry is used. A watched instrument's references are a sparse,
increasing subset of the day's (Nasdaq numbers every order of every instrument in one
sequence), so they are drawn here as increasing with random gaps. Measured on the model, which
places orders exactly as the gateware does (`tests/hdl/test_book*.py`):

- fill: adds only, until the first add finds both its sets full: the live orders then;
- churn: a steady state of L live orders (each add after the first L deletes a random live
  one), `ADDS` adds: how many found no room, for several L.

Dense references (0, 1, 2, ...) fill every entry exactly (`test_book_edges`).
"""

import os
import random
import statistics

import pytest

from hdl.formats import BookParams
from host.model.book import BookModel, symbol_code

SEEDS = range(3)
GAP = 40              # mean distance between references of the watched instruments
CHURN = (8_000, 10_000, 12_000, 14_000)
ADDS = int(os.environ.get("TICKNIC_BENCH_MESSAGES", "300000"))


def _book() -> BookModel:
    book = BookModel()
    book.watch(0, "AAPL")
    book.message({"type": "S", "event_code": ord("O")})
    return book


def _refs(rng: random.Random):
    ref = rng.getrandbits(30)
    while True:
        ref += 1 + int(rng.expovariate(1 / GAP))
        yield ref


def _add(book: BookModel, ref: int) -> None:
    book.message({"type": "A", "locate": 1, "order_ref": ref, "side": ord("B"), "shares": 1,
                  "stock": symbol_code("AAPL"), "price": 100 + ref % 50})


def fill(seed: int) -> int:
    book = _book()
    for ref in _refs(random.Random(seed)):
        _add(book, ref)
        if book.count["table_full"]:
            return book.live_orders()
    raise AssertionError


def churn(seed: int, live: int) -> int:
    rng, book, orders = random.Random(seed), _book(), []
    refs = _refs(rng)
    for i in range(live + ADDS):
        if i >= live:
            k = rng.randrange(len(orders))
            orders[k], orders[-1] = orders[-1], orders[k]
            book.message({"type": "D", "locate": 1, "order_ref": orders.pop()})
        ref = next(refs)
        full = book.count["table_full"]
        _add(book, ref)
        if book.count["table_full"] == full:
            orders.append(ref)
    return book.count["table_full"]


@pytest.mark.bench
def test_order_table_capacity(figure):
    p = BookParams()
    fills = [fill(seed) for seed in SEEDS]
    figure(f"order table (2 banks x {p.sets} sets x {p.ways} ways = {p.capacity}, 2-left): "
           f"first refusal at {min(fills)} / {statistics.median(fills):g} / {max(fills)} live "
           f"orders (min/median/max of {len(fills)} seeds, adds only, references {GAP} apart "
           f"on average) = {100 * statistics.median(fills) / p.capacity:.0f}% of the entries")
    for live in CHURN:
        full = churn(live, live)
        figure(f"order table at {live} live orders ({100 * live / p.capacity:.0f}%): {full} of "
               f"{ADDS} adds found no room ({full / ADDS * 1e6:.1f} per million)")
