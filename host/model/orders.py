"""The order path of the card in the models: top-of-book updates in, orders sent or refused out.

Chains `host.model.trigger` (intents), `host.model.risk` (the gate) and `host.model.ouch` (the
Enter Order bytes): each intent is checked at the card cycle of its update's causing message
(`rx_cycle`; the gateware decides a fixed number of cycles later, which the throttle's
differences do not see); a sent one gets the next UserRefNum (from 1, strictly increasing) and
its OUCH message, with the firm fields of the order template the card is loaded with
(`host.model.order_frame.OrderTemplate`; by default those of the real EnterOrder capture, time
in force IOC). `orders_csv` writes DESIGN.md §4's orders.csv. No fills come in a replay, so
positions stay 0 and every sent order stays open, as the risk gate counts it.
"""

from collections.abc import Iterable
from dataclasses import dataclass, replace

from hdl.formats import Reject
from host.config import CardConfig
from host.model.book import TopUpdate
from host.model.order_frame import DEFAULT_TEMPLATE, OrderTemplate, enter_order
from host.model.risk import RiskModel
from host.model.trigger import TriggerModel

__all__ = ["SentOrder", "OrderFlow", "orders_csv", "ORDERS_HEADER", "fcs_mode"]

ORDERS_HEADER = "msg,symbol,side,qty,price,user_ref"


@dataclass(frozen=True)
class SentOrder:
    index: int              # the ITCH message that caused it
    slot: int
    symbol: str
    side: str
    qty: int
    price: int
    user_ref: int
    ouch: bytes             # the Enter Order message


class OrderFlow:
    def __init__(self, config: CardConfig, template: OrderTemplate = DEFAULT_TEMPLATE) -> None:
        self.config = config
        self.template = template
        self.triggers = TriggerModel(config)
        self.risk = RiskModel(config)
        self.next_ref = 1

    def update(self, u: TopUpdate) -> list[SentOrder]:
        sent = []
        for intent in self.triggers.update(u):
            if self.risk.check(intent, u, u.rx_cycle) is not Reject.NONE:
                continue
            symbol = self.config.instruments[intent.slot].symbol
            ref, self.next_ref = self.next_ref, self.next_ref + 1
            msg = enter_order(self.template, ref, intent.side, intent.qty, symbol, intent.price)
            sent.append(SentOrder(intent.index, intent.slot, symbol, intent.side, intent.qty,
                                  intent.price, ref, msg))
        return sent

    def counters(self) -> dict[str, object]:
        """`orders` and `rejects` (reason to count, only those that happened) for counters.json."""
        rejects = {k: v for k, v in self.risk.count.items() if k != "none" and v}
        return {"orders": self.risk.count["none"], "rejects": rejects}


def fcs_mode(sent: list[SentOrder], bad: set[int], fcs_safe: bool,
             template: OrderTemplate = DEFAULT_TEMPLATE) -> tuple[list[SentOrder], dict[str, int]]:
    """The orders the card sends given which messages (by index) came in frames that were then
    dropped (a bad FCS, a PHY error, a truncation: the verdict comes after the messages).
    Cut-through (`fcs_safe` false) sends every order as decided and counts those from dropped
    frames in `bad_frame_orders`; FCS-safe holds each order until its frame's verdict and sends
    only those from good frames, counting the others in `fcs_discarded` (they were charged to
    exposure and the throttle when decided, as the gate did: the host releases them).
    UserRefNum is given as frames go out, so the orders sent are numbered 1, 2, ... again."""
    hit = sum(o.index in bad for o in sent)
    if not fcs_safe:
        return sent, {"bad_frame_orders": hit, "fcs_discarded": 0}
    kept = [o for o in sent if o.index not in bad]
    return [replace(o, user_ref=ref, ouch=enter_order(template, ref, o.side, o.qty, o.symbol,
                                                      o.price))
            for ref, o in enumerate(kept, start=1)], {"bad_frame_orders": 0, "fcs_discarded": hit}


def orders_csv(orders: Iterable[SentOrder]) -> str:
    rows = [ORDERS_HEADER] + [f"{o.index},{o.symbol},{o.side},{o.qty},{o.price},{o.user_ref}"
                              for o in orders]
    return "\n".join(rows) + "\n"
