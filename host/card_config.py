"""The register writes that load a whole strategy and limits file into the card.

`registers(config, template)` lists (register name, value) in the order to write them; a name
ending in `.commit` is a commit of its row. Every row is staged completely before its commit,
so the card never runs on half of an instrument or half of the limits; a slot's trigger row
(disarmed) is committed before its watchlist row. Slot i of the card is
instrument i of the file; the rows of unused slots are cleared (watchlist disabled, trigger
zeroed). The kill switches (`immediate`) and the trigger's `armed` bit are the operator's, not
the file's: a loaded trigger starts disarmed (`hostctl arm` arms it), and kills are left as
they are.

Names are the card's register map (`firmware/regmap.json`): limits.rate_period / rate_cap are
a token bucket on the card clock, as `host.model.risk.Bucket` computes them from an
orders-per-second rate.

The `card` branch writes this module too, with the same signature; the lead keeps one.
"""

from hdl.formats import CARD_CLOCK_HZ, ORDER_TEMPLATE, ORDER_TEMPLATE_TEXT, BookParams
from host.config import CardConfig
from host.model.book import symbol_code
from host.model.order_frame import OrderTemplate
from host.model.risk import Bucket

__all__ = ["registers", "bucket_registers"]


def bucket_registers(rate: int) -> tuple[int, int]:
    """(rate_period, rate_cap) of a token bucket of `rate` orders per second."""
    bucket = Bucket(rate, CARD_CLOCK_HZ)
    return bucket.period, bucket.rate * bucket.period


def registers(config: CardConfig, template: OrderTemplate | None = None,
              slots: int | None = None) -> list[tuple[str, int]]:
    slots = BookParams().slots if slots is None else slots
    out: list[tuple[str, int]] = []
    lim = config.limits
    period, cap = bucket_registers(lim.max_orders_per_second)
    out += [("limits.max_order_qty", lim.max_order_qty),
            ("limits.max_order_notional", lim.max_order_notional),
            ("limits.rate_period", period), ("limits.rate_cap", cap),
            ("limits.reduce_only", 0), ("limits.commit", 1)]
    for slot in range(slots):
        inst = config.instruments[slot] if slot < len(config.instruments) else None
        w, t = f"watchlist[{slot}]", f"triggers[{slot}]"
        if inst is None:
            values = dict.fromkeys(("buy_enable", "buy_below", "sell_enable", "sell_above",
                                    "min_qty", "order_qty", "max_position", "reference_px",
                                    "collar", "rate_period", "rate_cap", "reduce_only"), 0)
        else:
            period, cap = bucket_registers(inst.max_orders_per_second
                                           or lim.max_orders_per_second)
            values = {
                "buy_enable": int(inst.buy_below is not None),
                "buy_below": inst.buy_below or 0,
                "sell_enable": int(inst.sell_above is not None),
                "sell_above": inst.sell_above or 0,
                "min_qty": inst.min_qty, "order_qty": inst.order_qty,
                "max_position": inst.max_position, "reference_px": inst.reference_px,
                "collar": inst.collar, "rate_period": period, "rate_cap": cap,
                "reduce_only": 0,
            }
        out += [(f"{t}.{k}", v) for k, v in values.items()]
        out += [(f"{t}.armed", 0), (f"{t}.commit", 1)]
        # The trigger first: a slot's new symbol must never meet its old, maybe armed, trigger.
        out += [(f"{w}.symbol", symbol_code(inst.symbol) if inst else 0),
                (f"{w}.enable", int(inst is not None)), (f"{w}.commit", 1)]
    if template is not None:
        # next_user_ref is left alone: OUCH wants it strictly increasing all day, and only the
        # operator knows where the day's numbering is.
        for name, _ in ORDER_TEMPLATE:
            value = getattr(template, name)
            out.append((f"order.{name}", ord(value) if name in ORDER_TEMPLATE_TEXT else value))
        out.append(("order.commit", 1))
    return out
