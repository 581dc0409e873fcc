"""The whole core in Verilator, market data in at the GMII pins to order frames out at the GMII
TX pins, against the models: the same orders in the same order, every frame byte for byte (FCS
included), the same risk counters; and the measured tick-to-trade latency of every order."""

import random
import statistics

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hdl.formats import BookParams
from sim.core_rtl import CoreRtl, book_schedule, run_book_model
from sim.market import MARKET_SYMBOLS, market_stream
from sim.tick import touch_config


def test_orders_from_a_market_day_byte_for_byte():
    rng = random.Random(5)
    symbols = MARKET_SYMBOLS
    sched = book_schedule(market_stream(5, 30_000), list(symbols), rng=rng, max_per_frame=16)
    params = BookParams()
    config = touch_config(run_book_model(sched, params).updates, symbols, rng, rate=40)
    model = run_book_model(sched, params, config)
    rtl = CoreRtl.shared(params).run(sched, config)
    assert rtl.updates == model.updates
    want, got = model.orders, rtl.orders
    assert want is not None and got is not None
    assert got.sent == want.sent
    assert got.frames == want.frames
    assert got.counters == want.counters
    # The flow exercised the gate: orders went out and several reasons refused others.
    assert len(want.sent) >= 20, want.counters
    assert len(want.counters["rejects"]) >= 3, want.counters
    for kind, add in (("add", True), ("removal", False)):
        cycles = [c for a, c in got.latency if a == add]
        if cycles:
            print(f"{kind}-triggered tick-to-trade cycles: min {min(cycles)} median "
                  f"{statistics.median(cycles)} max {max(cycles)} ({len(cycles)} orders)")
    print(want.counters)


@pytest.fixture(scope="module")
def small_day():
    rng = random.Random(9)
    sched = book_schedule(market_stream(9, 6_000), list(MARKET_SYMBOLS), rng=rng,
                          max_per_frame=16)
    params = BookParams()
    config = touch_config(run_book_model(sched, params).updates, MARKET_SYMBOLS, rng,
                          rate=1000)
    free = CoreRtl.shared(params).run(sched, config)
    assert free.orders is not None and len(free.orders.sent) >= 10
    return sched, config, free


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_kill_switch_stops_order_frames_at_once(small_day, data):
    """The card-wide kill switch set in cycle K (around an order's start): no order frame
    starts on the TX stream in or after K (its preamble is on the pins K at the latest), the
    orders before K are those of the run without the kill, and the queue is emptied."""
    sched, config, free = small_day
    starts = free.orders.started
    i = data.draw(st.integers(0, len(starts) - 1))
    kill = starts[i] + data.draw(st.integers(-3, 3))
    run = CoreRtl.shared(BookParams()).run(sched, config, at=[(kill, "kill_card", 1)])
    assert run.orders is not None
    assert all(t < kill for t in run.orders.started)
    before = [o for o, t in zip(free.orders.sent, starts, strict=True) if t < kill]
    assert run.orders.sent == before
