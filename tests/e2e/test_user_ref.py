"""OUCH UserRefNum stays strictly increasing for the whole trading day: the controller daemon
(`host.daemon.Controller`) on the whole card (`hdl.card.Card`) in Verilator, its order frames
taken off the TX pins.

The card is the co-simulation server's model (`sim.cosim.CosimModel`, the same build as
`hostctl sim start --book slots=2,...`), clocked in this process: `CardBus` gives the daemon
the card's register bus one access per cycle, as the server's read and write requests do, and
market data goes in as MoldUDP64 datagrams on the RX pins. `CosimModel.reset` is a card reset.
"""

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from hdl.card import Card
from hdl.formats import BookParams
from hdl.regmap import card_map
from host.daemon import ControlError, Controller
from host.device import Device, PcieTransport
from host.model.itch import encode
from host.model.ouch import decode_enter_order
from host.model.pack import ip, mold_packet, udp_frame
from host.model.regbank import image
from host.positions import Positions
from host.regmap import RegMap
from sim.cosim import CosimModel, describe, gmii_frame, tx_payload

BOOK = BookParams(slots=2, sets=16, ways=4, levels=4)   # test_control_plane's card: one build
TODAY = date(2026, 3, 2)
GROUP, PORT, SESSION = "239.7.7.7", 31000, b"USERREF001"
ORDER_PORT = 40001

CONFIG = f"""
[limits]
max_order_qty = 1000
max_order_notional = 1_000_000_000_000
max_orders_per_second = 100

[[instrument]]
symbol = "AAPL"
buy_below = 1_000_000
min_qty = 0
order_qty = 100
max_position = 100_000
reference_px = 1_000_000
collar = 100_000

[[feed]]
group = "{GROUP}"
port = {PORT}
session = "{SESSION.decode()}"

[order]
dst_mac = "02:00:00:00:00:02"
src_mac = "02:00:00:00:00:01"
src_ip = "127.0.0.2"
dst_ip = "127.0.0.1"
src_port = 40000
dst_port = {ORDER_PORT}
"""


class CardBus:
    """`host.device.Transport` onto the model's bus: one card cycle per word."""

    def __init__(self, model: CosimModel) -> None:
        self.model = model

    def read32(self, addr: int) -> int:
        return self.model.run(0, ops=[(1, addr // 4, 0)])[2][0]

    def write32(self, addr: int, value: int) -> None:
        self.model.run(0, ops=[(2, addr // 4, value)])

    def close(self) -> None:
        pass


class Rig:
    def __init__(self, model: CosimModel, rm: RegMap, tmp: Path) -> None:
        self.model, self.rm = model, rm
        self.state = tmp / "state.json"
        self.seq = 1

    def daemon(self, today: date = TODAY) -> Controller:
        """A daemon (re)started on the card with the rig's state file."""
        c = Controller(Device(CardBus(self.model), self.rm), self.state, today=lambda: today)
        c.start()
        return c

    def orders(self, n: int) -> list[int]:
        """The day opens (a system event: every book empty and certain), then `n` times an ask
        under buy_below comes and goes (the trigger fires on the edge): the UserRefNums of the
        orders the card sends."""
        messages = [encode({"type": "S", "timestamp": 1, "event_code": "O"})]
        for ref in range(self.seq, self.seq + n):
            messages.append(encode({"type": "A", "locate": 1, "timestamp": 2, "order_ref": ref,
                                    "side": "S", "shares": 300, "stock": "AAPL",
                                    "price": 990_000}))
            messages.append(encode({"type": "D", "locate": 1, "timestamp": 3,
                                    "order_ref": ref}))
        frames = []
        for m in messages:       # a message a datagram: each add is its own top update
            frames.append(gmii_frame(udp_frame(mold_packet(SESSION, self.seq, [m]),
                                               dst_ip=ip(GROUP), dst_port=PORT)))
            self.seq += 1
        self.model.run(2_000 + 400 * len(frames), rx=frames)
        refs = []
        for raw, error in self.model.take_tx():
            parsed = None if error else tx_payload(raw)
            assert parsed is not None, "a bad frame off the TX pins"
            dst, port, payload = parsed
            assert (dst, port, payload[2:3]) == (ip("127.0.0.1"), ORDER_PORT, b"U")
            fields, _ = decode_enter_order(payload[3:])
            assert (fields["side"], fields["quantity"], fields["symbol"].strip()) == (
                "B", 100, "AAPL")
            refs.append(int(fields["user_ref"]))
        return refs

    def saved(self) -> dict[str, Any]:
        user_ref = json.loads(self.state.read_text())["user_ref"]
        assert isinstance(user_ref, dict)
        return user_ref


@pytest.fixture(scope="module")
def model() -> CosimModel:
    return CosimModel(Card(BOOK))      # the first build takes a minute or two


@pytest.fixture
def rig(model: CosimModel, tmp_path: Path) -> Iterator[Rig]:
    model.reset()
    model.take_tx()
    yield Rig(model, RegMap(describe(card_map(BOOK))), tmp_path)


def ok(c: Controller, **request: Any) -> dict[str, Any]:
    reply = c.handle(request)
    assert reply["ok"], reply
    return dict(reply["result"])


def test_numbering_goes_on_across_card_resets(rig: Rig) -> None:
    c = rig.daemon()
    ok(c, cmd="load", text=CONFIG)
    ok(c, cmd="arm", all=True)
    assert rig.orders(3) == [1, 2, 3]
    c.poll_events()
    assert rig.saved() == {"date": TODAY.isoformat(), "highest": 3}
    assert ok(c, cmd="status")["user_ref"] == {"next": 4, "highest_today": 3,
                                                "date": TODAY.isoformat()}

    # The card resets (its count is back at 1, its config gone) and the daemon restarts with
    # the same state file: the config is reloaded, numbering from 4.
    rig.model.reset()
    assert Device(CardBus(rig.model), rig.rm).read("order.user_ref_next") == 1
    c = rig.daemon()
    assert ok(c, cmd="status")["user_ref"]["next"] == 4
    ok(c, cmd="arm", all=True)
    assert rig.orders(2) == [4, 5]

    # A reload on a card that kept its count leaves the count alone.
    ok(c, cmd="load", text=CONFIG)
    ok(c, cmd="arm", all=True)
    assert rig.orders(1) == [6]
    c.poll_events()         # what the daemon's loop does every 100 ms
    assert rig.saved()["highest"] == 6

    # The card resets under the running daemon: the next config load sets the count.
    rig.model.reset()
    c.poll_events()
    assert rig.saved()["highest"] == 6
    ok(c, cmd="load", text=CONFIG)
    assert ok(c, cmd="status")["user_ref"]["next"] == 7
    ok(c, cmd="arm", all=True)
    assert rig.orders(2) == [7, 8]
    c.poll_events()
    assert rig.saved() == {"date": TODAY.isoformat(), "highest": 8}


def _state(day: date, highest: int) -> str:
    return json.dumps({"version": 1, "kill_card": False, "killed": [],
                       "positions": Positions().as_json(),
                       "config": {"name": "card.toml", "text": CONFIG},
                       "user_ref": {"date": day.isoformat(), "highest": highest}})


def test_a_state_file_of_yesterday_does_not_carry_over(rig: Rig) -> None:
    rig.state.write_text(_state(TODAY - timedelta(days=1), 41))
    c = rig.daemon()
    assert ok(c, cmd="status")["user_ref"] == {"next": 1, "highest_today": 0,
                                                "date": TODAY.isoformat()}
    assert rig.saved() == {"date": TODAY.isoformat(), "highest": 0}
    ok(c, cmd="arm", all=True)
    assert rig.orders(1) == [1]

    # The same file dated today: a fresh card numbers from 42.
    rig.model.reset()
    rig.state.write_text(_state(TODAY, 41))
    c = rig.daemon()
    ok(c, cmd="arm", all=True)
    assert rig.orders(2) == [42, 43]


@pytest.mark.parametrize("text, says", [
    ("{", "Expecting property name"),
    (_state(TODAY, 5).replace('"highest": 5', '"highest": "5"'),
     "user_ref.highest must be an integer 0..4294967295, not '5'"),
    (_state(TODAY, 5).replace(TODAY.isoformat(), "2026-13-01"), "month must be in 1..12"),
])
def test_an_unreadable_state_file_is_one_line(text: str, says: str, tmp_path: Path) -> None:
    """The daemon refuses to start (exit 2) on a state file it cannot read, in one line: it
    cannot know which UserRefNums the day has used."""
    rm = RegMap.load()
    bar = tmp_path / "resource0"
    bar.write_bytes(image(rm))
    state = tmp_path / "state.json"
    state.write_text(text)
    with pytest.raises(ControlError, match="unreadable"):
        Controller(Device(PcieTransport(bar), rm), state).start()
    run = subprocess.run([sys.executable, "-m", "host.daemon", "--device", f"pcie://{bar}",
                          "--state", str(state), "--endpoint", f"ipc://{tmp_path}/d.sock"],
                         capture_output=True, text=True, timeout=60)
    err = run.stderr
    assert run.returncode == 2 and err.count("\n") == 1 and says in err and str(state) in err, err
