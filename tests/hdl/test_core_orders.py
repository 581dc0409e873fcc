"""The whole core in Verilator, market data in at the GMII pins to order frames out at the GMII
TX pins, against the models: the same orders in the same order, every frame byte for byte (FCS
included), the same risk counters; and the measured tick-to-trade latency of every order."""

import random
import statistics

from hdl.formats import BookParams
from host.config import CardConfig, Instrument, Limits
from host.model.book import TopUpdate
from sim.core_rtl import CoreRtl, book_schedule, run_book_model
from sim.market import MARKET_SYMBOLS, market_stream


def config_for(updates: list[TopUpdate], symbols: tuple[str, ...], rng: random.Random,
               rate: int) -> CardConfig:
    """Thresholds at each instrument's median touch, so the triggers fire often both ways, and
    limits that refuse some of them for every reason a replay can show."""
    instruments = []
    for slot, symbol in enumerate(symbols):
        asks = sorted(u.ask_px for u in updates if u.slot == slot and u.ask_px)
        bids = sorted(u.bid_px for u in updates if u.slot == slot and u.bid_px)
        ask, bid = asks[len(asks) // 2], bids[len(bids) // 2]
        instruments.append(Instrument(
            symbol, min_qty=rng.choice([0, 100]), order_qty=rng.choice([100, 300, 1000]),
            max_position=rng.choice([500, 5000]), reference_px=(ask + bid) // 2,
            collar=max(1, (ask - bid) * rng.choice([1, 4])), buy_below=ask, sell_above=bid,
            max_orders_per_second=rng.choice([None, 4])))
    return CardConfig(Limits(max_order_qty=800, max_order_notional=2_000_000_000,
                             max_orders_per_second=rate), tuple(instruments))


def test_orders_from_a_market_day_byte_for_byte():
    rng = random.Random(5)
    symbols = MARKET_SYMBOLS
    sched = book_schedule(market_stream(5, 30_000), list(symbols), rng=rng, max_per_frame=16)
    params = BookParams()
    config = config_for(run_book_model(sched, params).updates, symbols, rng, rate=40)
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
