"""`hostctl` against a real controller daemon process (`hostctl daemon start`), which owns a
`pcie://` device on an ordinary file holding the register bank's reset image.

A plain file keeps every word as written: a staged value stays at its register's address and a
commit (or host_op.apply) leaves a 1 in its word, so the file shows what the daemon wrote
(`tests/host/test_daemon.py` runs the same requests against the bank's model, which applies
them). The map is the card's own export, `firmware/regmap.json`.
"""

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hdl.formats import CARD_CLOCK_HZ, HostOpKind
from host.cli import main as hostctl_main
from host.device import Device, PcieTransport
from host.model.book import symbol_code
from host.model.regbank import image
from host.regmap import DEFAULT_PATH, RegMap

RM = RegMap.load()
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "card.toml"


class Card:
    def __init__(self, root: Path) -> None:
        self.bar = root / "resource0"
        self.map = DEFAULT_PATH
        self.bar.write_bytes(image(RM))

    def read(self, name: str) -> int:
        """The register's word(s) in the file; for a write-only one (a commit, an apply), the
        last value written, which a card would not keep."""
        with Device(PcieTransport(self.bar), RM) as dev:
            if RM[name].access == "wo":
                return dev.transport.read32(RM[name].addr)
            return dev.read(name)


@pytest.fixture
def card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Card]:
    monkeypatch.setenv("TICKNIC_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("TICKNIC_STATE", str(tmp_path / "state.json"))
    c = Card(tmp_path)
    yield c
    hostctl_main(["daemon", "stop"])


@pytest.fixture
def daemon(card: Card, capsys: pytest.CaptureFixture[str]) -> Card:
    start(card, capsys)
    return card


def start(card: Card, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "daemon", "start", "--device", f"pcie://{card.bar}",
                         "--regmap", str(card.map))
    assert code == 0, err


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = hostctl_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert isinstance(result, dict)
    return result


def test_example_config_loads_into_the_card(daemon: Card,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "config", str(EXAMPLE))[0] == 0
    before = daemon.bar.read_bytes()
    code, out, _ = run(capsys, "load", str(EXAMPLE), "--check")
    assert code == 0 and "nothing written" in out
    assert daemon.bar.read_bytes() == before
    loaded = run_json(capsys, "load", str(EXAMPLE))
    symbols = [i["symbol"] for i in loaded["instrument"]]   # type: ignore[attr-defined]
    assert symbols == ["AAPL", "MSFT", "SPY"]
    for slot, symbol in enumerate(symbols):
        assert daemon.read(f"watchlist[{slot}].symbol") == symbol_code(symbol)
        assert daemon.read(f"watchlist[{slot}].commit") == 1
        assert daemon.read(f"triggers[{slot}].commit") == 1
    assert daemon.read("watchlist[3].enable") == 0
    assert daemon.read("limits.max_order_qty") == 800
    assert daemon.read("limits.rate_period") == CARD_CLOCK_HZ // 50
    assert daemon.read("limits.commit") == 1
    assert daemon.read("triggers[0].buy_below") == 2924000
    assert daemon.read("triggers[0].armed") == 0


BAD = {
    "missing field": (("order_qty = 500", "# order_qty = 500"),
                      "instrument[0].order_qty is required"),
    "wrong type": (("collar = 20000", 'collar = "wide"'), "instrument[0].collar must be"),
    "out of range": (("max_order_qty = 800", "max_order_qty = 0"),
                     "limits.max_order_qty must be an integer between 1 and"),
    "unknown symbol": (('"MSFT"', '"MSFT CORP"'), "instrument[1].symbol"),
    "unknown key": (("[limits]", "[limits]\nmax_loss = 5"), "limits: unknown field 'max_loss'"),
    "malformed TOML": (("[limits]", "[limits"), "not valid TOML"),
}


@pytest.mark.parametrize("kind", BAD)
def test_bad_config_exits_2_and_card_reads_back_unchanged(
        kind: str, daemon: Card, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "load", str(EXAMPLE))[0] == 0
    (old, new), field = BAD[kind]
    text = EXAMPLE.read_text()
    assert old in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(old, new, 1))
    before = daemon.bar.read_bytes()
    for argv in (["load", str(bad)], ["load", str(bad), "--check"]):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and err.startswith(f"hostctl: {bad}: ") and field in err
    assert daemon.bar.read_bytes() == before


def test_switches_fills_and_restart(daemon: Card, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "load", str(EXAMPLE))[0] == 0
    assert run_json(capsys, "arm", "--all")["armed"] == ["AAPL", "MSFT", "SPY"]
    assert daemon.read("triggers[2].armed") == 1
    assert run_json(capsys, "disarm", "SPY")["armed"] == ["AAPL", "MSFT"]
    assert daemon.read("triggers[2].armed") == 0
    assert run_json(capsys, "kill")["kill_card"] is True
    assert daemon.read("limits.kill") == 1
    assert run_json(capsys, "unkill") == {"kill_card": False, "killed": []}
    assert daemon.read("limits.kill") == 0
    assert run_json(capsys, "kill", "MSFT")["killed"] == ["MSFT"]
    assert daemon.read("triggers[1].kill") == 1
    assert run(capsys, "kill")[0] == 0

    fill = run_json(capsys, "fill", "MSFT", "sell", "40", "3990000")
    assert fill["positions"] == {"MSFT": {"qty": -40, "avg_cost": 3990000, "realised": 0}}
    assert [daemon.read(f"host_op.{n}") for n in ("kind", "slot", "side", "qty", "apply")] == [
        HostOpKind.FILL, 1, 1, 40, 1]
    code, _, err = run(capsys, "fill", "TSLA", "B", "1", "1")
    assert code == 2 and "'TSLA' is not on the card's watchlist" in err

    # Stop; the card is reset (a fresh image); start: kills, config and position come back.
    assert run(capsys, "daemon", "stop")[0] == 0
    code, _, err = run(capsys, "status")
    assert code == 1 and "hostctl daemon start" in err and err.count("\n") == 1
    daemon.bar.write_bytes(image(RM))
    start(daemon, capsys)
    assert daemon.read("limits.kill") == 1 and daemon.read("triggers[1].kill") == 1
    assert daemon.read("watchlist[1].symbol") == symbol_code("MSFT")
    assert daemon.read("triggers[0].armed") == 0
    # The last host_op written is the last slot's load position; MSFT's came before it and is
    # checked against the bank model in tests/host/test_daemon.py.
    assert daemon.read("host_op.kind") == HostOpKind.POSITION
    status = run_json(capsys, "status")
    assert status["kill_card"] is True and status["killed"] == ["MSFT"]
    assert status["pnl"]["positions"]["MSFT"]["qty"] == -40     # type: ignore[index]
    limits = run_json(capsys, "limits")
    assert limits["instruments"]["MSFT"]["kill"] == 1            # type: ignore[index]

    # The card's UserRefNum count (the file keeps the word as written): status shows it, and
    # every number below it as used today.
    with Device(PcieTransport(daemon.bar), RM) as dev:
        dev.transport.write32(RM["order.user_ref_next"].addr, 9)
    code, out, _ = run(capsys, "status")
    assert code == 0 and "orders: next UserRefNum 9 (highest used 20" in out and ": 8)" in out
    assert run_json(capsys, "status")["user_ref"]["highest_today"] == 8     # type: ignore[index]


def test_every_state_command_prints_json(daemon: Card,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "load", str(EXAMPLE))[0] == 0
    for argv in (["status"], ["limits"], ["book", "AAPL"], ["latency"], ["events"],
                 ["arm", "AAPL"], ["disarm", "AAPL"], ["kill", "AAPL"], ["unkill", "AAPL"],
                 ["release", "AAPL", "B", "5"], ["load", str(EXAMPLE), "--check"]):
        run_json(capsys, *argv)
        code, out, _ = run(capsys, *argv)            # and a human line or few without it
        assert code == 0 and out.strip() and not out.startswith("{")


def test_no_daemon_and_bad_endpoints(card: Card, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "host.cli"]
    r = subprocess.run([*cmd, "status", "--daemon", f"ipc://{tmp_path}/none.sock"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "hostctl daemon start --device" in r.stderr
    r = subprocess.run([*cmd, "daemon", "start", "--device", f"pcie://{card.bar}",
                        "--endpoint", "tcp://0.0.0.0:5599"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "not loopback" in r.stderr
    r = subprocess.run([*cmd, "daemon", "start", "--device", f"pcie://{tmp_path}/nothing",
                        "--regmap", str(card.map)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "cannot open" in r.stderr


def test_second_daemon_is_refused(daemon: Card, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "daemon", "start", "--device", f"pcie://{daemon.bar}",
                       "--regmap", str(daemon.map))
    assert code == 1 and "already running" in err
