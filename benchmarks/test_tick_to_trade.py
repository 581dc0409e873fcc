"""Tick-to-trade in Verilator on a million-message realistic day: the whole core, market data in
at the GMII RX pins, order frames out at the GMII TX pins, gateware against models (asserted)
and the latency of every order (measured).

Latency is DESIGN.md §2's: from the cycle the triggering message's last byte is on the GMII RX
pins to the cycle the order frame's first byte is presented on the TX stream (taken by the TX
MAC; its first preamble byte is on the TX pins one cycle later). Orders queue behind each other
on the line (a frame takes 125 cycles of it), so the minimum is the card's own latency and the
maximum includes waiting for the line. Targets: add-triggered at most 4 (goal 3), removal-
triggered at most 8. `TICKNIC_BENCH_MESSAGES` shrinks the day for a quick look.
"""

import os
import random
import statistics

import pytest

from hdl.formats import CARD_CLOCK_HZ, BookParams
from sim.core_rtl import CoreRtl, book_schedule, run_book_model
from sim.market import MARKET_SYMBOLS, market_stream
from sim.tick import touch_config

N = int(os.environ.get("TICKNIC_BENCH_MESSAGES", "1000000"))
SEED = 20261123
TARGETS = {"add": 4, "removal": 8}


@pytest.mark.bench
def test_tick_to_trade_day(figure):
    rng = random.Random(SEED)
    sched = book_schedule(market_stream(SEED, N), list(MARKET_SYMBOLS), rng=rng,
                          max_per_frame=24)
    params = BookParams()
    config = touch_config(run_book_model(sched, params).updates, MARKET_SYMBOLS, rng,
                          rate=5000)
    model = run_book_model(sched, params, config)
    rtl = CoreRtl.shared(params).run(sched, config)
    assert rtl.orders is not None and model.orders is not None
    assert rtl.orders.sent == model.orders.sent and rtl.orders.frames == model.orders.frames
    assert rtl.orders.counters == model.orders.counters
    figure(f"tick-to-trade gateware vs model: {len(rtl.orders.sent)} orders identical, frame "
           f"for frame, over {N} messages; refused: {rtl.orders.counters['rejects']}")
    ns = 1e9 / CARD_CLOCK_HZ
    for kind, add in (("add", True), ("removal", False)):
        lat = [c for a, c in rtl.orders.latency if a == add]
        if not lat:
            continue
        best, target = min(lat), TARGETS[kind]
        verdict = "met" if best <= target else "MISSED"
        figure(f"tick-to-trade {kind}-triggered: min {best} / median {statistics.median(lat):g}"
               f" / max {max(lat)} cycles over {len(lat)} orders = {best * ns:.0f} / "
               f"{statistics.median(lat) * ns:.0f} / {max(lat) * ns:.0f} ns at 125 MHz (the "
               f"clock the core is built for; its Fmax is not met yet) (target <= {target} "
               f"cycles, for an order that finds the line free: {verdict})")
