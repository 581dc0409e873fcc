"""The controller daemon's `Controller` against the register bank's reference model.

The card is `CardTwin`: `host.model.regbank.RegBankModel` (the bank's Python twin: shadow
registers, commits, immediate kill switches, read strobes) as the backing of a `Transport`,
plus the two things behind the bank the daemon talks to: the event FIFO (a read of
`events.data`'s low word pops it, as the strobe says) and the risk gate's positions, which the
host_op strobe updates the way `host.model.risk.RiskModel` does. The map is the card's own
export (`firmware/regmap.json`, `host.regmap.RegMap.load()`); event words are packed by the
gateware's layout (`hdl.card.Event`), which the daemon decodes from the JSON.
"""

import json
from collections import deque
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hdl.card import ALL_SLOTS, Event, EventKind
from hdl.formats import CARD_CLOCK_HZ, HostOpKind, Reject
from host.card_config import registers
from host.config import parse_config
from host.daemon import ControlError, Controller, check_endpoint, load_regmap
from host.device import Device
from host.model.book import symbol_code
from host.model.regbank import RegBankModel
from host.positions import Position, Positions
from host.regmap import DEFAULT_PATH, RegMap

RM = RegMap.load()
SLOTS = RM.blocks["watchlist"].row_count

CONFIG = """
[limits]
max_order_qty = 800
max_order_notional = 1_200_000_000
max_orders_per_second = 50

[[instrument]]
symbol = "AAPL"
buy_below = 2924000
min_qty = 100
order_qty = 500
max_position = 3000
reference_px = 2924200
collar = 20000

[[instrument]]
symbol = "MSFT"
sell_above = 4000000
min_qty = 0
order_qty = 100
max_position = 1000
reference_px = 3990000
collar = 50000
max_orders_per_second = 7
"""


class CardTwin:
    """A Transport onto the register bank model, with the event FIFO and positions behind it."""

    def __init__(self, rm: RegMap) -> None:
        self.rm = rm
        self.bank = RegBankModel(rm)
        self.writes: list[tuple[int, int]] = []
        self.fifo: deque[int] = deque()
        self.position = [0] * SLOTS
        self.open = [[0, 0] for _ in range(SLOTS)]
        self.ops: list[tuple[int, int, int, int]] = []
        self._sync()

    def _sync(self) -> None:
        self.bank.inputs["events.level"] = len(self.fifo)
        self.bank.inputs["events.data"] = self.fifo[0] if self.fifo else 0
        for s in range(SLOTS):
            self.bank.inputs[f"positions[{s}].position"] = self.position[s] % (1 << 32)
            self.bank.inputs[f"positions[{s}].open_buy"] = self.open[s][0]
            self.bank.inputs[f"positions[{s}].open_sell"] = self.open[s][1]

    def read32(self, addr: int) -> int:
        value = self.bank.read(addr)
        if "events.data_read" in self.bank.strobes and self.fifo:
            self.fifo.popleft()
            self._sync()
        return value

    def write32(self, addr: int, value: int) -> None:
        self.writes.append((addr, value))
        self.bank.write(addr, value)
        if "host_op.apply" in self.bank.strobes:
            live = self.bank.live
            op = (live["host_op.kind"], live["host_op.slot"], live["host_op.side"],
                  live["host_op.qty"])
            self.ops.append(op)
            kind, slot, side, qty = op
            if kind in (HostOpKind.FILL, HostOpKind.RELEASE):
                self.open[slot][side] = max(0, self.open[slot][side] - qty)
            if kind == HostOpKind.FILL:
                self.position[slot] += -qty if side else qty
            if kind == HostOpKind.POSITION:
                self.position[slot] = qty - (1 << 32) if qty >> 31 else qty
            self._sync()

    def close(self) -> None:
        pass

    def live(self, name: str) -> int:
        return self.bank.live[self.rm[name].name]

    def snapshot(self) -> tuple[dict[str, int], bytes]:
        """Everything the host can change: live values and every readable word."""
        words = b"".join(self.bank.read(a).to_bytes(4, "little")
                         for a in sorted(self.bank.mapped()))
        return dict(self.bank.live), words


def pack_event(**fields: Any) -> int:
    """An `events.data` value as the card's event FIFO holds it."""
    return int(Event.const(fields).as_value().value)


@pytest.fixture
def card() -> CardTwin:
    return CardTwin(RM)


def controller(card: CardTwin, state: Path, today: date = date(2026, 3, 2)) -> Controller:
    c = Controller(Device(card, RM), state, today=lambda: today)
    c.start()
    return c


def ok(c: Controller, **request: Any) -> dict[str, Any]:
    reply = c.handle(request)
    assert reply["ok"], reply
    json.dumps(reply)               # what goes on the socket
    return dict(reply["result"])


def refused(c: Controller, **request: Any) -> str:
    reply = c.handle(request)
    assert not reply["ok"] and reply["code"] == 2, reply
    assert "\n" not in reply["error"]
    return str(reply["error"])


def test_host_op_kinds_are_the_gateware_ones() -> None:
    # One definition (hdl.formats), read by the gateware's HostOp and by the daemon; every
    # kind fits the card's host_op.kind register.
    import hdl.risk
    from host import daemon
    assert hdl.risk.HostOpKind is daemon.HostOpKind is HostOpKind
    assert all(k < 1 << RegMap.load()["host_op.kind"].width for k in HostOpKind)


def test_load_commits_every_row_it_staged(card: CardTwin, tmp_path: Path) -> None:
    c = controller(card, tmp_path / "state.json")
    card.writes.clear()
    result = ok(c, cmd="load", text=CONFIG, name="card.toml")
    assert [i["symbol"] for i in result["instrument"]] == ["AAPL", "MSFT"]
    # Live (committed) values, as the gateware would run on them.
    assert card.live("limits.max_order_qty") == 800
    assert card.live("limits.max_order_notional") == 1_200_000_000
    assert card.live("limits.rate_period") == CARD_CLOCK_HZ // 50
    assert card.live("limits.rate_cap") == 50 * (CARD_CLOCK_HZ // 50)
    assert [card.live(f"watchlist[{s}].symbol") for s in range(3)] == [
        symbol_code("AAPL"), symbol_code("MSFT"), 0]
    assert [card.live(f"watchlist[{s}].enable") for s in range(SLOTS)] == [1, 1] + [0] * (SLOTS - 2)
    assert (card.live("triggers[0].buy_enable"), card.live("triggers[0].buy_below"),
            card.live("triggers[0].sell_enable")) == (1, 2924000, 0)
    assert (card.live("triggers[1].sell_enable"), card.live("triggers[1].sell_above"),
            card.live("triggers[1].collar")) == (1, 4000000, 50000)
    assert card.live("triggers[1].rate_period") == CARD_CLOCK_HZ // 7
    assert card.live("triggers[1].rate_cap") == 7 * (CARD_CLOCK_HZ // 7)
    assert [card.live(f"triggers[{s}].armed") for s in range(SLOTS)] == [0] * SLOTS
    # Every row is written before the first commit; a slot's symbol goes live before its
    # trigger (its book restarts uncertain, so no order goes out by the new trigger on the old
    # symbol's book).
    names = [next(e.name for e in RM.elements() if e.addr <= addr < e.addr + 4 * e.words)
             for addr, _ in card.writes]
    commits = [i for i, n in enumerate(names) if n.endswith(".commit")]
    assert commits == list(range(commits[0], commits[-1] + 1))
    staged = {n.rsplit(".", 1)[0] for n in names[:commits[0]]}
    assert staged == {names[i][:-len(".commit")] for i in commits}
    # After the config: the switches and positions (immediate registers, host_op), no row.
    assert all(n.endswith(".kill") or n.startswith("host_op.") for n in names[commits[-1] + 1:])
    at = {name: i for i, name in enumerate(names)}
    for s in range(SLOTS):
        assert at[f"watchlist[{s}].commit"] < at["limits.commit"] < at[f"triggers[{s}].commit"]


def test_card_config_registers_name_only_map_registers() -> None:
    writes = registers(parse_config(CONFIG), None, armed=False, regmap=RM)
    for name, value in writes:
        assert 0 <= value < 1 << RM[name].width, name
    assert ("triggers[0].armed", 0) in writes and ("limits.commit", 0) in writes


def test_reload_of_the_same_symbols_leaves_the_watchlist(card: CardTwin, tmp_path: Path) -> None:
    """A watchlist commit restarts a slot's book; a reload of limits must not do it."""
    c = controller(card, tmp_path / "state.json")
    ok(c, cmd="load", text=CONFIG)
    card.writes.clear()
    ok(c, cmd="load", text=CONFIG.replace("order_qty = 500", "order_qty = 400"))
    watchlist = {RM[f"watchlist[{s}].{r}"].addr for s in range(SLOTS)
                 for r in RM.blocks["watchlist"].registers}
    assert card.writes and not any(addr in watchlist for addr, _ in card.writes)
    assert card.live("triggers[0].order_qty") == 400
    # Other symbols (or the same in other slots): the watchlist is rewritten.
    swapped = CONFIG.replace('"AAPL"', '"TMP"').replace('"MSFT"', '"AAPL"').replace(
        '"TMP"', '"MSFT"')
    ok(c, cmd="load", text=swapped)
    assert [card.live(f"watchlist[{s}].symbol") for s in range(2)] == [
        symbol_code("MSFT"), symbol_code("AAPL")]
    assert ok(c, cmd="book", symbol="AAPL")["slot"] == 1


def test_check_writes_nothing(card: CardTwin, tmp_path: Path) -> None:
    c = controller(card, tmp_path / "state.json")
    before, count = card.snapshot(), len(card.writes)
    result = ok(c, cmd="load", text=CONFIG, name="card.toml", check=True)
    assert result["checked_only"] and len(result["instrument"]) == 2
    assert len(card.writes) == count and card.snapshot() == before


BAD = {
    "missing field": (CONFIG.replace("order_qty = 500\n", ""), "instrument[0].order_qty"),
    "wrong type": (CONFIG.replace("collar = 20000", 'collar = "wide"'), "instrument[0].collar"),
    "out of range": (CONFIG.replace("max_order_qty = 800", "max_order_qty = 0"),
                     "limits.max_order_qty"),
    "unknown symbol": (CONFIG.replace('"MSFT"', '"MICROSOFT"'), "instrument[1].symbol"),
    "unknown key": (CONFIG.replace("collar = 50000", "collar = 50000\nstop_loss = 5"),
                    "stop_loss"),
    "malformed TOML": (CONFIG.replace("[limits]", "[limits"), "not valid TOML"),
}


@pytest.mark.parametrize("kind", BAD)
def test_bad_config_changes_nothing(kind: str, card: CardTwin, tmp_path: Path) -> None:
    c = controller(card, tmp_path / "state.json")
    ok(c, cmd="load", text=CONFIG.replace("800", "700"), name="old.toml")
    before, count = card.snapshot(), len(card.writes)
    text, field = BAD[kind]
    error = refused(c, cmd="load", text=text, name="card.toml")
    assert error.startswith("card.toml: ") and field in error
    assert len(card.writes) == count and card.snapshot() == before
    assert ok(c, cmd="status")["config"] == "old.toml"


def test_kill_and_unkill_are_immediate(card: CardTwin, tmp_path: Path) -> None:
    c = controller(card, tmp_path / "state.json")
    ok(c, cmd="load", text=CONFIG)
    assert ok(c, cmd="kill") == {"kill_card": True, "killed": []}
    assert card.live("limits.kill") == 1
    assert ok(c, cmd="kill", symbol="MSFT") == {"kill_card": True, "killed": ["MSFT"]}
    assert (card.live("triggers[1].kill"), card.live("triggers[0].kill")) == (1, 0)
    ok(c, cmd="unkill")
    assert card.live("limits.kill") == 0 and card.live("triggers[1].kill") == 1
    ok(c, cmd="unkill", symbol="MSFT")
    assert card.live("triggers[1].kill") == 0
    assert "'TSLA' is not on the card's watchlist" in refused(c, cmd="kill", symbol="TSLA")


def test_arm_and_disarm(card: CardTwin, tmp_path: Path) -> None:
    c = controller(card, tmp_path / "state.json")
    ok(c, cmd="load", text=CONFIG)
    assert ok(c, cmd="arm", symbol="MSFT")["armed"] == ["MSFT"]
    assert (card.live("triggers[0].armed"), card.live("triggers[1].armed")) == (0, 1)
    assert ok(c, cmd="arm", all=True)["armed"] == ["AAPL", "MSFT"]
    assert ok(c, cmd="disarm", symbol="AAPL")["armed"] == ["MSFT"]
    assert card.live("triggers[0].armed") == 0
    assert ok(c, cmd="disarm", all=True)["armed"] == []
    assert "symbol or --all" in refused(c, cmd="arm")
    assert "not both" in refused(c, cmd="arm", symbol="AAPL", all=True)
    # Arming does not move the rest of the row: what was loaded is still live.
    assert card.live("triggers[0].buy_below") == 2924000
    # A reload starts disarmed.
    ok(c, cmd="arm", all=True)
    ok(c, cmd="load", text=CONFIG)
    assert ok(c, cmd="status")["armed"] == []


def test_fill_moves_card_and_pnl(card: CardTwin, tmp_path: Path) -> None:
    c = controller(card, tmp_path / "state.json")
    ok(c, cmd="load", text=CONFIG)
    card.open[1] = [300, 200]
    card._sync()
    ok(c, cmd="fill", symbol="MSFT", side="B", qty=100, price=500_000)
    ok(c, cmd="fill", symbol="MSFT", side="B", qty=100, price=600_000)
    r = ok(c, cmd="fill", symbol="MSFT", side="S", qty=150, price=700_000)
    assert r["realised"] == 150 * (700_000 - 550_000)
    assert card.ops[-1] == (HostOpKind.FILL, 1, 1, 150)
    assert card.position[1] == 50 and card.open[1] == [100, 50]
    r = ok(c, cmd="fill", symbol="MSFT", side="S", qty=100, price=400_000)
    assert r["realised"] == 50 * (400_000 - 550_000)
    assert r["positions"]["MSFT"] == {"qty": -50, "avg_cost": 400_000,
                                      "realised": 150 * 150_000 - 50 * 150_000}
    assert card.position[1] == -50
    limits = ok(c, cmd="limits")
    assert limits["instruments"]["MSFT"]["card_position"] == -50
    assert limits["pnl"]["daily_pnl"] == 100 * 150_000 and limits["pnl"]["daily_loss"] == 0
    ok(c, cmd="release", symbol="MSFT", side="B", qty=60)
    assert card.ops[-1] == (HostOpKind.RELEASE, 1, 0, 60) and card.open[1] == [40, 0]
    assert "side must be B" in refused(c, cmd="fill", symbol="MSFT", side="X", qty=1, price=1)
    assert "qty must be" in refused(c, cmd="fill", symbol="MSFT", side="B", qty=0, price=1)
    assert "price must be" in refused(c, cmd="fill", symbol="MSFT", side="B", qty=1, price=0)
    assert "AAPL" in refused(c, cmd="fill", symbol="AMZN", side="B", qty=1, price=1)


def test_daily_loss_restarts_each_day(card: CardTwin, tmp_path: Path) -> None:
    c = controller(card, tmp_path / "state.json", today=date(2026, 3, 2))
    ok(c, cmd="load", text=CONFIG)
    ok(c, cmd="fill", symbol="AAPL", side="B", qty=10, price=1000)
    r = ok(c, cmd="fill", symbol="AAPL", side="S", qty=10, price=900)
    assert (r["daily_loss"], r["day"]) == (1000, "2026-03-02")
    c2 = controller(card, tmp_path / "state.json", today=date(2026, 3, 3))
    pnl = ok(c2, cmd="status")["pnl"]
    assert (pnl["daily_loss"], pnl["day"]) == (0, "2026-03-03")
    assert pnl["positions"]["AAPL"]["realised"] == -1000
    c3 = controller(card, tmp_path / "state.json", today=date(2026, 3, 3))
    ok(c3, cmd="fill", symbol="AAPL", side="S", qty=5, price=800)
    ok(c3, cmd="fill", symbol="AAPL", side="B", qty=5, price=1000)
    assert ok(c3, cmd="status")["pnl"]["daily_loss"] == 1000


def _killed_with_positions(card: CardTwin, state: Path) -> None:
    c = controller(card, state)
    ok(c, cmd="load", text=CONFIG)
    ok(c, cmd="kill")
    ok(c, cmd="kill", symbol="AAPL")
    ok(c, cmd="fill", symbol="AAPL", side="B", qty=300, price=2924000)
    ok(c, cmd="fill", symbol="MSFT", side="S", qty=70, price=3990000)


def test_restart_keeps_kills_and_positions(card: CardTwin, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    _killed_with_positions(card, state)
    # The card forgets the switches and positions (its risk state restarted); the config stays.
    for name in ("limits.kill", "triggers[0].kill"):
        card.write32(RM[name].addr, 0)
    card.position = [0] * SLOTS
    card._sync()
    card.writes.clear()
    c = controller(card, state)
    assert card.live("limits.kill") == 1 and card.live("triggers[0].kill") == 1
    assert card.live("triggers[1].kill") == 0
    assert card.position[:2] == [300, -70]
    assert not any(addr == RM["watchlist[0].commit"].addr for addr, _ in card.writes)
    s = ok(c, cmd="status")
    assert (s["kill_card"], s["killed"]) == (True, ["AAPL"])
    assert s["pnl"]["positions"]["AAPL"]["qty"] == 300
    assert s["pnl"]["positions"]["MSFT"] == {"qty": -70, "avg_cost": 3990000, "realised": 0}


def test_restart_onto_a_reset_card_reloads_the_config_disarmed(card: CardTwin,
                                                              tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    _killed_with_positions(card, state)
    ok(controller(card, state), cmd="arm", all=True)
    fresh = CardTwin(RM)
    c = controller(fresh, state)
    assert fresh.live("watchlist[1].symbol") == symbol_code("MSFT")
    assert fresh.live("triggers[0].buy_below") == 2924000
    assert fresh.live("limits.kill") == 1 and fresh.live("triggers[0].kill") == 1
    assert fresh.position[:2] == [300, -70]
    assert ok(c, cmd="status")["armed"] == []


def test_state_file_is_replaced_whole(card: CardTwin, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    c = controller(card, state)
    ok(c, cmd="load", text=CONFIG)
    ok(c, cmd="kill", symbol="MSFT")
    assert json.loads(state.read_text())["killed"] == ["MSFT"]
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]     # no temporaries left
    state.write_text("{")
    reply = Controller(Device(card, RM), state).handle({"cmd": "status"})
    assert reply["ok"]
    with pytest.raises(Exception, match="unreadable"):
        Controller(Device(card, RM), state).start()


def test_events_drain_and_decode(card: CardTwin, tmp_path: Path) -> None:
    c = controller(card, tmp_path / "state.json")
    cycle = (1 << 47) | 9               # the top word of the 160-bit value counts too
    sent = pack_event(kind=EventKind.ORDER_SENT, slot=1, side=1, qty=100, price=4000000,
                      index=77, cycle=cycle)
    refused_ = pack_event(kind=EventKind.ORDER_REJECTED, slot=0, qty=500, price=2924000,
                          reason=Reject.MAX_POSITION, index=78)
    card.fifo.extend([sent, refused_])
    card._sync()
    r = ok(c, cmd="events")
    assert r["events"][0] == {"seq": 1, "kind": "ORDER_SENT", "side": 1, "reason": "NONE",
                              "slot": 1, "qty": 100, "price": 4000000, "index": 77,
                              "cycle": cycle}
    assert [(e["seq"], e["kind"], e["slot"], e["qty"], e["index"]) for e in r["events"]] == [
        (1, "ORDER_SENT", 1, 100, 77), (2, "ORDER_REJECTED", 0, 500, 78)]
    assert r["events"][1]["reason"] == "MAX_POSITION" and r["next"] == 2
    assert not card.fifo
    card.fifo.extend([pack_event(kind=EventKind.GAP, cycle=5),
                      pack_event(kind=EventKind.UNCERTAIN, slot=ALL_SLOTS, index=6)])
    card._sync()
    assert c.poll_events() == 2
    later = ok(c, cmd="events", since=2)["events"]
    assert [(e["kind"], e["slot"]) for e in later] == [("GAP", 0), ("UNCERTAIN", ALL_SLOTS)]
    # The FIFO emptied under the daemon (level said more): an empty FIFO's kind 0 stops it.
    card.bank.inputs["events.level"] = 3
    assert c.poll_events() == 0 and ok(c, cmd="events", since=4)["events"] == []


def test_the_map_must_carry_the_event_layout(card: CardTwin, tmp_path: Path) -> None:
    assert load_regmap(None).event == RM.event == load_regmap(DEFAULT_PATH).event
    desc = json.loads(DEFAULT_PATH.read_text())
    del desc["event"]
    with pytest.raises(ControlError, match="no event layout"):
        Controller(Device(card, RegMap(desc)), tmp_path / "state.json")
    bad = tmp_path / "map.json"
    bad.write_text("{}")
    with pytest.raises(ControlError, match="cannot read the register map"):
        load_regmap(bad)


def test_status_book_latency(card: CardTwin, tmp_path: Path) -> None:
    c = controller(card, tmp_path / "state.json")
    ok(c, cmd="load", text=CONFIG)
    for name, value in (("bid_px", 2923900), ("bid_qty", 300), ("ask_px", 2924100),
                        ("ask_qty", 200), ("state", ord("T")), ("locate", 13)):
        card.bank.inputs[f"tops[1].{name}"] = value
    card.bank.inputs["latency[0].count"] = 3
    card.bank.inputs["latency[0].bins[4]"] = 3
    card.bank.inputs["risk.decisions[0]"] = 12
    assert ok(c, cmd="book", symbol="MSFT") == {
        "symbol": "MSFT", "slot": 1, "bid_px": 2923900, "bid_qty": 300, "ask_px": 2924100,
        "ask_qty": 200, "uncertain": 0, "halted": 0, "locate": 13, "state": "T"}
    lat = ok(c, cmd="latency")["kinds"]
    assert lat["add"]["count"] == 3 and lat["add"]["bins"][4] == 3 and lat["removal"]["count"] == 0
    s = ok(c, cmd="status")
    assert s["link"] == {"up": True} and s["id"]["magic"] == "0x434e4b54"
    assert s["counters"]["risk"]["decisions"]["none"] == 12
    assert "unknown command 'bogus'" in refused(c, cmd="bogus")
    assert "unexpected keyword" in refused(c, cmd="status", extra=1)


def test_endpoints_are_loopback_unless_told() -> None:
    assert check_endpoint("tcp://127.0.0.1:5555") == "tcp://127.0.0.1:5555"
    assert check_endpoint("ipc:///run/x.sock") == "ipc:///run/x.sock"
    with pytest.raises(ValueError, match="not loopback"):
        check_endpoint("tcp://0.0.0.0:5555")
    assert check_endpoint("tcp://0.0.0.0:5555", allow_remote=True)
    with pytest.raises(ValueError, match="ipc://PATH or tcp://"):
        check_endpoint("udp://127.0.0.1:5")


def test_average_cost_pnl_examples() -> None:
    p = Position()
    p.fill("B", 100, 50)
    p.fill("B", 100, 60)
    assert (p.qty, p.avg_cost) == (200, 55)
    assert p.fill("S", 150, 70) == 2250
    assert p.fill("S", 100, 40) == 50 * (40 - 55) and (p.qty, p.avg_cost) == (-50, 40)
    assert p.fill("B", 50, 30) == 500 and (p.qty, p.avg_cost) == (0, 0)
    p.fill("B", 1, 100)
    p.fill("B", 2, 101)
    assert p.avg_cost == Fraction(302, 3)
    assert Position.from_json(json.loads(json.dumps(p.as_json()))) == p


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("BS"), st.integers(1, 1000), st.integers(1, 10**7)),
                max_size=30), st.integers(1, 10**7))
def test_pnl_adds_up_to_the_cash(fills: list[tuple[str, int, int]], mark: int) -> None:
    """Realised + unrealised at any mark is the cash the fills moved plus the position's
    worth at that mark: average cost loses nothing."""
    book = Positions()
    cash, qty = 0, 0
    for side, q, px in fills:
        book.fill("X", side, q, px, date(2026, 1, 1))
        signed = q if side == "B" else -q
        cash -= signed * px
        qty += signed
    p = book.by_symbol.get("X", Position())
    assert p.qty == qty
    assert p.realised + p.unrealised(mark) == cash + qty * mark
    assert book.daily_pnl == p.realised
