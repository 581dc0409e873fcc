"""`hostctl` driving the simulated card exactly as a real one: the co-simulation server
(`hostctl sim start`: the whole card, `hdl.card.Card`, in Verilator), the controller daemon on
`sim://`, a strategy file loaded and armed, market data as real UDP multicast datagrams on
loopback, the book read back from the card, the order received as a real UDP datagram on a
loopback socket, the kill switch stopping the next one, and the card's counters matching what
was sent.

The card is built with a small book (2 slots) so its first Verilator build stays short; the
daemon reads that card's register map from the server.
"""

import json
import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from host.cli import main as hostctl
from host.model.itch import encode
from host.model.ouch import decode_enter_order
from host.model.pack import mold_packet
from sim.cosim import free_port_pair, request

BOOK = "slots=2,sets=16,ways=4,levels=4"
SESSION = "E2ECTRL001"




class Rig:
    def __init__(self, tmp: Path) -> None:
        rng = random.Random()
        self.tmp = tmp
        self.endpoint = f"tcp://127.0.0.1:{free_port_pair()}"
        self.group = f"239.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        self.feed_port = rng.randrange(20000, 60000)
        self.orders = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.orders.bind(("127.0.0.1", 0))
        self.market = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.market.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                               socket.inet_aton("127.0.0.1"))
        self.seq = 1
        self.packets = 0

    def send(self, *messages: dict[str, object]) -> None:
        """One MoldUDP64 packet of ITCH messages to the feed, as a real multicast datagram."""
        encoded = [encode(m) for m in messages]
        self.market.sendto(mold_packet(SESSION.encode(), self.seq, encoded),
                           (self.group, self.feed_port))
        self.seq += len(encoded)
        self.packets += 1

    def order(self, timeout: float) -> dict[str, object] | None:
        self.orders.settimeout(timeout)
        try:
            payload, _ = self.orders.recvfrom(2048)
        except TimeoutError:
            return None
        assert payload[2:3] == b"U"                 # SoupBinTCP unsequenced data
        fields, _ = decode_enter_order(payload[3:])
        return fields


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    monkeypatch.setenv("TICKNIC_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("TICKNIC_STATE", str(tmp_path / "state.json"))
    r = Rig(tmp_path)
    # The daemon drains the card's events itself, so the server must not (--no-events).
    assert hostctl(["sim", "start", "--endpoint", r.endpoint, "--listen",
                    f"{r.group}:{r.feed_port}", "--book", BOOK, "--no-events"]) == 0
    try:
        regmap = tmp_path / "regmap.json"
        regmap.write_text(json.dumps(request(r.endpoint, {"op": "regmap"})["regmap"]))
        assert hostctl(["daemon", "start", "--device", r.endpoint.replace("tcp", "sim"),
                        "--regmap", str(regmap)]) == 0
        try:
            yield r
        finally:
            hostctl(["daemon", "stop"])
    finally:
        hostctl(["sim", "stop", "--endpoint", r.endpoint])
        r.orders.close()
        r.market.close()


def state(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    capsys.readouterr()
    assert hostctl([*argv, "--json"]) == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert isinstance(result, dict)
    return result


def add(ref: int, shares: int, price: int, ts: int) -> dict[str, object]:
    return {"type": "A", "locate": 1, "tracking": 0, "timestamp": ts, "order_ref": ref,
            "side": "S", "shares": shares, "stock": "AAPL", "price": price}


def delete(ref: int, ts: int) -> dict[str, object]:
    return {"type": "D", "locate": 1, "tracking": 0, "timestamp": ts, "order_ref": ref}


def test_hostctl_drives_the_simulated_card(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = rig.tmp / "card.toml"
    cfg.write_text(f"""
[limits]
max_order_qty = 1000
max_order_notional = 1_000_000_000_000
max_orders_per_second = 100

[[instrument]]
symbol = "AAPL"
buy_below = 1_000_000
min_qty = 0
order_qty = 100
max_position = 1000
reference_px = 1_000_000
collar = 100_000

[[feed]]
group = "{rig.group}"
port = {rig.feed_port}
session = "{SESSION}"

[order]
dst_mac = "02:00:00:00:00:02"
src_mac = "02:00:00:00:00:01"
src_ip = "127.0.0.2"
dst_ip = "127.0.0.1"
src_port = 40000
dst_port = {rig.orders.getsockname()[1]}
""")
    assert hostctl(["load", str(cfg)]) == 0
    assert state(capsys, "arm", "AAPL")["armed"] == ["AAPL"]

    # A bad file changes nothing on the card: every limit and trigger reads back the same.
    before = state(capsys, "limits")
    bad = rig.tmp / "bad.toml"
    bad.write_text(cfg.read_text().replace("collar = 100_000", "collar = -1"))
    capsys.readouterr()
    assert hostctl(["load", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "instrument[0].collar must be an integer" in err
    assert state(capsys, "limits") == before

    # The day starts (a watchlist commit leaves the book uncertain until a clear); an ask at
    # $99.00 for 300 shares is under buy_below: the card buys 100 at $99.00.
    start = {"type": "S", "locate": 0, "tracking": 0, "timestamp": 1, "event_code": "O"}
    rig.send(start, add(99, 300, 990_000, 2))
    order = rig.order(timeout=30)
    assert order is not None, "no order datagram from the card"
    assert (order["side"], order["quantity"], order["price"], order["symbol"].strip(),
            order["user_ref"], order["time_in_force"]) == ("B", 100, 990_000, "AAPL", 1, "3")
    book = state(capsys, "book", "AAPL")
    assert (book["ask_px"], book["ask_qty"], book["bid_px"], book["uncertain"]) == (
        990_000, 300, 0, 0)

    # Killed: the ask leaves and comes back (the trigger's edge again), and no order goes out.
    assert state(capsys, "kill")["kill_card"] is True
    rig.send(delete(99, 3), add(100, 200, 995_000, 4))
    assert rig.order(timeout=3) is None
    book = state(capsys, "book", "AAPL")
    assert (book["ask_px"], book["ask_qty"]) == (995_000, 200)     # the card saw the data

    # Unkilled, the next edge trades again: UserRefNum 2.
    assert state(capsys, "unkill")["kill_card"] is False
    rig.send(delete(100, 5), add(101, 50, 996_000, 6))
    order = rig.order(timeout=30)
    assert order is not None and (order["user_ref"], order["quantity"], order["price"]) == (
        2, 50, 996_000)

    # The counters say what was sent: 3 packets, 1 S, 3 A, 2 D; two orders and one refused.
    counters = state(capsys, "status")["counters"]
    assert isinstance(counters, dict)
    feed, risk = counters["feed"], counters["risk"]
    assert feed["frames_ok"] == rig.packets == 3
    assert {t: n for t, n in feed["messages_by_type"].items() if n} == {"S": 1, "A": 3, "D": 2}
    assert sum(feed["drops"].values()) == 0
    assert {r: n for r, n in risk["decisions"].items() if n} == {"none": 2, "kill_card": 1}
    assert risk["tx_frames"] == 2
    events = [(e["kind"], e["reason"]) for e in state(capsys, "events")["events"]
              if e["kind"].startswith("ORDER")]
    assert events == [("ORDER_SENT", "NONE"), ("ORDER_REJECTED", "KILL_CARD"),
                      ("ORDER_SENT", "NONE")]
    latency = state(capsys, "latency")["kinds"]
    assert isinstance(latency, dict) and latency["add"]["count"] == 2

