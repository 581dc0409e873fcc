"""The co-simulation server end to end: `hostctl sim start` in a subprocess, a `sim://` Device,
real UDP multicast datagrams on loopback in and out, a pcap, clean stops.

The design is `tests/sim/cosim_fixture.py` (the card's register map on a real RegisterBank, the
real FeedHandler, and an echo of every RX frame through the real MacTx), so these tests do not
depend on the whole card; its first Verilator build takes ~35 s, later runs reuse build/cosim/.
Multicast on the loopback interface works in this sandbox (joined with interface 127.0.0.1),
so no unicast fallback is needed.
"""

import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hdl.formats import ITCH_TYPES, Drop
from hdl.regs import MAGIC
from host.device import Device, DeviceError, open_device
from host.model.pack import ip, mold_packet
from host.process import alive
from host.transport_sim import SimTransport
from sim.cosim import check_endpoint, free_port_pair, parse_listen, request, tx_payload
from sim.traffic import random_message

REPO = Path(__file__).resolve().parents[2]
FIXTURE = f"{REPO / 'tests' / 'sim' / 'cosim_fixture.py'}:EchoFeedCard"
SESSION = b"COSIMTEST1"




def _hostctl(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "host.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


class Server:
    def __init__(self, port: int, group: str, feed_port: int, env: dict[str, str]):
        self.port, self.group, self.feed_port, self.env = port, group, feed_port, env
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.url = f"sim://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = dict(os.environ, TICKNIC_RUNTIME_DIR=str(tmp_path_factory.mktemp("run")))
    rng = random.Random()
    group = f"239.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    s = Server(free_port_pair(), group, rng.randrange(20000, 60000), env)
    out = _hostctl("sim", "start", "--endpoint", s.endpoint, "--listen",
                   f"{group}:{s.feed_port}", "--design", FIXTURE, "--json", env=env)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["url"] == s.url and info["events"] == f"tcp://127.0.0.1:{s.port + 1}"
    s.pid = info["pid"]
    yield s
    if os.path.exists(f"/proc/{s.pid}"):        # a test failed before stopping it
        os.kill(s.pid, signal.SIGTERM)


def _subscribe(dev: Device, row: int, group: str, port: int, session: bytes) -> None:
    dev.write(f"subscriptions[{row}].valid", 1)
    dev.write(f"subscriptions[{row}].group", ip(group))
    dev.write(f"subscriptions[{row}].port", port)
    dev.write(f"subscriptions[{row}].session", int.from_bytes(session, "big"))
    dev.write(f"subscriptions[{row}].next_seq", 0)
    dev.commit(f"subscriptions[{row}]")


def _until(what: str, fn, timeout: float = 10.0):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_registers_over_sim_url(server: Server) -> None:
    with open_device(server.url) as dev:          # check=True: magic, version, hash, headers
        assert dev.read("id.magic") == MAGIC
        headers = dev.headers()
        assert len(headers) == dev.read("id.blocks") == len(dev.regmap.blocks) - 1
        for value in (0, 0xFFFF_FFFF, 0x1234_5678):
            dev.write("id.scratch", value)
            assert dev.read("id.scratch") == value
        # A wide unshadowed register goes live with its top word, through two requests.
        dev.write("net.own_mac", 0x02_00_5E_10_20_30)
        assert dev.read("net.own_mac") == 0x02_00_5E_10_20_30
        # The staged and live copies of a shadowed register, around its commit.
        dev.write("subscriptions[3].port", 4242)
        assert dev.read("subscriptions[3].port") == 4242
        assert dev.read("subscriptions[3].port", live=True) == 0
        dev.commit("subscriptions[3]")
        assert dev.read("subscriptions[3].port", live=True) == 4242
    t = SimTransport(server.endpoint)
    scratch = dev.regmap["id.scratch"].addr
    assert t.batch([("w", scratch, 7), ("r", scratch), ("w", scratch, 8), ("r", scratch),
                    ("r", 0)]) == [7, 8, MAGIC]
    with pytest.raises(DeviceError, match="a word address is an integer"):
        t.read32(1 << 20)
    with pytest.raises(DeviceError, match="multiple of 4"):
        t.read32(6)
    t.close()


def test_multicast_datagrams_in_and_echoed_out(server: Server) -> None:
    rng = random.Random(7)
    messages = [random_message(rng, kind) for kind in "AFDSE"]
    payload = mold_packet(SESSION, 1, messages)

    # Our own socket on the group sees the datagram we send and the card's echo of it, which
    # the server sends from its own address (and does not take back in as market data).
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    rx.bind((server.group, server.feed_port))
    rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                  socket.inet_aton(server.group) + socket.inet_aton("127.0.0.1"))
    rx.settimeout(10)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))

    with open_device(server.url) as dev:
        _subscribe(dev, 0, server.group, server.feed_port, SESSION)
        before = dev.read("feed.frames_ok")
        by_type = {t: dev.read(f"feed.messages_by_type[{t}]") for t in ITCH_TYPES}
        stats0 = request(server.endpoint, {"op": "stats"})
        tx.sendto(payload, (server.group, server.feed_port))
        _until("feed.frames_ok", lambda: dev.read("feed.frames_ok") == before + 1)
        for kind in "AFDSE":
            assert dev.read(f"feed.messages_by_type[{kind}]") == by_type[kind] + 1, kind
        assert dev.read("feed.gaps") == 0
        # A packet whose session is not subscribed is dropped, not counted as good.
        tx.sendto(mold_packet(b"OTHERSESS1", 1, messages), (server.group, server.feed_port))
        _until("a drop", lambda: sum(dev.read(f"feed.drops[{i}]") for i in range(1, len(Drop))) > 0)
        assert dev.read("feed.frames_ok") == before + 1

    got = []
    while len(got) < 4:
        data, src = rx.recvfrom(65536)
        got.append((data, src))
    mine = tx.getsockname()
    assert [d for d, s in got if s == mine] == [payload, mold_packet(b"OTHERSESS1", 1, messages)]
    echoes = [(d, s) for d, s in got if s != mine]
    assert [d for d, _ in echoes] == [payload, mold_packet(b"OTHERSESS1", 1, messages)]
    assert all(s[0] == "127.0.0.1" for _, s in echoes)
    stats = request(server.endpoint, {"op": "stats"})
    assert stats["rx_datagrams"] == stats0["rx_datagrams"] + 2    # the echoes were not re-read
    assert stats["tx_datagrams"] >= stats0["tx_datagrams"] + 2
    assert stats["cycles_per_second"] > 100_000
    rx.close()
    tx.close()


def _pcap(path: Path, frames: list[bytes]) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, f in enumerate(frames):
        out.append(struct.pack("<IIII", i, 0, len(f), len(f)) + f)
    path.write_bytes(b"".join(out))


def test_pcap_and_frames_into_rx(server: Server, tmp_path: Path) -> None:
    from sim.traffic import Feed
    group, port = "239.77.1.2", 31337     # never sent as a datagram: no socket involved
    feed = Feed(b"PCAPTEST01", ip(group), port)
    rng = random.Random(3)
    frames = [feed.frame([random_message(rng, "A") for _ in range(3)]) for _ in range(5)]
    _pcap(tmp_path / "x.pcap", frames[:3])
    with open_device(server.url) as dev:
        _subscribe(dev, 1, group, port, feed.session)
        before = dev.read("feed.frames_ok"), dev.read("feed.messages_by_type[A]")
        assert request(server.endpoint, {"op": "pcap", "path": str(tmp_path / "x.pcap")}) \
            == {"ok": True, "queued": 3}
        assert request(server.endpoint, {"op": "frames", "frames": [f.hex() for f in
                                                                     frames[3:]]})["queued"] == 2
        _until("5 frames", lambda: dev.read("feed.frames_ok") == before[0] + 5)
        assert dev.read("feed.messages_by_type[A]") == before[1] + 15
        assert dev.read("feed.gaps") == 0
    with pytest.raises(RuntimeError, match="not a capture"):
        request(server.endpoint, {"op": "pcap", "path": str(REPO / "README.md")})
    with pytest.raises(RuntimeError, match="unknown op 'nope'"):
        request(server.endpoint, {"op": "nope"})


def test_stop_and_no_server(server: Server) -> None:
    out = _hostctl("sim", "start", "--endpoint", server.endpoint, "--design", FIXTURE,
                   env=server.env)
    assert out.returncode == 1 and "already runs at" in out.stderr
    out = _hostctl("sim", "stop", "--endpoint", server.endpoint, env=server.env)
    assert out.returncode == 0, out.stderr
    assert f"pid {server.pid}" in out.stdout
    assert not alive(server.pid)                # exited (a zombie until init reaps it)
    assert list(Path(server.env["TICKNIC_RUNTIME_DIR"]).glob("*.pid")) == []
    t = SimTransport(server.endpoint, timeout=0.3)
    with pytest.raises(DeviceError, match=f"no co-simulation server at {server.endpoint} .*"
                                          f"start one with `hostctl sim start`"):
        t.read32(0)
    out = _hostctl("sim", "stop", "--endpoint", server.endpoint, env=server.env)
    assert out.returncode == 1 and "no co-simulation server was started" in out.stderr


def test_sigterm_on_ipc(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/cosim.sock"
    proc = subprocess.Popen([sys.executable, "-m", "sim.cosim", "serve", "--endpoint", endpoint,
                             "--design", FIXTURE, "--pidfile", str(tmp_path / "pid")],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _until("the server", lambda: (tmp_path / "pid").exists(), timeout=300)
        assert SimTransport(endpoint).read32(0) == MAGIC
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (tmp_path / "cosim.sock").exists() and not (tmp_path / "pid").exists()
    assert "stopped after" in proc.stdout.read()


@pytest.mark.parametrize("endpoint, ok", [
    ("tcp://127.0.0.1:5555", True), ("tcp://localhost:1", True), ("tcp://[::1]:9", True),
    ("ipc:///tmp/x", True), ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False),
    ("tcp://10.1.2.3:5555", False), ("tcp://127.0.0.1:0", False), ("udp://127.0.0.1:1", False),
])
def test_endpoints(endpoint: str, ok: bool) -> None:
    if ok:
        assert check_endpoint(endpoint) == endpoint
    else:
        with pytest.raises(ValueError, match="loopback|an endpoint is"):
            check_endpoint(endpoint)
    assert check_endpoint("tcp://10.1.2.3:5555", allow_remote=True)


def test_refuses_before_building() -> None:
    out = subprocess.run([sys.executable, "-m", "sim.cosim", "serve", "--endpoint",
                          "tcp://0.0.0.0:5555"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "binds only to loopback" in out.stderr
    with pytest.raises(ValueError, match="multicast group"):
        parse_listen("127.0.0.1:5000")
    assert parse_listen("233.54.12.111:26477") == ("233.54.12.111", 26477)


def test_tx_payload_checks_the_frame() -> None:
    from host.model.pack import gmii, udp_frame, with_fcs
    frame = with_fcs(udp_frame(b"order", dst_ip=ip("127.0.0.1"), dst_port=9000, dst_mac=1))
    assert tx_payload(gmii(frame)) == (ip("127.0.0.1"), 9000, b"order")
    bad = bytearray(gmii(frame))
    bad[30] ^= 1
    assert tx_payload(bytes(bad)) is None
    assert tx_payload(b"\x55" * 7 + b"\x00" + frame) is None       # no SFD


# --- the real card ----------------------------------------------------------------------------

CARD_BOOK = "slots=2,sets=16,ways=4,levels=4"     # a small book: a quicker first build


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`hdl.card.Card` behind a server started directly (`python -m sim.cosim serve`)."""
    tmp = tmp_path_factory.mktemp("card")
    rng = random.Random()
    group = f"239.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    s = Server(free_port_pair(), group, rng.randrange(20000, 60000), dict(os.environ))
    proc = subprocess.Popen([sys.executable, "-m", "sim.cosim", "serve", "--endpoint",
                             s.endpoint, "--listen", f"{group}:{s.feed_port}", "--book",
                             CARD_BOOK, "--pidfile", str(tmp / "pid")], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _until("the card's server", lambda: proc.poll() is not None or (tmp / "pid").exists(),
               timeout=900)           # the first build of the card takes minutes
        assert proc.poll() is None
        yield s
        request(s.endpoint, {"op": "stop"})
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_card_sends_an_order_datagram(card: Server) -> None:
    import zmq

    from hdl.formats import CARD_CLOCK_HZ
    from host.model.itch import encode
    from host.model.ouch import decode_enter_order
    from host.regmap import RegMap

    regmap = RegMap(request(card.endpoint, {"op": "regmap"})["regmap"])
    orders = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    orders.bind(("127.0.0.1", 0))
    orders.settimeout(10)
    events = zmq.Context.instance().socket(zmq.SUB)
    events.setsockopt(zmq.SUBSCRIBE, b"event")
    events.setsockopt(zmq.RCVTIMEO, 10_000)
    events.setsockopt(zmq.LINGER, 0)
    events.connect(f"tcp://127.0.0.1:{card.port + 1}")
    period = CARD_CLOCK_HZ // 100                   # 100 orders/s, a full bucket
    with open_device(card.url, regmap=regmap) as dev:
        _subscribe(dev, 0, card.group, card.feed_port, SESSION)
        dev.write("watchlist[0].symbol", int.from_bytes(b"AAPL    ", "big"))
        dev.write("watchlist[0].enable", 1)
        dev.commit("watchlist[0]")
        for name, value in (("max_order_qty", 1000), ("max_order_notional", 10**12),
                            ("rate_period", period), ("rate_cap", 100 * period)):
            dev.write(f"limits.{name}", value)
        dev.commit("limits")
        for name, value in (("buy_enable", 1), ("buy_below", 1_000_000), ("order_qty", 100),
                            ("max_position", 1000), ("reference_px", 1_000_000),
                            ("collar", 100_000), ("rate_period", period),
                            ("rate_cap", 100 * period), ("armed", 1)):
            dev.write(f"triggers[0].{name}", value)
        dev.commit("triggers[0]")
        for name, value in (("dst_mac", 0x02_00_00_00_00_02), ("src_mac", 0x02_00_00_00_00_01),
                            ("src_ip", ip("127.0.0.2")), ("dst_ip", ip("127.0.0.1")),
                            ("src_port", 40000), ("dst_port", orders.getsockname()[1]),
                            ("next_user_ref", 7)):
            dev.write(f"order.{name}", value)
        dev.commit("order")
        time.sleep(0.3)          # let the subscriber's connection settle (ZeroMQ slow joiner)

        start = encode({"type": "S", "locate": 0, "tracking": 0, "timestamp": 1,
                        "event_code": "O"})
        add = encode({"type": "A", "locate": 1, "tracking": 0, "timestamp": 2,
                      "order_ref": 99, "side": "S", "shares": 300, "stock": "AAPL",
                      "price": 990_000})
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        tx.sendto(mold_packet(SESSION, 1, [start, add]), (card.group, card.feed_port))

        payload, src = orders.recvfrom(2048)
        assert payload[2:3] == b"U"                 # SoupBinTCP unsequenced data
        order, _ = decode_enter_order(payload[3:])
        assert (order["user_ref"], order["side"], order["quantity"], order["price"]) \
            == (7, "B", 100, 990_000)
        assert order["symbol"].strip() == "AAPL"
        assert dev.read("feed.frames_ok") >= 1
        assert dev.read("risk.decisions[none]") == 1
        assert dev.read("tops[0].ask_px") == 990_000 and dev.read("tops[0].ask_qty") == 300
        assert dev.read("positions[0].open_buy") == 100
        topic, body = events.recv_multipart()
        event = json.loads(body)
        assert (event["kind"], event["reason"], event["slot"], event["qty"], event["price"]) \
            == ("ORDER_SENT", "NONE", 0, 100, 990_000)
        tx.close()
    orders.close()
    events.close()
