"""Order book edge cases, one named test each: the gateware and the model must agree, and both
must give the book a trader expects (spelled out in each test, not taken from either engine)."""

import pytest

from hdl.formats import BOOK_COUNT_BITS, BookParams, order_sets
from host.model.itch import encode
from sim.core_rtl import CoreRtl, book_schedule, run_book_model

SMALL = BookParams(slots=2, sets=4, ways=2, levels=4)
MAX_PX = 0xFFFFFFFF       # Price(4) is unsigned: $429,496.7295


def add(ref, side, shares, px, stock="AAPL", locate=7, kind="A"):
    return encode({"type": kind, "locate": locate, "order_ref": ref, "side": side,
                   "shares": shares, "stock": stock, "price": px})


def execute(ref, shares, locate=7):
    return encode({"type": "E", "locate": locate, "order_ref": ref, "shares": shares})


def execute_px(ref, shares, px, locate=7):
    return encode({"type": "C", "locate": locate, "order_ref": ref, "shares": shares,
                   "printable": "Y", "price": px})


def cancel(ref, shares, locate=7):
    return encode({"type": "X", "locate": locate, "order_ref": ref, "shares": shares})


def delete(ref, locate=7):
    return encode({"type": "D", "locate": locate, "order_ref": ref})


def replace(ref, new, shares, px, locate=7):
    return encode({"type": "U", "locate": locate, "order_ref": ref, "new_ref": new,
                   "shares": shares, "price": px})


def start_of_day():
    return encode({"type": "S", "event_code": "O"})


def run(messages, params=SMALL, watch=("AAPL",), per_frame=1):
    """Both engines on the messages (after a start of day), `per_frame` messages per frame;
    returns the model's updates (after checking the gateware's are identical) and counters."""
    sched = book_schedule([start_of_day(), *messages], list(watch), max_per_frame=per_frame)
    rtl, model = CoreRtl.shared(params).run(sched), run_book_model(sched, params)
    assert rtl.updates == model.updates
    assert rtl.book == model.book
    return model.updates[1:], model.book       # [0] is the start of day's clear


def quotes(updates):
    return [u.quote() for u in updates]


def test_replace_chain():
    # Each replace removes the previous reference and enters the new one on the same side.
    updates, c = run([add(1, "B", 100, 1000), replace(1, 2, 200, 1010),
                      replace(2, 3, 50, 990), replace(3, 4, 70, 990), execute(4, 70)])
    assert quotes(updates) == [(1000, 100, 0, 0), (1010, 200, 0, 0), (990, 50, 0, 0),
                               (990, 70, 0, 0), (0, 0, 0, 0)]
    assert c["unknown_ref"] == 0
    # The replaced references are gone: using them again is an unknown reference.
    updates, c = run([add(1, "S", 100, 1000), replace(1, 2, 200, 1010), delete(1),
                      execute(2, 1)])
    assert quotes(updates) == [(0, 0, 1000, 100), (0, 0, 1010, 200), (0, 0, 1010, 199)]
    assert c["unknown_ref"] == 1


def test_execute_to_zero():
    updates, c = run([add(1, "B", 300, 1000), add(2, "B", 100, 990), execute(1, 100),
                      execute_px(1, 150, 1234), execute(1, 50), execute(1, 1)])
    # C executes at the order's own level, whatever price it prints at.
    assert quotes(updates) == [(1000, 300, 0, 0), (1000, 200, 0, 0), (1000, 50, 0, 0),
                               (990, 100, 0, 0)]
    assert c["unknown_ref"] == 1            # the order left at zero; the last E finds nothing
    assert c["clamped"] == 0


def test_cancel_more_than_remains_is_clamped_and_counted():
    updates, c = run([add(1, "S", 100, 2000), add(2, "S", 40, 2000), cancel(1, 60),
                      cancel(1, 500), execute(2, 41)])
    assert quotes(updates) == [(0, 0, 2000, 100), (0, 0, 2000, 140), (0, 0, 2000, 80),
                               (0, 0, 2000, 40), (0, 0, 0, 0)]
    assert c["clamped"] == 2
    assert not any(u.uncertain for u in updates)


def test_delete_of_unknown_reference_is_counted_and_ignored():
    updates, c = run([add(1, "B", 100, 1000), delete(99), delete(1), delete(1),
                      replace(5, 6, 10, 10), cancel(7, 1), execute(8, 1)])
    assert quotes(updates) == [(1000, 100, 0, 0), (0, 0, 0, 0)]
    assert c["unknown_ref"] == 5


def test_unwatched_instruments_are_ignored():
    updates, c = run([add(1, "B", 100, 1000, stock="MSFT", locate=9), delete(1, locate=9),
                      execute(1, 5, locate=9), add(2, "B", 5, 5)])
    assert quotes(updates) == [(5, 5, 0, 0)]
    assert c["unknown_ref"] == 0            # not ours: not even looked up


def test_both_sides_at_one_price():
    # A crossed or locked book is the feed's business; the card reports exactly what it says.
    updates, _ = run([add(1, "B", 100, 1500), add(2, "S", 70, 1500), add(3, "S", 5, 1500),
                      delete(1)])
    assert quotes(updates) == [(1500, 100, 0, 0), (1500, 100, 1500, 70),
                               (1500, 100, 1500, 75), (0, 0, 1500, 75)]


def test_lowest_and_highest_prices():
    updates, _ = run([add(1, "B", 1, 1), add(2, "B", 2, MAX_PX), add(3, "S", 3, MAX_PX),
                      add(4, "S", 4, 1), delete(2), delete(4), add(5, "B", 9, 0)])
    assert quotes(updates) == [(1, 1, 0, 0), (MAX_PX, 2, 0, 0), (MAX_PX, 2, MAX_PX, 3),
                               (MAX_PX, 2, 1, 4), (1, 1, 1, 4), (1, 1, MAX_PX, 3)]


def test_many_levels_in_any_order():
    # Up to the level capacity (8 by default), inserted out of order, removed from the top.
    p = BookParams()
    prices = [1000 + 7 * ((i * 5) % p.levels) for i in range(p.levels)]
    msgs = [add(i + 1, "S", 10 + i, px) for i, px in enumerate(prices)]
    msgs += [delete(1 + prices.index(px)) for px in sorted(prices)]
    updates, c = run(msgs, p)
    asks = [u.quote()[2:] for u in updates]
    # Only the first add makes a new best (the lowest price comes first); every delete does.
    assert prices[0] == min(prices)
    want = [(px, 10 + prices.index(px)) for px in sorted(prices)] + [(0, 0)]
    assert asks == want
    assert c["level_overflow"] == 0 and not any(u.uncertain for u in updates)


def test_levels_keep_their_price_order_through_joins_and_push_outs():
    # The card keeps levels in place, each with its rank; this walks a full side through the
    # edits that move ranks: an add joining the worst level, a removal that leaves it, a new
    # level pushing the worst out from between, then every top deleted in turn (each time the
    # level of rank 2 becomes the second).
    msgs = [add(1, "B", 10, 1000), add(2, "B", 10, 970), add(3, "B", 10, 940),
            add(4, "B", 10, 990),                       # full: 1000 990 970 940
            add(5, "B", 20, 940), delete(5),            # the worst joined and left
            add(6, "B", 10, 980),                       # 940 (one order) pushed out
            delete(1), delete(4), delete(6), delete(2), delete(3)]
    updates, c = run(msgs)
    assert c["level_overflow"] == 1
    assert [(u.quote()[:2], u.uncertain) for u in updates] == [
        ((1000, 10), False),
        ((990, 10), False), ((980, 10), False), ((970, 10), False),
        ((0, 0), True),         # the last level gone, the 940 orphan still there
        ((0, 0), False),
    ]


def test_order_table_overflow_marks_the_book_uncertain():
    # References 20, 40, 60, 15 and 51 all have set 0 in both banks of a 4-set table
    # (hdl.formats.order_sets), whose 2 + 2 ways take four of them.
    same = [20, 40, 60, 15, 51]
    assert {order_sets(ref, SMALL.sets) for ref in same} == {(0, 0)}
    updates, c = run([add(ref, "B", 10, 100 + i) for i, ref in enumerate(same)]
                     + [add(1, "S", 5, 200)])
    assert c["table_full"] == 1
    assert [u.uncertain for u in updates] == [False] * 4 + [True, True]
    # The book says it cannot be trusted until the next start of day.
    updates, c = run([add(ref, "B", 10, 100 + i) for i, ref in enumerate(same)]
                     + [start_of_day(), add(1, "S", 5, 200)])
    assert updates[-1].quote() == (0, 0, 200, 5) and not updates[-1].uncertain


def test_level_overflow_is_uncertain_only_while_the_top_is_unknown():
    # 4 levels kept. A better bid pushes the worst level (970) out; a bid at or below that
    # cut (960) is not kept either: both are orphans, counted but without a level.
    prices = {1: 1000, 2: 990, 3: 980, 4: 970, 5: 1010, 6: 960}
    msgs = [add(ref, "B", 10, px) for ref, px in prices.items()]
    msgs += [delete(5), delete(1), delete(2), delete(3),   # every kept level gone
             add(20, "B", 7, 975),                         # better than the cut: exact again
             delete(20), delete(4), delete(6)]             # the orphans leave
    updates, c = run(msgs)
    assert c["level_overflow"] == 1
    assert [(u.quote()[:2], u.uncertain) for u in updates] == [
        ((1000, 10), False),
        ((1010, 10), False),
        ((1000, 10), False), ((990, 10), False), ((980, 10), False),
        ((0, 0), True),         # no level left, but orphans: the top is not known
        ((975, 7), False),
        ((0, 0), True),
        ((0, 0), False),        # the last orphan left: the side is known to be empty
    ]
    assert all(u.quote()[2:] == (0, 0) for u in updates)


def test_orphan_counter_at_its_limit_marks_the_book_uncertain():
    # A side counts its orphans in BOOK_COUNT_BITS (16) bits: 65,535 fit, the 65,536th cannot
    # be vouched for. The default table (16,384 orders) cannot hold that many, so this one
    # holds 2 x 4,096 x 9; one level is kept, so every order below the best bid is an orphan.
    p = BookParams(slots=2, sets=4096, ways=9, levels=1)
    limit = (1 << BOOK_COUNT_BITS) - 1
    assert p.capacity > limit + 1
    msgs = [add(0, "B", 5, 200)] + [add(ref, "B", 1, 100) for ref in range(1, limit + 2)]
    # Many messages per frame: each frame's headers, FCS and gap are simulated once, not 65,537
    # times.
    updates, c = run(msgs, p, per_frame=32)
    # Only the first add and the overflowing one change what the top says.
    assert [(u.quote(), u.uncertain) for u in updates] == [
        ((200, 5, 0, 0), False), ((200, 5, 0, 0), True)]
    # The first orphan found no level to take (counted); the rest came at or below the cut.
    assert c["level_overflow"] == 1 and c["table_full"] == 0


@pytest.mark.parametrize("code", ["O", "C"])
def test_start_and_end_of_day_clear(code):
    clear = encode({"type": "S", "event_code": code})
    # The clear forgets the locate too; the add teaches it again, and the old order is gone.
    updates, c = run([add(1, "B", 10, 100), clear, add(2, "S", 3, 300), delete(1)])
    assert updates[1].clear
    assert quotes(updates[2:]) == [(0, 0, 300, 3)]
    assert c["unknown_ref"] == 1 and c["clears"] == 2


def test_trading_state():
    halt = encode({"type": "H", "stock": "AAPL", "locate": 7, "trading_state": "H"})
    resume = encode({"type": "H", "stock": "AAPL", "locate": 7, "trading_state": "T"})
    updates, _ = run([halt, add(1, "B", 10, 100), resume, resume])
    assert [(u.halted, u.state) for u in updates] == [(True, "H"), (True, "H"), (False, "T")]


def test_locate_learned_from_stock_directory():
    directory = encode({"type": "R", "locate": 7, "stock": "AAPL"})
    # Before the R, locate 7 is nobody's: the delete is ignored, not even counted.
    _, c = run([delete(5)])
    assert c["unknown_ref"] == 0
    # After it, locate 7 is AAPL: the same delete is a watched instrument's unknown reference.
    _, c = run([directory, delete(5)])
    assert c["unknown_ref"] == 1


def test_sequential_references_fill_the_whole_table():
    # Nasdaq numbers orders densely: references 0..16,383 fill all 2 x 512 x 16 entries (the
    # sets of either bank are a bijection of the low chunk for each high part); the next one
    # finds both its sets full and the book says it is uncertain.
    p = BookParams()
    n = p.capacity
    msgs = [add(ref, "B", 1, 100 + ref % 8) for ref in range(n + 1)]
    updates, c = run(msgs, p)
    assert c["table_full"] == 1 and c["rejected"] == 0
    assert not any(u.uncertain for u in updates[:-1]) and updates[-1].uncertain
    assert updates[-1].quote() == (107, n // 8, 0, 0)
