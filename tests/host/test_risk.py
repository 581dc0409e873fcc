"""The risk gate model (`host.model.risk`): every reason reachable and in its order, and over
random intents, fills and switches, no sent order breaks a limit, exposure is never understated
and the throttle holds."""

from hypothesis import given, settings
from hypothesis import strategies as st

from hdl.formats import Reject
from host.config import CardConfig, Instrument, Limits
from host.model.book import TopUpdate
from host.model.risk import RiskModel
from host.model.trigger import Intent

CLOCK = 1000                       # a slow card clock keeps the throttle's numbers readable
LIMITS = Limits(max_order_qty=800, max_order_notional=1_200_000_000, max_orders_per_second=50)
AAPL = Instrument("AAPL", min_qty=100, order_qty=500, max_position=3000, reference_px=2924200,
                  collar=20000, buy_below=2924000, sell_above=2924500)


def intent(side: str = "B", qty: int = 100, price: int = 2924000, slot: int = 0) -> Intent:
    return Intent(slot, side, qty, price, 0, 0)


def update(**flags: bool) -> TopUpdate:
    return TopUpdate(0, 1, 0, 0, 0, 0, flags.get("uncertain", False), flags.get("halted", False),
                     "T", 0, 0)


def gate(*instruments: Instrument, limits: Limits = LIMITS) -> RiskModel:
    return RiskModel(CardConfig(limits, instruments or (AAPL,)), clock_hz=CLOCK)


def test_each_reason_in_its_order() -> None:
    g = gate()
    g.kill_card, g.kill[0] = True, True
    assert g.check(intent(), update(halted=True), 0) is Reject.KILL_CARD
    g.kill_card = False
    assert g.check(intent(), update(halted=True), 0) is Reject.KILL_INSTRUMENT
    g.kill[0] = False
    assert g.check(intent(), update(halted=True, uncertain=True), 0) is Reject.HALTED
    assert g.check(intent(), update(uncertain=True), 0) is Reject.UNCERTAIN
    g.reduce_only_card = True
    assert g.check(intent(qty=900), update(), 0) is Reject.REDUCE_ONLY     # flat: cannot buy
    g.reduce_only_card = False
    assert g.check(intent(qty=900), update(), 0) is Reject.MAX_QTY
    assert g.check(intent(qty=800, price=1_600_000), update(), 0) is Reject.MAX_NOTIONAL
    assert g.check(intent(price=2904199), update(), 0) is Reject.COLLAR
    assert g.check(intent(price=2944200), update(), 0) is Reject.NONE       # collar is inclusive
    assert g.count["none"] == 1 and g.count["collar"] == 1 and g.count["kill_card"] == 1


def test_exposure_counts_open_orders_and_fills_by_direction() -> None:
    g = gate(Instrument("A", min_qty=0, order_qty=800, max_position=2000, reference_px=100,
                        collar=100))
    assert [g.check(intent(qty=800, price=100), update(), 0) for _ in range(3)] == [
        Reject.NONE, Reject.NONE, Reject.MAX_POSITION]    # 1600 open + 800 > 2000
    assert g.check(intent("S", qty=800, price=100), update(), 0) is Reject.NONE  # other way
    g.fill(0, "B", 800)                                   # position 800, open buys 800
    assert (g.position[0], g.open[0]) == (800, [800, 800])
    assert g.check(intent(qty=401, price=100), update(), 0) is Reject.MAX_POSITION
    g.release(0, "B", 800)
    assert g.check(intent(qty=800, price=100), update(), 0) is Reject.NONE
    g.reduce_only[0] = True                               # long 800 with 800 open buys
    assert g.check(intent(qty=1, price=100), update(), 0) is Reject.REDUCE_ONLY
    assert g.check(intent("S", qty=1, price=100), update(), 0) is Reject.REDUCE_ONLY  # 800 open
    g.release(0, "S", 800)
    assert g.check(intent("S", qty=800, price=100), update(), 0) is Reject.NONE
    assert g.check(intent("S", qty=1, price=100), update(), 0) is Reject.REDUCE_ONLY


def test_zero_limits_block_everything() -> None:
    g = gate(Instrument("A", min_qty=0, order_qty=1, max_position=0, reference_px=1, collar=0))
    assert g.check(intent(qty=1, price=1), update(), 0) is Reject.MAX_POSITION


def test_throttle_bursts_its_rate_then_one_per_period_and_refusals_cost_nothing() -> None:
    slow = Instrument("A", min_qty=0, order_qty=1, max_position=10**9, reference_px=100,
                      collar=100, max_orders_per_second=4)
    g = gate(slow, limits=Limits(10, 10**12, 10))
    got = [g.check(intent(qty=1, price=100), update(), 0) for _ in range(6)]
    assert got == [Reject.NONE] * 4 + [Reject.RATE_INSTRUMENT] * 2       # 4 tokens, no more
    assert g.check(intent(qty=1, price=100), update(), 249) is Reject.RATE_INSTRUMENT
    assert g.check(intent(qty=1, price=100), update(), 250) is Reject.NONE   # 1000 // 4 cycles
    g2 = gate(slow, limits=Limits(10, 10**12, 2))
    assert [g2.check(intent(qty=1, price=100), update(), 0) for _ in range(3)] == [
        Reject.NONE, Reject.NONE, Reject.RATE_CARD]


ops = st.one_of(
    st.tuples(st.just("order"), st.integers(0, 1), st.sampled_from("BS"), st.integers(1, 900),
              st.integers(1, 200), st.integers(0, 30)),
    st.tuples(st.just("fill"), st.integers(0, 1), st.sampled_from("BS"), st.integers(1, 900),
              st.just(0), st.just(0)),
    st.tuples(st.just("release"), st.integers(0, 1), st.sampled_from("BS"),
              st.integers(1, 900), st.just(0), st.just(0)),
    st.tuples(st.just("switch"), st.integers(0, 1), st.sampled_from("BS"), st.integers(0, 3),
              st.just(0), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(seq=st.lists(ops, max_size=80), max_pos=st.integers(0, 2000),
       max_qty=st.integers(1, 900), notional=st.integers(1, 150_000), collar=st.integers(0, 80),
       rate=st.integers(1, 6))
def test_no_sent_order_breaks_a_limit(seq: list[tuple[str, int, str, int, int, int]],
                                      max_pos: int, max_qty: int, notional: int, collar: int,
                                      rate: int) -> None:
    insts = tuple(Instrument(f"S{i}", min_qty=0, order_qty=900, max_position=max_pos,
                             reference_px=100, collar=collar) for i in range(2))
    g = gate(*insts, limits=Limits(max_qty, notional, rate))
    cycle, sent_at = 0, []
    filled = [[0, 0], [0, 0]]              # what the host may still report, per slot and side
    for kind, slot, side, qty, price, wait in seq:
        s = side == "S"
        if kind == "order":
            cycle += wait
            before = (g.position[slot], list(g.open[slot]))
            reason = g.check(Intent(slot, side, qty, price, 0, 0), update(), cycle)
            if reason is Reject.NONE:
                sent_at.append(cycle)
                assert qty <= max_qty and qty * price <= notional
                assert abs(price - 100) <= collar
                pos, open_ = g.position[slot], g.open[slot]
                assert (pos + open_[0] if not s else -pos + open_[1]) <= max_pos
                assert open_[s] == before[1][s] + qty          # exposure never understated
                filled[slot][s] += qty
            else:
                assert (g.position[slot], g.open[slot]) == before
        elif kind in ("fill", "release"):
            qty = min(qty, filled[slot][s])                  # the host reports what was sent
            filled[slot][s] -= qty
            (g.fill if kind == "fill" else g.release)(slot, side, qty)
        else:
            g.kill_card = qty == 0
            g.reduce_only[slot] = qty == 1
    # The throttle: in any window of w cycles at most rate + w // period orders went out.
    period = CLOCK // rate
    for i, start in enumerate(sent_at):
        for j in range(i, len(sent_at)):
            assert j - i + 1 <= rate + (sent_at[j] - start) // period
