"""A strategy and limits file (`host.config.CardConfig`) as the register writes that load it into
the card (`hdl.card.Card`, names from `hdl.regmap` through the JSON export).

    for name, value in registers(config, template):
        device.write(name, value)       # "x.commit" entries: the commit write (any value)

Everything is staged first and committed at the end, row after row (the watchlist rows, limits,
every triggers row, the order template), so the card runs on a mixed configuration only for
the few bus cycles between those commits, and never on half a row. The token buckets are
`host.model.risk.Bucket`'s: `rate_period` = CARD_CLOCK_HZ // orders per second, `rate_cap` =
orders per second x rate_period; an instrument without its own rate takes the card's. Slots
without an instrument are disarmed (no trigger, zero limits). The switches (`kill`,
`reduce_only`) are the operator's and are not written.
"""

from hdl.formats import CARD_CLOCK_HZ, ORDER_TEMPLATE, ORDER_TEMPLATE_TEXT
from host.config import CardConfig
from host.model.book import symbol_code
from host.model.order_frame import OrderTemplate
from host.model.risk import bucket_registers
from host.regmap import RegMap

__all__ = ["registers"]

_TRIGGER = ("buy_enable", "buy_below", "sell_enable", "sell_above", "min_qty", "order_qty",
            "max_position", "reference_px", "collar", "rate_period", "rate_cap", "armed")


def registers(config: CardConfig, template: OrderTemplate | None, *, watchlist: bool = True,
              armed: bool = True, next_user_ref: int | None = None,
              regmap: RegMap | None = None,
              clock_hz: int = CARD_CLOCK_HZ) -> list[tuple[str, int]]:
    """(register name, value) writes, in order, that load `config` (and its feeds, if it names
    any: every subscription row is rewritten) and `template` (None: leave the card's template
    as it is); a commit is ("block[row].commit", 0). `watchlist`: also
    write each slot's symbol (a watchlist commit restarts that slot's book: its top is
    uncertain until the next clear, so reload a running day with watchlist=False when the
    instruments stay). `armed`: the configured triggers may fire at once (the controller
    loads them disarmed: `hostctl arm` arms them). `next_user_ref`: also set the OUCH
    UserRefNum of the next order. `regmap` gives the card's number of slots (the export's by
    default)."""
    rm = regmap or RegMap.load()
    slots = rm.blocks["triggers"].row_count
    if len(config.instruments) > slots:
        raise ValueError(f"the card has {slots} slots; the config has "
                         f"{len(config.instruments)} instruments")
    lim = config.limits
    out: list[tuple[str, int]] = [
        ("limits.max_order_qty", lim.max_order_qty),
        ("limits.max_order_notional", lim.max_order_notional),
    ]
    period, cap = bucket_registers(lim.max_orders_per_second, clock_hz)
    out += [("limits.rate_period", period), ("limits.rate_cap", cap)]

    for slot in range(slots):
        values = dict.fromkeys(_TRIGGER, 0)
        if slot < len(config.instruments):
            inst = config.instruments[slot]
            rate = inst.max_orders_per_second or lim.max_orders_per_second
            period, cap = bucket_registers(rate, clock_hz)
            values.update(
                buy_enable=inst.buy_below is not None, buy_below=inst.buy_below or 0,
                sell_enable=inst.sell_above is not None, sell_above=inst.sell_above or 0,
                min_qty=inst.min_qty, order_qty=inst.order_qty,
                max_position=inst.max_position, reference_px=inst.reference_px,
                collar=inst.collar, rate_period=period, rate_cap=cap, armed=armed)
        out += [(f"triggers[{slot}].{name}", int(values[name])) for name in _TRIGGER]
        if watchlist:
            symbol = (symbol_code(config.instruments[slot].symbol)
                      if slot < len(config.instruments) else 0)
            out += [(f"watchlist[{slot}].symbol", symbol),
                    (f"watchlist[{slot}].enable", int(slot < len(config.instruments)))]

    # The feeds, when the file names them: every row, so a feed the file dropped stops.
    feed_rows = rm.blocks["subscriptions"].row_count if config.feeds else 0
    for row in range(feed_rows):
        f = config.feeds[row] if row < len(config.feeds) else None
        out += [(f"subscriptions[{row}].valid", int(f is not None)),
                (f"subscriptions[{row}].group", f.group if f else 0),
                (f"subscriptions[{row}].port", f.port if f else 0),
                (f"subscriptions[{row}].session", int.from_bytes(f.session, "big") if f else 0),
                (f"subscriptions[{row}].next_seq", 0)]

    for name, _ in ORDER_TEMPLATE if template is not None else ():
        value = getattr(template, name)
        out.append((f"order.{name}", ord(value) if name in ORDER_TEMPLATE_TEXT else value))
    if next_user_ref is not None:
        out.append(("order.next_user_ref", next_user_ref))

    out += [(f"subscriptions[{row}].commit", 0) for row in range(feed_rows)]
    # The watchlist first: a slot whose symbol changes is uncertain (refuses orders) before its
    # new trigger is live, so no order goes out on the old symbol's book by the new trigger.
    if watchlist:
        out += [(f"watchlist[{slot}].commit", 0) for slot in range(slots)]
    out.append(("limits.commit", 0))
    out += [(f"triggers[{slot}].commit", 0) for slot in range(slots)]
    if template is not None or next_user_ref is not None:
        out.append(("order.commit", 0))
    for name, _ in out:
        rm[name]        # every name exists in the card's map (RegMapError otherwise)
    return out
