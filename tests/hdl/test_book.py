"""The order book gateware (in the core, behind the feed handler, in Verilator) against the
model: the same top-of-book updates, field for field and cycle stamp for cycle stamp, and the
same counters."""

import random

import pytest

from hdl.formats import BookParams
from sim.core_rtl import (
    BOOK_LATENCY,
    CoreRtl,
    book_schedule,
    run_book_model,
    update_latencies,
)
from sim.market import MARKET_SYMBOLS, market_stream
from sim.traffic import SYMBOLS, book_torture

# Small capacities, so the torture traffic fills sets, pushes levels out and makes orphans.
TINY = BookParams(slots=4, sets=8, ways=2, levels=3)


def compare(sched, params):
    rtl = CoreRtl.shared(params).run(sched)
    model = run_book_model(sched, params)
    for i, (got, want) in enumerate(zip(rtl.updates, model.updates, strict=False)):
        assert got == want, f"update {i} differs: rtl {got}, model {want}"
    assert len(rtl.updates) == len(model.updates)
    assert rtl.book == model.book
    assert rtl.counters == model.counters
    return rtl, model


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_torture_tiny_capacities(seed):
    rng = random.Random(seed)
    messages = book_torture(rng, 20_000, SYMBOLS[:5])
    # Three watched, one slot free; SYMBOLS[3:5] are traded but not watched.
    sched = book_schedule(messages, ["AAPL", None, "NVDA", "MSFT"], rng=rng, max_per_frame=8,
                          bad_fcs=0.01, gaps=0.01)
    rtl, model = compare(sched, TINY)
    c = model.book
    # Every path the torture is for was taken, or the test proves little.
    for name in ("unknown_ref", "clamped", "rejected", "duplicate_ref", "table_full",
                 "level_overflow", "clears"):
        assert c[name] > 10, (name, c)
    assert any(u.uncertain for u in model.updates)
    assert any(not u.uncertain and u.bid_qty and u.ask_qty for u in model.updates)
    assert any(u.halted for u in model.updates)


@pytest.mark.slow
def test_market_day_default_capacities():
    # 100,000 messages of a realistic day over 8 watched instruments (and 2 not watched),
    # at line rate in frames of 1..24 messages, through the card's real capacities.
    rng = random.Random(11)
    messages = market_stream(11, 100_000)
    sched = book_schedule(messages, list(MARKET_SYMBOLS), rng=rng, max_per_frame=24)
    rtl, model = compare(sched, BookParams())
    assert len(model.updates) > 10_000
    assert not any(u.uncertain for u in model.updates)
    assert model.book["unknown_ref"] > 0 and model.book["clamped"] > 0
    # Every update exactly as late as the book's stages say (make bench measures them on a
    # million, against the targets).
    latencies = update_latencies(messages, rtl)
    assert set(latencies) == set(BOOK_LATENCY)
    for group, lat in latencies.items():
        assert (min(lat), max(lat)) == (BOOK_LATENCY[group],) * 2, (group, min(lat), max(lat))


@pytest.mark.slow
def test_market_day_with_bad_frames_and_gaps():
    # The same flow where some frames fail their FCS after being acted on and some packets
    # are missed: the books those touch become uncertain, identically in both engines.
    rng = random.Random(12)
    sched = book_schedule(market_stream(12, 30_000), list(MARKET_SYMBOLS), rng=rng,
                          max_per_frame=24, bad_fcs=0.003, gaps=0.003)
    rtl, model = compare(sched, BookParams())
    assert any(u.uncertain for u in model.updates)
    assert rtl.counters["drops"].get("mac_fcs") and rtl.counters["gaps"]


@pytest.mark.slow
def test_market_day_with_truncated_frames():
    # Frames that stop on the wire inside a message, half of them around an add's reference,
    # where its lookup starts from the decoder's registers alone (`early_af`): a cut there
    # leaves the decoder at that offset until the next message. Nothing of the cut message
    # reaches the book, and the rest of the day is exactly the model's.
    rng = random.Random(13)
    sched = book_schedule(market_stream(13, 30_000), list(MARKET_SYMBOLS), rng=rng,
                          max_per_frame=24, truncate=0.02)
    rtl, model = compare(sched, BookParams())
    # (A cut frame fails its FCS, and the messages it lost are a gap.)
    assert rtl.counters["drops"]["mac_fcs"] > 20 and rtl.counters["gaps"]
