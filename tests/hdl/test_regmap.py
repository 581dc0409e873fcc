"""The register map: the committed export is what the map gives, the map follows the wire
formats it is built from, and bad declarations are refused with a useful message."""

import json

import pytest
from amaranth import Shape
from amaranth.lib import data

from firmware import regmap as export
from hdl.beats import Subscription
from hdl.card import Event, EventKind
from hdl.formats import (
    BOOK_COUNTERS,
    ITCH_TYPES,
    LATENCY_BINS,
    LATENCY_KINDS,
    N_SUBSCRIPTIONS,
    ORDER_TEMPLATE,
    RISK_NOTIONAL_BITS,
    BookParams,
    Drop,
    Reject,
)
from hdl.regmap import CARD_MAP, EVENT_BITS, card_map
from hdl.regs import Block, Map, Register
from host.regmap import RegMap


@pytest.mark.parametrize("path", [export.JSON_PATH, export.HEADER_PATH], ids=lambda p: p.name)
def test_committed_export_is_current(path) -> None:
    fresh = export.outputs()[path]
    assert path.exists() and path.read_text() == fresh, \
        f"firmware/{path.name} is stale: regenerate it with `{export.REGENERATE}` and commit it"


def test_check_mode_passes() -> None:
    assert export.main(["--check"]) == 0


def test_map_follows_the_formats() -> None:
    rm = RegMap.load()
    assert rm.hash == CARD_MAP.hash and rm.version == CARD_MAP.version
    sub = rm.blocks["subscriptions"]
    assert sub.rows == N_SUBSCRIPTIONS and sub.shadow
    assert [(r.name, r.width) for r in sub.registers.values() if r.name != "commit"] == \
        [(n, Shape.cast(f.shape).width) for n, f in data.Layout.cast(Subscription)]
    assert rm["feed.drops[mac_fcs]"].index == Drop.MAC_FCS
    assert rm["feed.messages_by_type[h]"].index == ITCH_TYPES.index("h")
    assert [r for r in rm.blocks["book"].registers] == list(BOOK_COUNTERS)
    assert rm["limits.max_order_notional"].words == RISK_NOTIONAL_BITS // 32
    assert rm["limits.kill"].live_addr is None and rm["limits.max_order_qty"].live_addr
    # A different build of the book (slots) is a different map: the hash says so.
    assert card_map().hash == CARD_MAP.hash
    assert card_map(BookParams(slots=8)).hash != CARD_MAP.hash


# The register names the host codes against (the card/host contract): exactly these, in order.
CONTRACT = {
    "limits": ["max_order_qty", "max_order_notional", "rate_period", "rate_cap", "reduce_only",
               "kill", "commit"],
    "triggers": ["buy_enable", "buy_below", "sell_enable", "sell_above", "min_qty", "order_qty",
                 "max_position", "reference_px", "collar", "rate_period", "rate_cap",
                 "reduce_only", "armed", "kill", "commit"],
    "positions": ["position", "open_buy", "open_sell"],
    "host_op": ["kind", "slot", "side", "qty", "apply"],
    "tops": ["bid_px", "bid_qty", "ask_px", "ask_qty", "uncertain", "halted", "state", "locate"],
    "order": [n for n, _ in ORDER_TEMPLATE] + ["next_user_ref", "user_ref_next", "commit"],
    "risk": ["decisions", "killed", "trigger_overruns", "tx_frames", "tx_underruns",
             "bad_frame_orders", "fcs_discarded"],
    "latency": ["count", "last", "min", "max", "bins"],
    "events": ["data", "level", "overflow"],
}


def test_contract_blocks_and_names() -> None:
    rm = RegMap.load()
    assert list(rm.blocks) == ["id", "feed", "book", "net", "subscriptions", "watchlist",
                               "limits", "triggers", "positions", "host_op", "tops", "order",
                               "risk", "latency", "events"]
    for block, names in CONTRACT.items():
        assert list(rm.blocks[block].registers) == names, block
    slots = BookParams().slots
    shadow = {"subscriptions", "watchlist", "limits", "triggers", "order"}
    for name, b in rm.blocks.items():
        assert b.shadow == (name in shadow), name
    for name in ("watchlist", "triggers", "positions", "tops"):
        assert rm.blocks[name].rows == slots
    assert rm.blocks["latency"].rows == len(LATENCY_KINDS)
    assert rm["limits.kill"].info.immediate and rm["triggers[2].kill"].info.immediate
    assert rm["risk.decisions[none]"].index == Reject.NONE
    assert rm["risk.decisions[rate_instrument]"].index == Reject.RATE_INSTRUMENT
    assert rm["latency[1].bins[31]"].index == LATENCY_BINS - 1
    assert rm["host_op.apply"].access == "wo"
    assert rm["events.data"].info.read_strobe and rm["events.data"].width == EVENT_BITS
    assert rm["order.ttl"].info.init == 64 and rm["order.next_user_ref"].info.init == 1


def test_event_layout_is_exported() -> None:
    rm = RegMap.load()
    fields = data.Layout.cast(Event)
    assert [(f.name, f.offset, f.width) for f in rm.event.values()] == \
        [(n, f.offset, f.width) for n, f in fields]
    assert sum(f.width for f in rm.event.values()) == EVENT_BITS
    kind = rm.event["kind"]
    assert [kind.name_of(k.value) for k in EventKind] == [k.name for k in EventKind]
    assert rm.event["reason"].name_of(Reject.COLLAR) == "COLLAR"
    value = Event.const({"kind": EventKind.GAP, "slot": 3, "cycle": 1 << 40}).as_value().value
    assert rm.decode_event(value) == {"kind": EventKind.GAP.value, "side": 0, "reason": 0,
                                      "slot": 3, "qty": 0, "price": 0, "index": 0,
                                      "cycle": 1 << 40}


def test_header_defines_every_register() -> None:
    header = export.render_header()
    for block in json.loads(export.render_json())["blocks"]:
        for r in block["registers"]:
            name = f"TICKNIC_{block['name']}_{r['name']}_ADDR".upper()
            assert f"#define {name} 0x{r['addr']:03X}\n" in header


def test_blocks_are_aligned_and_disjoint() -> None:
    spans = sorted((pb.base, pb.end) for pb in CARD_MAP.blocks)
    for (_, end), (base, _) in zip(spans, spans[1:], strict=False):
        assert end <= base and base % 16 == 0


@pytest.mark.parametrize("build, message", [
    (lambda: Register("x", 0), "width must be between 1 and 256, not 0"),
    (lambda: Register("x", access="rx"), "access must be one of rw, ro, wo, not 'rx'"),
    (lambda: Register("X"), "a name is lower case"),
    (lambda: Register("x", 4, init=16), "init must fit 4 bits"),
    (lambda: Register("x", access="ro", immediate=True), "only rw registers can be immediate"),
    (lambda: Register("x", count=2, labels=("a",)), "1 labels for 2 elements"),
    (lambda: Block("b", (Register("x", access="ro"),), shadow=True), "needs an rw register"),
    (lambda: Block("b", (Register("x", immediate=True),)), "only make sense in a shadowed"),
    (lambda: Block("b", (Register("x"), Register("commit")), shadow=True),
     "names used twice: commit"),
    (lambda: Map([Block("id", (Register("x"),))], (1, 0)), "not 'id'"),
    (lambda: Map([Block("b", (Register("x", 256, count=40),))], (1, 0)), "at most 255 fit"),
])
def test_bad_declarations_say_what_is_allowed(build, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        build()
