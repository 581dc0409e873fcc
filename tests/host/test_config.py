"""The strategy and limits file (`host.config`, `hostctl config`): the issue's example loads as
written; every kind of bad file is refused with one line naming the field and what is allowed,
and `hostctl` exits 2 on it."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hdl.formats import RISK_PRICE_BITS, BookParams
from host.cli import main as hostctl
from host.config import CardConfig, ConfigError, Instrument, Limits, parse_config

EXAMPLE = """
[limits]                            # whole card
max_order_qty = 800                 # shares
max_order_notional = 1_200_000_000  # ITCH price units (1/10000 $) x shares
max_orders_per_second = 50          # order-rate throttle

[[instrument]]
symbol = "AAPL"
buy_below = 2924000     # optional: buy when best ask <= this
sell_above = 2924500    # optional: sell when best bid >= this
min_qty = 100           # the touched level must show at least this many shares
order_qty = 500         # shares per order, at most
max_position = 3000     # |position + open orders in the order's direction| bound
reference_px = 2924200  # price collar centre
collar = 20000          # |order price - reference_px| bound
"""

FEED = """[[feed]]
group = "233.54.12.111"
port = 26477
session = "000010059B"
"""

LIMITS = """[limits]
max_order_qty = 800
max_order_notional = 1_200_000_000
max_orders_per_second = 50
"""


def instrument(symbol: str = "MSFT", **fields: object) -> str:
    base = {"min_qty": 0, "order_qty": 100, "max_position": 1000, "reference_px": 4000000,
            "collar": 10000} | fields
    lines = [f'symbol = "{symbol}"'] + [f"{k} = {v}" for k, v in base.items() if v is not None]
    return "[[instrument]]\n" + "\n".join(lines) + "\n"


def test_the_issue_example_loads_as_written() -> None:
    assert parse_config(EXAMPLE) == CardConfig(
        Limits(800, 1_200_000_000, 50),
        (Instrument("AAPL", min_qty=100, order_qty=500, max_position=3000,
                    reference_px=2924200, collar=20000, buy_below=2924000,
                    sell_above=2924500),))


def test_feeds_and_order_template() -> None:
    cfg = parse_config(LIMITS + FEED + FEED.replace("26477", "26478").replace("000010059B", "S1")
                       + '[order]\ndst_ip = "127.0.0.1"\ndst_port = 9000\n'
                       'dst_mac = "02:00:00:00:00:02"\ndisplay = "N"\n')
    assert [(f.group, f.port, f.session) for f in cfg.feeds] == [
        (0xE9360C6F, 26477, b"000010059B"), (0xE9360C6F, 26478, b"S1        ")]
    assert cfg.template is not None
    assert (cfg.template.dst_ip, cfg.template.dst_port, cfg.template.dst_mac,
            cfg.template.display, cfg.template.capacity) == (
        0x7F000001, 9000, 0x020000000002, "N", "A")           # the rest: the defaults
    assert cfg.as_dict()["feed"][1] == {"group": "233.54.12.111", "port": 26478, "session": "S1"}
    assert parse_config(LIMITS).feeds == () and parse_config(LIMITS).template is None


def test_triggers_are_optional_and_instruments_may_be_absent() -> None:
    cfg = parse_config(LIMITS + instrument("MSFT") + instrument("SPY", sell_above=5000000))
    assert [(i.symbol, i.buy_below, i.sell_above) for i in cfg.instruments] == [
        ("MSFT", None, None), ("SPY", None, 5000000)]
    assert parse_config(LIMITS).instruments == ()


BAD = {
    "not toml": ("[limits\n", "not valid TOML"),
    "no limits": (instrument(), "[limits] is required"),
    "unknown table": (LIMITS + "[strategy]\nx = 1\n", "unknown table 'strategy'"),
    "unknown limit": (LIMITS + "max_loss = 5\n", "limits: unknown field 'max_loss'"),
    "missing limit": ("[limits]\nmax_order_qty = 1\nmax_order_notional = 1\n",
                      "limits.max_orders_per_second is required"),
    "zero qty": (LIMITS.replace("= 800", "= 0"),
                 "limits.max_order_qty must be an integer between 1 and 4294967295, not 0"),
    "bool": (LIMITS.replace("= 50", "= true"), "limits.max_orders_per_second must be an integer"),
    "float": (LIMITS.replace("= 800", "= 800.5"), "not 800.5"),
    "string": (LIMITS.replace("= 800", '= "800"'), "not '800'"),
    "rate too high": (LIMITS.replace("= 50", "= 70000"), "between 1 and 65535, not 70000"),
    "negative collar": (LIMITS + instrument(collar=-5),
                        "instrument[0].collar must be an integer between 0 and 4294967295, "
                        "not -5"),
    "price too wide": (LIMITS + instrument(buy_below=1 << RISK_PRICE_BITS),
                       "instrument[0].buy_below must be an integer between 1 and 4294967295"),
    "zero reference": (LIMITS + instrument(reference_px=0), "instrument[0].reference_px"),
    "position too wide": (LIMITS + instrument(max_position=1 << 31),
                          "instrument[0].max_position must be an integer between 0 and "
                          "2147483647"),
    "missing order qty": (LIMITS + instrument(order_qty=None),
                          "instrument[0].order_qty is required"),
    "no symbol": (LIMITS + "[[instrument]]\norder_qty = 1\n", "instrument[0].symbol is required"),
    "long symbol": (LIMITS + instrument("ABCDEFGHI"), "instrument[0].symbol:"),
    "symbol twice": (LIMITS + instrument("MSFT") + instrument("MSFT"),
                     "instrument[1].symbol 'MSFT' is already configured"),
    "unknown instrument field": (LIMITS + instrument(stop_loss=3),
                                 "instrument[0]: unknown field 'stop_loss'"),
    "instrument not a table": ("instrument = [1]\n" + LIMITS, "instrument[0] must be a table"),
    "too many": (LIMITS + "".join(instrument(f"S{i}") for i in range(BookParams().slots + 1)),
                 f"at most {BookParams().slots} [[instrument]] tables"),
    "feed not multicast": (LIMITS + FEED.replace("233.54.12.111", "10.0.0.1"),
                           "feed[0].group must be a multicast group"),
    "feed bad address": (LIMITS + FEED.replace('"233.54.12.111"', "5"),
                         "feed[0].group must be an IPv4 multicast group"),
    "feed port": (LIMITS + FEED.replace("26477", "70000"),
                  "feed[0].port must be a UDP port between 1 and 65535, not 70000"),
    "feed session": (LIMITS + FEED.replace("000010059B", "00001005900X"),
                     "feed[0].session must be 1 to 10 printable ASCII characters"),
    "feed without port": (LIMITS + FEED.replace("port = 26477\n", ""),
                          "feed[0].port is required"),
    "too many feeds": (LIMITS + FEED * 5, "at most 4 [[feed]] tables"),
    "order mac": (LIMITS + '[order]\ndst_mac = "00:1c:73:85:bf"\n',
                  "order.dst_mac must be a MAC address"),
    "order ip": (LIMITS + '[order]\ndst_ip = "300.1.1.1"\n', "order.dst_ip must be an IPv4"),
    "order firm field": (LIMITS + '[order]\ndisplay = "YY"\n',
                         "order.display must be one printable ASCII character"),
    "order unknown": (LIMITS + "[order]\nvlan = 5\n", "order: unknown field 'vlan'"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_file_is_refused_with_one_line(name: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    text, expected = BAD[name]
    with pytest.raises(ConfigError) as e:
        parse_config(text)
    assert expected in str(e.value) and "\n" not in str(e.value)
    f = tmp_path / "card.toml"
    f.write_text(text)
    assert hostctl(["config", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(f) in err and expected in err


def test_hostctl_config_prints_what_it_loaded(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "card.toml"
    f.write_text(EXAMPLE)
    assert hostctl(["config", str(f), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == parse_config(EXAMPLE).as_dict()
    assert hostctl(["config", str(f)]) == 0
    assert "AAPL: buy at ask <= 2924000, sell at bid >= 2924500" in capsys.readouterr().out
    assert hostctl(["config", str(tmp_path / "missing.toml")]) == 2


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(st.integers(-(1 << 70), 1 << 70), st.booleans(), st.floats(),
                       st.text(max_size=5)),
       field=st.sampled_from(["min_qty", "order_qty", "max_position", "reference_px", "collar",
                              "buy_below", "sell_above"]))
def test_any_value_is_either_in_range_or_refused(value: object, field: str) -> None:
    """Whatever a field holds, the file either loads with exactly that value or is refused
    naming that field: nothing out of a register's range gets through."""
    text = LIMITS + instrument(**{field: json.dumps(value) if isinstance(value, str)
                                  else str(value).lower() if isinstance(value, bool)
                                  else repr(value)})
    try:
        cfg = parse_config(text)
    except ConfigError as e:
        assert f"instrument[0].{field}" in str(e) or "not valid TOML" in str(e)
        return
    got = getattr(cfg.instruments[0], field)
    assert isinstance(value, int) and not isinstance(value, bool) and got == value
    assert 0 <= got < 1 << 32
