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

The trigger and risk semantics are the tick-to-trade issue's; this module only says what a
well-formed file is.
"""

import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hdl.formats import (
    RISK_NOTIONAL_BITS,
    RISK_POSITION_BITS,
    RISK_PRICE_BITS,
    RISK_QTY_BITS,
    RISK_RATE_BITS,
    BookParams,
)
from host.model.book import symbol_code

__all__ = ["ConfigError", "Limits", "Instrument", "CardConfig", "load_config", "parse_config"]


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
class CardConfig:
    limits: Limits
    instruments: tuple[Instrument, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"limits": asdict(self.limits),
                "instrument": [asdict(i) for i in self.instruments]}


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
        if key not in ("limits", "instrument"):
            raise ConfigError(f"unknown table {key!r}; allowed: limits, instrument")
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
    return CardConfig(limits, tuple(instruments))


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
