"""The co-simulation server's speed: what a host sees over `sim://`, and the wire path.

The server (`sim.cosim`) runs `hdl.card.Card` with the small book the tests use (slots=2,
sets=16, ways=4, levels=4; the build is shared with tests/sim/test_cosim.py under build/cosim/).
Figures:

* register round trip: `Device.write` / `Device.read` of a 32-bit register over SimTransport
  (ZeroMQ REQ/REP on tcp loopback, JSON, one card cycle or two on the bus), median and p99;
* the clock while market data flows: card cycles per second of the C++ loop (the server's own
  `cycles_per_second`, time spent clocking only) and per wall second;
* market data through the wire path: real UDP multicast datagrams of MoldUDP64/ITCH on
  loopback, framed into the RX pins, decoded by the card (counted by its
  `feed.messages_by_type`), as ITCH messages per wall second.
"""

import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hdl.formats import ITCH_TYPES
from host.device import open_device
from host.model.pack import ip, mold_packet
from host.regmap import RegMap
from sim.cosim import free_port_pair, request
from sim.traffic import random_message

REPO = Path(__file__).resolve().parent.parent
BOOK = "slots=2,sets=16,ways=4,levels=4"
SESSION = b"COSIMBENCH"




@pytest.mark.bench
def test_cosim_speed(tmp_path: Path, figure) -> None:
    port, group, feed_port = free_port_pair(), "239.200.1.1", 41234
    endpoint = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "sim.cosim", "serve", "--endpoint", endpoint,
                             "--listen", f"{group}:{feed_port}", "--book", BOOK,
                             "--pidfile", str(tmp_path / "pid")], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 900
        while not (tmp_path / "pid").exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        regmap = RegMap(request(endpoint, {"op": "regmap"})["regmap"])
        with open_device(f"sim://127.0.0.1:{port}", regmap=regmap) as dev:
            times = []
            for i in range(2000):
                t0 = time.perf_counter()
                dev.write("id.scratch", i)
                times.append(time.perf_counter() - t0)
            reads = []
            for _ in range(2000):
                t0 = time.perf_counter()
                dev.read("id.scratch")
                reads.append(time.perf_counter() - t0)
            us = sorted(t * 1e6 for t in times)
            figure(f"cosim register round trip over sim://: write median {us[len(us) // 2]:.0f}"
                   f" us, p99 {us[len(us) * 99 // 100]:.0f} us; read median "
                   f"{statistics.median(reads) * 1e6:.0f} us ({len(times)} each)")

            dev.write("subscriptions[0].valid", 1)
            dev.write("subscriptions[0].group", ip(group))
            dev.write("subscriptions[0].port", feed_port)
            dev.write("subscriptions[0].session", int.from_bytes(SESSION, "big"))
            dev.commit("subscriptions[0]")

            def decoded() -> int:
                return sum(dev.read(f"feed.messages_by_type[{t}]") for t in ITCH_TYPES)

            rng = random.Random(1)
            packets, seq = [], 1
            for _ in range(2000):
                msgs = [random_message(rng, rng.choice("AAAADDEXU")) for _ in range(30)]
                packets.append((mold_packet(SESSION, seq, msgs), len(msgs)))
                seq += len(msgs)
            total = sum(n for _, n in packets)
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                          socket.inet_aton("127.0.0.1"))
            before, s0 = decoded(), request(endpoint, {"op": "stats"})
            t0 = time.perf_counter()
            for i, (payload, _) in enumerate(packets):
                tx.sendto(payload, (group, feed_port))
                if i % 100 == 99:       # stay within the server's socket buffer
                    while request(endpoint, {"op": "stats"})["rx_datagrams"] \
                            < s0["rx_datagrams"] + i - 200:
                        time.sleep(0.001)
            while decoded() < before + total:
                assert time.perf_counter() - t0 < 300, "the card did not decode every message"
                time.sleep(0.01)
            wall = time.perf_counter() - t0
            s1 = request(endpoint, {"op": "stats"})
            tx.close()
            assert dev.read("feed.gaps") == 0
        cycles = s1["cycle"] - s0["cycle"]
        loop = cycles / (s1["clock_seconds"] - s0["clock_seconds"])
        figure(f"cosim wire path: {total} ITCH messages in {len(packets)} UDP multicast "
               f"datagrams in {wall:.2f} s = {total / wall:.0f} messages/s, "
               f"{len(packets) / wall:.0f} datagrams/s; card clock {loop / 1e6:.2f} M cycles/s "
               f"in the C++ loop, {cycles / wall / 1e6:.2f} M cycles/s of wall time "
               f"({125e6 / loop:.0f}x slower than 125 MHz)")
        request(endpoint, {"op": "stop"})
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
