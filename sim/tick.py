"""The strategy and limits file (`host.config.CardConfig`) as the tick-to-trade gateware's input
registers (`hdl.trigger.TriggerConfig`, `hdl.risk.SlotLimits`, `hdl.risk.CardLimits`), for the
simulations that drive those ports directly. The token buckets' period and cap are the model's
(`host.model.risk.Bucket`), so both count the same credits.
"""

import random
from typing import Any

from amaranth import Elaboratable, Module
from amaranth.lib import wiring

from hdl.formats import CARD_CLOCK_HZ
from hdl.risk import CardLimits, RiskGate, SlotLimits
from hdl.trigger import Trigger, TriggerConfig
from host.config import CardConfig, Instrument, Limits
from host.model.book import TopUpdate
from host.model.risk import bucket_registers

__all__ = ["TickPath", "trigger_rows", "slot_limit_rows", "card_limits", "touch_config"]


class TickPath(Elaboratable):
    """Triggers and risk gate wired as `hdl.core.Core` wires them, for the simulations that
    drive the top-of-book updates, the configuration and `trigger.next_slot` themselves."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.trigger = Trigger(slots)
        self.gate = RiskGate(slots)

    def configure(self, ctx: Any, config: CardConfig, clock_hz: int) -> None:
        """Set the triggers' and the gate's configuration inputs to `config` (a testbench's
        `ctx`); the caller pulses `gate.load`."""
        for i, row in enumerate(trigger_rows(config, self.slots)):
            ctx.set(self.trigger.config[i], TriggerConfig.const(row))
            ctx.set(self.gate.order_qty[i], row.get("order_qty", 0))
        for i, row in enumerate(slot_limit_rows(config, self.slots, clock_hz)):
            ctx.set(self.gate.limits[i], SlotLimits.const(row))
        ctx.set(self.gate.card, CardLimits.const(card_limits(config, clock_hz)))

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        m.submodules.trigger, m.submodules.gate = self.trigger, self.gate
        wiring.connect(m, self.trigger.intent, self.gate.intent)
        m.d.comb += [self.gate.terms.eq(self.trigger.terms), self.gate.fire.eq(self.trigger.fire),
                     self.gate.update.valid.eq(self.trigger.update.valid),
                     self.gate.update.payload.eq(self.trigger.update.payload),
                     self.gate.next_slot.eq(self.trigger.next_slot)]
        return m


def trigger_rows(config: CardConfig, slots: int) -> list[dict[str, int]]:
    rows = []
    for i in range(slots):
        if i >= len(config.instruments):
            rows.append({})
            continue
        inst = config.instruments[i]
        rows.append({"buy_on": inst.buy_below is not None, "buy_below": inst.buy_below or 0,
                     "sell_on": inst.sell_above is not None,
                     "sell_above": inst.sell_above or 0,
                     "min_qty": inst.min_qty, "order_qty": inst.order_qty})
    return rows


def _bucket(rate: int, clock_hz: int) -> dict[str, int]:
    return dict(zip(("rate_period", "rate_cap"), bucket_registers(rate, clock_hz), strict=True))


def slot_limit_rows(config: CardConfig, slots: int,
                    clock_hz: int = CARD_CLOCK_HZ) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i in range(slots):
        if i >= len(config.instruments):
            rows.append({})
            continue
        inst = config.instruments[i]
        rate = inst.max_orders_per_second or config.limits.max_orders_per_second
        rows.append({"max_position": inst.max_position, "reference_px": inst.reference_px,
                     "collar": inst.collar} | _bucket(rate, clock_hz))
    return rows


def card_limits(config: CardConfig, clock_hz: int = CARD_CLOCK_HZ) -> dict[str, int]:
    lim = config.limits
    return {"max_order_qty": lim.max_order_qty, "max_order_notional": lim.max_order_notional,
            } | _bucket(lim.max_orders_per_second, clock_hz)


def touch_config(updates: list[TopUpdate], symbols: tuple[str, ...], rng: random.Random,
                 rate: int) -> CardConfig:
    """A strategy for a generated day whose book `updates` are known: thresholds at each
    instrument's median touch, so the triggers fire often both ways, and random limits that
    refuse some of them for most of the reasons a replay can show."""
    instruments = []
    for slot, symbol in enumerate(symbols):
        asks = sorted(u.ask_px for u in updates if u.slot == slot and u.ask_px)
        bids = sorted(u.bid_px for u in updates if u.slot == slot and u.bid_px)
        ask, bid = asks[len(asks) // 2], bids[len(bids) // 2]
        instruments.append(Instrument(
            symbol, min_qty=rng.choice([0, 100]), order_qty=rng.choice([100, 300, 1000]),
            max_position=rng.choice([500, 5000]), reference_px=(ask + bid) // 2,
            collar=max(1, (ask - bid) * rng.choice([1, 4])), buy_below=ask, sell_above=bid,
            max_orders_per_second=rng.choice([None, 4])))
    return CardConfig(Limits(max_order_qty=800, max_order_notional=2_000_000_000,
                             max_orders_per_second=rate), tuple(instruments))
