"""The order book in Verilator on a million-message realistic day: gateware against model
(asserted: this is the `make bench` size of the make-test comparison) and the book update
latency (measured).

Latency is counted as DESIGN.md §2 counts tick-to-trade: from the cycle the causing message's
last byte is on the GMII pins (`rx_cycle`) to the cycle its top-of-book update is valid. One
`sim.market.market_stream` day (fixed seed) over the 8 watched instruments, at line rate in
frames of up to 24 messages, default capacities. Targets: A/F at most 4 cycles, E/C/X/D/U at
most 6. `TICKNIC_BENCH_MESSAGES` shrinks the day for a quick look.
"""

import os
import random
import statistics
import time

import pytest

from hdl.formats import BookParams
from sim.core_rtl import (
    BOOK_LATENCY_TARGETS,
    CoreRtl,
    book_schedule,
    run_book_model,
    update_latencies,
)
from sim.market import MARKET_SYMBOLS, market_stream

N = int(os.environ.get("TICKNIC_BENCH_MESSAGES", "1000000"))
SEED = 20261122


@pytest.mark.bench
def test_book_rtl_day(figure):
    t = time.monotonic()
    messages = market_stream(SEED, N)
    sched = book_schedule(messages, list(MARKET_SYMBOLS), rng=random.Random(SEED),
                          max_per_frame=24)
    gen = time.monotonic() - t
    rtl = CoreRtl.shared(BookParams()).run(sched)
    t = time.monotonic()
    model = run_book_model(sched, BookParams())
    model_s = time.monotonic() - t
    assert rtl.updates == model.updates
    assert rtl.book == model.book and rtl.counters == model.counters
    figure(f"book gateware vs model: {len(rtl.updates)} top-of-book updates identical over "
           f"{N} messages ({rtl.cycles / 1e6:.1f} M cycles; generated in {gen:.1f} s; "
           f"Verilator {rtl.seconds:.1f} s = {rtl.cycles / rtl.seconds / 1e6:.2f} M cycles/s, "
           f"feed + book models {model_s:.1f} s)")

    for group, lat in update_latencies(messages, rtl).items():
        worst, target = max(lat), BOOK_LATENCY_TARGETS[group]
        figure(f"book update latency {group}: min {min(lat)} / median "
               f"{statistics.median(lat):g} / max {worst} cycles over {len(lat)} updates "
               f"(target <= {target}: {'met' if worst <= target else 'MISSED'})")
