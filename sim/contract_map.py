"""The card's register map as the control-plane contract names it, for the host's tests.

The daemon (`host.daemon`) uses the blocks the tick-to-trade card adds (`host_op`, `positions`,
`tops`, `risk`, the limits' token buckets, the triggers' `armed`, `latency` rows and the
event layout under the JSON's "event" key). Until `hdl/regmap.py` declares them, `regmap()`
builds a stand-in with exactly those names from the same `hdl.regs` declarations; once the
real export has them, it returns the real one and this stand-in is dead code to delete.
"""

import json
from pathlib import Path
from typing import Any

from hdl.formats import (
    LATENCY_BINS,
    RISK_NOTIONAL_BITS,
    RISK_POSITION_BITS,
    RISK_PRICE_BITS,
    RISK_QTY_BITS,
    BookParams,
    Reject,
)
from hdl.regmap import EVENT_BITS, card_map
from hdl.regs import Block, Map, Register
from host.regmap import DEFAULT_PATH, RegMap

__all__ = ["EVENT_KINDS", "EVENT_FIELDS", "regmap", "export", "pack_event"]

EVENT_KINDS = ("NONE", "ORDER_SENT", "ORDER_REJECTED", "GAP", "UNCERTAIN", "CERTAIN")
EVENT_FIELDS = (("kind", 3), ("slot", 8), ("side", 1), ("qty", 32), ("price", 32),
                ("reason", 4), ("index", 32), ("cycle", 16))
assert sum(w for _, w in EVENT_FIELDS) == EVENT_BITS


def _event_json() -> dict[str, Any]:
    fields, at = [], 0
    for name, width in EVENT_FIELDS:
        f: dict[str, Any] = {"name": name, "offset": at, "width": width}
        if name == "kind":
            f["enum"] = {k: i for i, k in enumerate(EVENT_KINDS)}
        if name == "reason":
            f["enum"] = {r.name: r.value for r in Reject}
        fields.append(f)
        at += width
    return {"width": EVENT_BITS, "fields": fields}


def pack_event(**values: int) -> int:
    word, at = 0, 0
    for name, width in EVENT_FIELDS:
        word |= (values.get(name, 0) & ((1 << width) - 1)) << at
        at += width
    return word


def _stand_in() -> Map:
    slots = BookParams().slots
    qty, px = RISK_QTY_BITS, RISK_PRICE_BITS
    old = {b.block.name: b.block for b in card_map().blocks if b.block.name != "id"}
    rate = (Register("rate_period", 32), Register("rate_cap", 32))
    blocks = [old["feed"], old["book"], old["net"], old["subscriptions"], old["watchlist"],
              Block("limits", (Register("max_order_qty", qty),
                               Register("max_order_notional", RISK_NOTIONAL_BITS), *rate,
                               Register("reduce_only", 1),
                               Register("kill", 1, immediate=True)), shadow=True),
              Block("triggers", (
                  Register("buy_enable", 1), Register("buy_below", px),
                  Register("sell_enable", 1), Register("sell_above", px),
                  Register("min_qty", qty), Register("order_qty", qty),
                  Register("max_position", RISK_POSITION_BITS), Register("reference_px", px),
                  Register("collar", px), *rate, Register("reduce_only", 1),
                  Register("armed", 1), Register("kill", 1, immediate=True)),
                  count=slots, shadow=True),
              Block("positions", (Register("position", RISK_POSITION_BITS, access="ro"),
                                  Register("open_buy", qty, access="ro"),
                                  Register("open_sell", qty, access="ro")), count=slots),
              Block("host_op", (Register("kind", 2), Register("slot", 8), Register("side", 1),
                                Register("qty", qty), Register("apply", access="wo"))),
              Block("tops", tuple(Register(n, w, access="ro") for n, w in (
                  ("bid_px", px), ("bid_qty", qty), ("ask_px", px), ("ask_qty", qty),
                  ("uncertain", 1), ("halted", 1), ("state", 8), ("locate", 16))),
                  count=slots),
              old["order"],
              Block("risk", (Register("decisions", access="ro", count=len(Reject),
                                      labels=tuple(r.name.lower() for r in Reject)),
                             Register("killed", access="ro"),
                             Register("trigger_overruns", access="ro"),
                             Register("tx_frames", access="ro"),
                             Register("tx_underruns", access="ro"))),
              Block("latency", tuple(Register(n, access="ro") for n in (
                  "count", "last", "min", "max")) + (
                  Register("bins", access="ro", count=LATENCY_BINS),), count=2),
              old["events"]]
    return Map(blocks, (1, 99))


def _describe() -> dict[str, Any]:
    real = json.loads(DEFAULT_PATH.read_text())
    if any(b["name"] == "host_op" for b in real["blocks"]) and "event" in real:
        return dict(real)
    desc = _stand_in().describe()
    desc["event"] = _event_json()
    return dict(desc)


def regmap() -> RegMap:
    return RegMap(_describe())


def export(path: Path) -> Path:
    """Write the map's JSON to `path` (for a daemon started with `--regmap PATH`)."""
    path.write_text(json.dumps(_describe(), indent=1))
    return path
