"""The trigger model (`host.model.trigger`): edge-triggered intents at the touched price, on
named cases and against a direct restatement of the rule over random update streams."""

from hypothesis import given, settings
from hypothesis import strategies as st

from host.config import CardConfig, Instrument, Limits
from host.model.book import TopUpdate
from host.model.trigger import Intent, TriggerModel

LIMITS = Limits(800, 1_200_000_000, 50)
AAPL = Instrument("AAPL", min_qty=100, order_qty=500, max_position=3000, reference_px=2924200,
                  collar=20000, buy_below=2924000, sell_above=2924500)
WATCH_ONLY = Instrument("MSFT", min_qty=0, order_qty=1, max_position=0, reference_px=1,
                        collar=0)


def top(bid_px: int, bid_qty: int, ask_px: int, ask_qty: int, slot: int = 0,
        index: int = 0, **flags: bool) -> TopUpdate:
    return TopUpdate(slot, 7, bid_px, bid_qty, ask_px, ask_qty, flags.get("uncertain", False),
                     flags.get("halted", False), "T", index, 1000 + index)


def test_buy_fires_once_on_the_edge_and_rearms_when_false() -> None:
    t = TriggerModel(CardConfig(LIMITS, (AAPL,)))
    assert t.update(top(2923000, 100, 2924100, 300)) == []                 # ask above buy_below
    assert t.update(top(2923000, 100, 2924000, 300, index=1)) == [
        Intent(0, "B", 300, 2924000, 1, 1001)]                              # min(500, 300)
    assert t.update(top(2923000, 100, 2923900, 900, index=2)) == []        # still true: no edge
    assert t.update(top(2923000, 100, 2924000, 99, index=3)) == []         # too few shares: false
    assert t.update(top(2923000, 100, 2923900, 900, index=4)) == [
        Intent(0, "B", 500, 2923900, 4, 1004)]                              # true again: fires


def test_sell_side_and_empty_sides_never_fire() -> None:
    t = TriggerModel(CardConfig(LIMITS, (AAPL,)))
    assert t.update(top(0, 0, 0, 0)) == []                                  # empty book
    assert t.update(top(2924500, 100, 0, 0, index=1)) == [Intent(0, "S", 100, 2924500, 1, 1001)]
    assert t.update(top(2924600, 50, 0, 0, index=2)) == []                  # under min_qty
    assert t.update(top(2924600, 700, 0, 0, index=3)) == [Intent(0, "S", 500, 2924600, 3, 1003)]


def test_clear_rearms_every_side_and_halted_or_uncertain_books_still_fire() -> None:
    t = TriggerModel(CardConfig(LIMITS, (AAPL,)))
    assert len(t.update(top(2923000, 100, 2924000, 300, uncertain=True))) == 1
    assert t.update(top(2923000, 100, 2924000, 300, halted=True)) == []    # the edge is used
    assert t.update(TopUpdate(0, 0, 0, 0, 0, 0, False, False, "T", 9, 0, clear=True)) == []
    assert len(t.update(top(2923000, 100, 2924000, 300))) == 1


def test_crossed_configuration_buys_first_and_untriggered_instruments_never_fire() -> None:
    crossed = Instrument("X", min_qty=0, order_qty=10, max_position=10, reference_px=100,
                         collar=50, buy_below=120, sell_above=90)
    t = TriggerModel(CardConfig(LIMITS, (crossed, WATCH_ONLY)))
    assert [i.side for i in t.update(top(100, 5, 110, 7))] == ["B", "S"]
    assert t.update(top(100, 5, 110, 7, slot=1)) == []
    assert t.update(top(100, 5, 110, 7, slot=5)) == []                      # not configured


quotes = st.tuples(st.integers(0, 12), st.integers(0, 600), st.integers(0, 12),
                   st.integers(0, 600), st.booleans())


@settings(max_examples=300, deadline=None)
@given(stream=st.lists(quotes, max_size=60), buy=st.integers(1, 12), sell=st.integers(1, 12),
       min_qty=st.integers(0, 300), order_qty=st.integers(1, 700))
def test_intents_are_exactly_the_rising_edges(stream: list[tuple[int, int, int, int, bool]],
                                              buy: int, sell: int, min_qty: int,
                                              order_qty: int) -> None:
    inst = Instrument("S", min_qty=min_qty, order_qty=order_qty, max_position=1,
                      reference_px=1, collar=0, buy_below=buy, sell_above=sell)
    t = TriggerModel(CardConfig(LIMITS, (inst,)))
    before = [False, False]
    for n, (bid, bid_qty, ask, ask_qty, clear) in enumerate(stream):
        if clear:
            assert t.update(TopUpdate(0, 0, 0, 0, 0, 0, False, False, "T", n, 0, True)) == []
            before = [False, False]
            continue
        now = [0 < ask <= buy and ask_qty >= min_qty, 0 < bid and bid >= sell
               and bid_qty >= min_qty]
        want = []
        if now[0] and not before[0]:
            want.append(Intent(0, "B", min(order_qty, ask_qty), ask, n, 1000 + n))
        if now[1] and not before[1]:
            want.append(Intent(0, "S", min(order_qty, bid_qty), bid, n, 1000 + n))
        assert t.update(top(bid, bid_qty, ask, ask_qty, index=n)) == want
        before = now
