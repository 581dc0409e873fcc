"""The order book gateware (in the core, behind the feed handler, in Verilator) against the
model: the same top-of-book updates, field for field and cycle stamp for cycle stamp, and the
same counters."""

import random

import pytest

from hdl.formats import BookParams
from sim.core_rtl import CoreRtl, book_schedule, run_book_model
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
