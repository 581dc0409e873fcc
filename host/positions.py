"""Positions and PnL from fills, as the controller daemon keeps them (`host.daemon`).

One `Position` per symbol: signed shares, the average cost of the open shares and the PnL
realised by closing shares against that average. Prices are ITCH integers (1/10000 dollar), so
PnL is in ITCH price units x shares. Averages are kept as exact fractions: a position built
from fills at 100 and 101 has an average of 201/2, and rounding it would make the realised PnL
drift from the fills' own arithmetic.

    buy 100 @ 50, buy 100 @ 60    ->  +200 @ 55
    sell 150 @ 70                 ->  +50 @ 55, realised += 150 x (70 - 55) = 2250
    sell 100 @ 40                 ->  closes 50 (realised += 50 x (40 - 55)), opens -50 @ 40

The daily loss is the loss realised since the start of the local day: `Book.daily_pnl` resets
when a fill (or `roll`) sees a new date.
"""

from dataclasses import dataclass, field
from datetime import date as Date
from fractions import Fraction
from typing import Any

__all__ = ["Position", "Positions", "SIDES"]

SIDES = ("B", "S")      # hdl.formats.OUCH_SIDES order: side index 0 buys, 1 sells


@dataclass
class Position:
    qty: int = 0                            # signed shares: > 0 long, < 0 short
    avg_cost: Fraction = Fraction(0)        # of the open shares; 0 when flat
    realised: Fraction = Fraction(0)        # since the position was first traded

    def fill(self, side: str, qty: int, price: int) -> Fraction:
        """Apply a fill of `qty` shares at `price`; the PnL it realised."""
        signed = qty if side == "B" else -qty
        realised = Fraction(0)
        if self.qty and (self.qty > 0) != (signed > 0):     # reduces (and maybe flips)
            closed = min(abs(self.qty), qty)
            direction = 1 if self.qty > 0 else -1
            realised = closed * (price - self.avg_cost) * direction
            self.qty += closed * -direction
            signed += closed * direction
            if self.qty == 0:
                self.avg_cost = Fraction(0)
        if signed:                                          # adds (or opens after a flip)
            total = abs(self.qty) + abs(signed)
            self.avg_cost = (self.avg_cost * abs(self.qty) + price * abs(signed)) / total
            self.qty += signed
        self.realised += realised
        return realised

    def unrealised(self, mark: int) -> Fraction:
        return self.qty * (mark - self.avg_cost)

    def as_json(self) -> dict[str, Any]:
        """Exact values as strings ("201/2"), for the state file."""
        return {"qty": self.qty, "avg_cost": str(self.avg_cost), "realised": str(self.realised)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Position":
        return cls(int(d["qty"]), Fraction(d["avg_cost"]), Fraction(d["realised"]))


@dataclass
class Positions:
    """Every symbol's position, and the PnL realised today."""
    by_symbol: dict[str, Position] = field(default_factory=dict)
    day: str = ""                           # ISO date the daily PnL counts from
    daily_pnl: Fraction = Fraction(0)

    def roll(self, today: Date) -> None:
        if self.day != today.isoformat():
            self.day, self.daily_pnl = today.isoformat(), Fraction(0)

    @property
    def daily_loss(self) -> Fraction:
        """The loss realised today (0 when today is a gain)."""
        return max(Fraction(0), -self.daily_pnl)

    def fill(self, symbol: str, side: str, qty: int, price: int, today: Date) -> Fraction:
        self.roll(today)
        realised = self.by_symbol.setdefault(symbol, Position()).fill(side, qty, price)
        self.daily_pnl += realised
        return realised

    def as_json(self) -> dict[str, Any]:
        return {"day": self.day, "daily_pnl": str(self.daily_pnl),
                "positions": {s: p.as_json() for s, p in sorted(self.by_symbol.items())}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Positions":
        return cls({s: Position.from_json(p) for s, p in d.get("positions", {}).items()},
                   str(d.get("day", "")), Fraction(d.get("daily_pnl", "0")))

    def report(self) -> dict[str, Any]:
        """For people and `--json`: numbers, averages rounded to 1/10000 of a price unit."""
        return {"day": self.day, "daily_pnl": float(self.daily_pnl),
                "daily_loss": float(self.daily_loss),
                "positions": {s: {"qty": p.qty, "avg_cost": round(float(p.avg_cost), 4),
                                  "realised": float(p.realised)}
                              for s, p in sorted(self.by_symbol.items())}}
