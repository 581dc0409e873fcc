"""host.card_config: a strategy and limits file as register writes, against the map."""

import pytest

from hdl.formats import CARD_CLOCK_HZ, N_SUBSCRIPTIONS, BookParams
from host.card_config import registers
from host.config import CardConfig, Feed, Instrument, Limits
from host.model.book import symbol_code
from host.model.order_frame import DEFAULT_TEMPLATE
from host.regmap import RegMap

CONFIG = CardConfig(Limits(max_order_qty=800, max_order_notional=1 << 40,
                           max_orders_per_second=50), (
    Instrument("AAPL", min_qty=100, order_qty=500, max_position=3000, reference_px=2924200,
               collar=20000, buy_below=2924000, max_orders_per_second=7),
    Instrument("MSFT", min_qty=0, order_qty=1, max_position=0, reference_px=1, collar=0,
               sell_above=5),
))


def test_writes_then_commits() -> None:
    rm = RegMap.load()
    writes = registers(CONFIG, DEFAULT_TEMPLATE, next_user_ref=9)
    values = dict(writes)
    slots = BookParams().slots
    assert values["limits.rate_period"] == CARD_CLOCK_HZ // 50
    assert values["limits.rate_cap"] == 50 * (CARD_CLOCK_HZ // 50)
    assert values["triggers[0].rate_period"] == CARD_CLOCK_HZ // 7
    assert values["triggers[1].rate_cap"] == values["limits.rate_cap"]   # the card's rate
    assert (values["triggers[0].buy_enable"], values["triggers[0].sell_enable"]) == (1, 0)
    assert (values["triggers[1].buy_enable"], values["triggers[1].sell_above"]) == (0, 5)
    assert values["watchlist[1].symbol"] == symbol_code("MSFT")
    for slot in range(2, slots):         # unused: disarmed, nothing enabled, not watched
        assert values[f"triggers[{slot}].armed"] == values[f"triggers[{slot}].buy_enable"] \
            == values[f"watchlist[{slot}].enable"] == 0
    assert values["triggers[0].armed"] == values["triggers[1].armed"] == 1
    assert values["order.time_in_force"] == ord(DEFAULT_TEMPLATE.time_in_force)
    assert values["order.next_user_ref"] == 9
    # Every value fits its register; every commit comes after every staged write.
    for name, value in writes:
        assert 0 <= value < 1 << rm[name].width, name
    first = next(i for i, (name, _) in enumerate(writes) if name.endswith(".commit"))
    assert all(name.endswith(".commit") for name, _ in writes[first:])
    commits = [name for name, _ in writes[first:]]
    assert commits == [f"watchlist[{s}].commit" for s in range(slots)] + ["limits.commit"] + \
        [f"triggers[{s}].commit" for s in range(slots)] + ["order.commit"]
    assert not any(n.endswith((".kill", ".reduce_only")) for n, _ in writes)


def test_options() -> None:
    names = [n for n, _ in registers(CONFIG, DEFAULT_TEMPLATE, watchlist=False)]
    assert not any(n.startswith("watchlist") for n in names)
    assert "order.next_user_ref" not in names
    many = CardConfig(CONFIG.limits, tuple(
        Instrument(f"S{i}", 0, 1, 0, 1, 0) for i in range(BookParams().slots + 1)))
    with pytest.raises(ValueError, match="the card has 16 slots; the config has 17"):
        registers(many, DEFAULT_TEMPLATE)


def test_feeds_rewrite_every_subscription_row_and_commit_first() -> None:
    feed = Feed(0xE9360C6F, 26477, b"000010059B")
    cfg = CardConfig(CONFIG.limits, CONFIG.instruments, (feed,))
    writes = registers(cfg, None, armed=False)
    values = dict(writes)
    rows = N_SUBSCRIPTIONS
    assert (values["subscriptions[0].valid"], values["subscriptions[0].group"],
            values["subscriptions[0].port"], values["subscriptions[0].session"]) == (
        1, feed.group, 26477, int.from_bytes(b"000010059B", "big"))
    assert all(values[f"subscriptions[{r}].valid"] == 0 for r in range(1, rows))
    commits = [n for n, _ in writes if n.endswith(".commit")]
    assert commits[:rows] == [f"subscriptions[{r}].commit" for r in range(rows)]
    assert "order.commit" not in commits                  # no template: the card keeps its own
    assert values["triggers[0].armed"] == 0
    assert not any(n.startswith("subscriptions") for n, _ in registers(CONFIG, None))
