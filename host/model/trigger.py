"""Reference model of the card's triggers: top-of-book updates in, order intents out.

The specification the tick-to-trade gateware will be tested against (the risk gate, which every
intent then passes through, is its own block). Per configured instrument (`host.config`; slot i
is the i-th [[instrument]], which is also the watchlist order) and side:

* buy: the condition is "best ask > 0, best ask <= buy_below and ask shares >= min_qty";
  sell: "best bid > 0, best bid >= sell_above and bid shares >= min_qty". A side without its
  threshold has no condition.
* Edge-triggered: an intent is made when a condition *becomes* true on an update of that
  instrument, and not again until an update has found it false. Making the intent consumes the
  edge whatever the risk gate then decides.
* The intent is an immediate-or-cancel limit order at the touched price for
  min(order_qty, touched shares).
* A clear (S start or end of day: every book empty) makes every condition false.
* When one update makes both sides true (only a crossed configuration can), buy comes first.

Halted and uncertain books still make intents: the risk gate refuses them, with a reason.
"""

from dataclasses import dataclass

from host.config import CardConfig
from host.model.book import TopUpdate

__all__ = ["Intent", "TriggerModel"]


@dataclass(frozen=True)
class Intent:
    slot: int
    side: str               # "B" buy or "S" sell
    qty: int
    price: int              # ITCH price units
    index: int              # the ITCH message whose update made it
    rx_cycle: int


class TriggerModel:
    def __init__(self, config: CardConfig) -> None:
        self.instruments = config.instruments
        self.was_true = [[False, False] for _ in self.instruments]   # condition true last time

    def update(self, u: TopUpdate) -> list[Intent]:
        if u.clear:
            self.was_true = [[False, False] for _ in self.instruments]
            return []
        if u.slot >= len(self.instruments):
            return []
        inst, was = self.instruments[u.slot], self.was_true[u.slot]
        buy = (inst.buy_below is not None and 0 < u.ask_px <= inst.buy_below
               and u.ask_qty >= inst.min_qty)
        sell = (inst.sell_above is not None and u.bid_px > 0 and u.bid_px >= inst.sell_above
                and u.bid_qty >= inst.min_qty)
        out = []
        if buy and not was[0]:
            out.append(Intent(u.slot, "B", min(inst.order_qty, u.ask_qty), u.ask_px, u.index,
                              u.rx_cycle))
        if sell and not was[1]:
            out.append(Intent(u.slot, "S", min(inst.order_qty, u.bid_qty), u.bid_px, u.index,
                              u.rx_cycle))
        was[0], was[1] = buy, sell
        return out
