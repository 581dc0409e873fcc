"""The strategy and limits file: what `hostctl` loads into the card's triggers and risk gate.

TOML, validated completely before anything is used: a bad file gives one line naming the field,
what is allowed and what it said, and nothing of it is applied. Every number must fit the card's
register for it (`hdl.formats.RISK_*_BITS`), and prices are ITCH integers (1/10000 dollar):

    [limits]                            # whole card
    max_order_qty = 800                 # shares
    max_order_notional = 1_200_000_000  # ITCH price units x shares
    max_orders_per_second = 50          # order-rate throttle

    [[instrument]]                      # at most BookParams().slots of them, distinct symbols
    symbol = "AAPL"
    buy_below = 2924000     # optional: buy when the best ask <= this
    sell_above = 2924500    # optional: sell when the best bid >= this
    min_qty = 100           # the touched level must show at least this many shares
    order_qty = 500         # shares per order, at most
    max_position = 3000     # |position + open orders in the order's direction| bound
    reference_px = 2924200  # price collar centre
    collar = 20000          # |order price - reference_px| bound
    max_orders_per_second = 10  # optional: this instrument's throttle (default: the card's)

    [[feed]]                # optional, at most N_SUBSCRIPTIONS: the MoldUDP64 feeds to listen to
    group = "233.54.12.111" # IPv4 multicast group
    port = 26477            # UDP destination port
    session = "000010059B"  # MoldUDP64 session (up to 10 characters, space padded)

    [order]                 # optional: the order frame template (host.model.order_frame)
    dst_mac = "00:1c:73:85:bf:b3"   # next hop
    src_mac = "00:1c:73:92:02:bd"   # the card
    src_ip = "74.120.49.66"
    dst_ip = "206.200.125.172"      # the exchange's order entry
    src_port = 40565
    dst_port = 8001
    ttl = 64                        # optional, and so are the OUCH firm fields, one character
    display = "Y"                   # each: time_in_force, display, capacity,
                                    # intermarket_sweep, cross_type

Without [[feed]] the card keeps its subscriptions; without [order] its order template.

The trigger and risk semantics are the tick-to-trade issue's; this module only says what a
well-formed file is.
"""

import ipaddress
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from hdl.formats import (
    N_SUBSCRIPTIONS,
    RISK_NOTIONAL_BITS,
    RISK_POSITION_BITS,
    RISK_PRICE_BITS,
    RISK_QTY_BITS,
    RISK_RATE_BITS,
    SESSION_LEN,
    BookParams,
)
from host.model.book import symbol_code
from host.model.order_frame import OrderTemplate

__all__ = ["ConfigError", "Limits", "Instrument", "Feed", "CardConfig", "load_config",
           "parse_config"]


class ConfigError(ValueError):
    """A strategy and limits file that cannot be used; the message is one line."""


@dataclass(frozen=True)
class Limits:
    max_order_qty: int
    max_order_notional: int
    max_orders_per_second: int


@dataclass(frozen=True)
class Instrument:
    symbol: str
    min_qty: int
    order_qty: int
    max_position: int
    reference_px: int
    collar: int
    buy_below: int | None = None
    sell_above: int | None = None
    max_orders_per_second: int | None = None


@dataclass(frozen=True)
class Feed:
    group: int              # IPv4 multicast group, as an int
    port: int
    session: bytes          # SESSION_LEN ASCII bytes


@dataclass(frozen=True)
class CardConfig:
    limits: Limits
    instruments: tuple[Instrument, ...]
    feeds: tuple[Feed, ...] = ()
    template: OrderTemplate | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"limits": asdict(self.limits),
                               "instrument": [asdict(i) for i in self.instruments]}
        if self.feeds:
            out["feed"] = [{"group": str(ipaddress.IPv4Address(f.group)), "port": f.port,
                            "session": f.session.decode("ascii").rstrip()} for f in self.feeds]
        if self.template is not None:
            out["order"] = asdict(self.template)
        return out


# (field, lowest, highest, required) in file order; the highest is what the register holds.
_PRICE = (1, (1 << RISK_PRICE_BITS) - 1)
_LIMITS = (
    ("max_order_qty", 1, (1 << RISK_QTY_BITS) - 1, True),
    ("max_order_notional", 1, (1 << RISK_NOTIONAL_BITS) - 1, True),
    ("max_orders_per_second", 1, (1 << RISK_RATE_BITS) - 1, True),
)
_INSTRUMENT = (
    ("buy_below", *_PRICE, False),
    ("sell_above", *_PRICE, False),
    ("min_qty", 0, (1 << RISK_QTY_BITS) - 1, True),
    ("order_qty", 1, (1 << RISK_QTY_BITS) - 1, True),
    ("max_position", 0, (1 << (RISK_POSITION_BITS - 1)) - 1, True),
    ("reference_px", *_PRICE, True),
    ("collar", 0, (1 << RISK_PRICE_BITS) - 1, True),
    ("max_orders_per_second", 1, (1 << RISK_RATE_BITS) - 1, False),
)


def _integers(table: dict[str, Any], where: str, spec: tuple[tuple[str, int, int, bool], ...],
              extra: tuple[str, ...] = ()) -> dict[str, int | None]:
    allowed = tuple(name for name, *_ in spec) + extra
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown field {key!r}; allowed: {', '.join(allowed)}")
    out: dict[str, int | None] = {}
    for name, lo, hi, required in spec:
        value = table.get(name)
        if value is None:
            if required:
                raise ConfigError(f"{where}.{name} is required (an integer between {lo} and "
                                  f"{hi})")
            out[name] = None
            continue
        # bool is an int in Python; `true` is never a quantity.
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise ConfigError(f"{where}.{name} must be an integer between {lo} and {hi}, "
                              f"not {value!r}")
        out[name] = value
    return out


def parse_config(text: str, slots: int | None = None) -> CardConfig:
    """A validated CardConfig from the text of a strategy and limits file, or ConfigError."""
    slots = BookParams().slots if slots is None else slots
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}") from None
    for key in doc:
        if key not in ("limits", "instrument", "feed", "order"):
            raise ConfigError(f"unknown table {key!r}; allowed: limits, instrument, feed, order")
    limits_table = doc.get("limits")
    if not isinstance(limits_table, dict):
        raise ConfigError("[limits] is required: max_order_qty, max_order_notional, "
                          "max_orders_per_second")
    limits = Limits(**_integers(limits_table, "limits", _LIMITS))  # type: ignore[arg-type]

    tables = doc.get("instrument", [])
    if not isinstance(tables, list):
        raise ConfigError("instrument must be an array of tables ([[instrument]])")
    if len(tables) > slots:
        raise ConfigError(f"at most {slots} [[instrument]] tables (the card's watchlist), "
                          f"not {len(tables)}")
    instruments, seen = [], set()
    for i, table in enumerate(tables):
        where = f"instrument[{i}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table ([[instrument]]), not {table!r}")
        symbol = table.get("symbol")
        if not isinstance(symbol, str):
            raise ConfigError(f"{where}.symbol is required: a stock symbol of 1 to 8 "
                              f"characters, e.g. \"AAPL\"")
        try:
            symbol_code(symbol)
        except ValueError as e:
            raise ConfigError(f"{where}.symbol: {e}") from None
        if symbol in seen:
            raise ConfigError(f"{where}.symbol {symbol!r} is already configured; each "
                              f"instrument may appear once")
        seen.add(symbol)
        values = _integers(table, where, _INSTRUMENT, extra=("symbol",))
        instruments.append(Instrument(symbol=symbol, **values))  # type: ignore[arg-type]
    return CardConfig(limits, tuple(instruments), _feeds(doc.get("feed", [])),
                      _template(doc["order"]) if "order" in doc else None)


def _ipv4(value: Any, where: str, multicast: bool = False) -> int:
    kind = "an IPv4 multicast group" if multicast else "an IPv4 address"
    try:
        addr = ipaddress.IPv4Address(value if isinstance(value, str) else "-")
    except ValueError:
        raise ConfigError(f"{where} must be {kind} like \"233.54.12.111\", not {value!r}"
                          ) from None
    if multicast and not addr.is_multicast:
        raise ConfigError(f"{where} must be a multicast group (224.0.0.0/4), not {value!r}")
    return int(addr)


def _port(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ConfigError(f"{where} must be a UDP port between 1 and 65535, not {value!r}")
    return value


def _feeds(tables: Any) -> tuple[Feed, ...]:
    if not isinstance(tables, list):
        raise ConfigError("feed must be an array of tables ([[feed]])")
    if len(tables) > N_SUBSCRIPTIONS:
        raise ConfigError(f"at most {N_SUBSCRIPTIONS} [[feed]] tables (the card's "
                          f"subscriptions), not {len(tables)}")
    feeds = []
    for i, table in enumerate(tables):
        where = f"feed[{i}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table ([[feed]]), not {table!r}")
        for key in table:
            if key not in ("group", "port", "session"):
                raise ConfigError(f"{where}: unknown field {key!r}; allowed: group, port, "
                                  f"session")
        for key in ("group", "port", "session"):
            if key not in table:
                raise ConfigError(f"{where}.{key} is required")
        session = table["session"]
        if (not isinstance(session, str) or not 1 <= len(session) <= SESSION_LEN
                or not all(" " < c <= "~" for c in session)):
            raise ConfigError(f"{where}.session must be 1 to {SESSION_LEN} printable ASCII "
                              f"characters (MoldUDP64), not {session!r}")
        feeds.append(Feed(_ipv4(table["group"], f"{where}.group", multicast=True),
                          _port(table["port"], f"{where}.port"),
                          session.ljust(SESSION_LEN).encode("ascii")))
    return tuple(feeds)


def _template(table: Any) -> OrderTemplate:
    if not isinstance(table, dict):
        raise ConfigError(f"order must be a table ([order]), not {table!r}")
    allowed = [f.name for f in fields(OrderTemplate)]
    values: dict[str, Any] = {}
    for key, value in table.items():
        where = f"order.{key}"
        if key not in allowed:
            raise ConfigError(f"order: unknown field {key!r}; allowed: {', '.join(allowed)}")
        if key.endswith("_mac"):
            text = value if isinstance(value, str) else ""
            parts = text.split(":")
            if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF"
                                                               for c in p) for p in parts):
                raise ConfigError(f"{where} must be a MAC address like \"00:1c:73:85:bf:b3\", "
                                  f"not {value!r}")
            values[key] = int("".join(parts), 16)
        elif key.endswith("_ip"):
            values[key] = _ipv4(value, where)
        elif key.endswith("_port"):
            values[key] = _port(value, where)
        elif key == "ttl":
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 255:
                raise ConfigError(f"{where} must be an integer between 1 and 255, not {value!r}")
            values[key] = value
        else:
            if not isinstance(value, str) or len(value) != 1 or not " " <= value <= "~":
                raise ConfigError(f"{where} must be one printable ASCII character (an OUCH "
                                  f"field), not {value!r}")
            values[key] = value
    return OrderTemplate(**values)


def load_config(path: Path, slots: int | None = None) -> CardConfig:
    """`parse_config` of a file; errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    try:
        return parse_config(text, slots)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
