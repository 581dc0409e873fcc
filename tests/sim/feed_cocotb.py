"""cocotb side of test_feed_cocotb.py: the whole RX pipeline (`hdl.feed.FeedHandler`) driven
through cocotbext-eth's `GmiiSource`, compared with `host.model.feed.FeedModel` on the same bytes.
Runs inside Verilator, not collected by pytest.

Cycle numbering: cycle 0 is the first clock cycle after reset is released, and a value "in
cycle k" is what the pins hold between the rising edges that start and end cycle k (sampled here
on the falling edge between them). That is also what the gateware's free-running counter reads in
cycle k, so the model, stamped with the start cycles seen on the pins, must agree with the
gateware's `rx_cycle` exactly, not only up to an offset.

cocotbext-eth 0.1.28 facts this relies on (read from cocotbext/eth/gmii.py; they surprised us):

* `GmiiSource(data, er, dv, clock, ...)`: the error signal comes *before* the valid signal.
* `GmiiSource` adds nothing to a frame: it drives `GmiiFrame.data` byte for byte. The preamble,
  SFD and FCS come from `GmiiFrame.from_payload(frame)`, which also zero-pads the frame to
  `min_len=60` bytes first. `GmiiFrame.from_raw_payload(frame_with_fcs)` adds only the preamble
  and SFD, so a frame with a wrong FCS is built by appending a wrong FCS ourselves;
  `GmiiFrame(data)` takes the bytes as they go on the wire, preamble included.
* There is no per-frame gap: `ifg` is a plain attribute of the source (default 12, not a
  constructor argument), read when a frame's last byte is driven, and gives exactly that many
  idle cycles (at least 1) before the next queued frame. To vary the gap frame by frame we set
  it from the previous frame's `tx_complete` callback, which runs on that same edge but after
  the source has already read `ifg` for the gap following that previous frame.
* `GmiiFrame(data, error=[...])` drives RX_ER per byte (a shorter list is padded with its last
  value), so `error=[0] * i + [1, 0]` raises RX_ER on byte i only.
* The source starts sending on the first rising edge after `send_nowait` when it is idle; it
  goes inactive (no per-cycle coroutine) while its queue is empty.
"""

import bisect
import logging
import os
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge
from cocotbext.eth import GmiiFrame, GmiiSource

from hdl.feed import FeedHandler, SubscriptionWrite
from hdl.formats import ETHERTYPE_VLAN, MOLD_HEADER_LEN, N_SUBSCRIPTIONS, Drop
from hdl.moldudp64 import GapReport
from host.capture import read_capture
from host.model import pack
from host.model.feed import FeedModel, Gap, Subscription
from sim.feed_rtl import decode_counters, decode_message, unpack
from sim.traffic import Feed, random_frames

PCAP = (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nasdaq"
        / "Nasdaq.Equities.TotalView.Itch.v5.0" / "Multiple.Packets.pcap")
SEED = int(os.environ.get("FEED_COCOTB_SEED", "2024"))
N_RANDOM = 300
OWN_MAC = 0x02_00_00_00_00_01
CLOCK_NS = 8                    # 125 MHz GMII
MIN_IFG = 12
DRAIN = 64

# Row 0: the real capture's stream. Rows 1 and 2: random feeds, one on another port of the same
# group, one on another group whose row starts synchronised (next_seq != 0). Row 3 stays empty.
PCAP_SUB = (pack.FEED_GROUP, pack.FEED_PORT, b"000010059B", 0)
FEED_A = (pack.FEED_GROUP, pack.FEED_PORT + 1, b"TICKNIC001", 0)
FEED_B = (pack.ip("233.54.12.112"), pack.FEED_PORT, b"TICKNIC002", 1000)
SUBS = [PCAP_SUB, FEED_A, FEED_B, None]
assert len(SUBS) == N_SUBSCRIPTIONS


@dataclass
class Send:
    """One GMII burst as it goes on the wire, and the idle cycles after it."""
    data: bytes                       # preamble, SFD, frame, FCS
    ifg_after: int = MIN_IFG
    error_at: int | None = None


def _gmii_good(frame: bytes) -> bytes:
    # cocotbext-eth adds preamble, SFD and FCS; check it agrees with our own packer once more.
    data = bytes(GmiiFrame.from_payload(frame))
    assert data == pack.gmii(pack.with_fcs(frame)), "cocotbext-eth FCS/preamble differ from ours"
    return data


def traffic(seed: int) -> list[Send]:
    """The real capture's frames, then random feed traffic with drops, gaps, duplicates, one
    frame with a wrong FCS and one with RX_ER, at gaps from the minimum up to a few hundred."""
    rng = random.Random(seed)
    frames: list[tuple[bytes, bool, int | None]] = [   # (frame, good FCS, RX_ER byte)
        (f, True, None) for f in read_capture(PCAP).frames]
    assert len(frames) == 2, f"{PCAP} changed: expected 2 frames, got {len(frames)}"

    feeds = [Feed(session=FEED_A[2], group=FEED_A[0], port=FEED_A[1], seq=1),
             Feed(session=FEED_B[2], group=FEED_B[0], port=FEED_B[1], seq=FEED_B[3])]
    stray = [Feed(session=b"TICKNIC001", group=FEED_A[0], port=9999),       # UDP_NO_SUB
             Feed(session=b"TICKNIC001", group=pack.ip("233.54.12.99"),    # ETH_DST
                  port=FEED_A[1]),
             Feed(session=b"WRONGSESS1", group=FEED_A[0], port=FEED_A[1])]  # MOLD_SESSION
    sent: list[list[bytes]] = [[], []]      # each feed's frames so far, to resend as duplicates
    vlans = (None, 5, pack.FEED_VLAN)
    bad_fcs_at, phy_error_at = N_RANDOM // 2, N_RANDOM // 3
    for i in range(N_RANDOM):
        which = rng.randrange(2)
        feed = feeds[which]
        r = rng.random()
        if i == bad_fcs_at or i == phy_error_at:
            frame = random_frames(rng, feed, 1, max_messages=8, vlan_choices=vlans)[0]
            frames.append((frame, i != bad_fcs_at, rng.randrange(30, 60) if i == phy_error_at
                           else None))
            continue
        if r < 0.04 and sent[which]:
            frame = rng.choice(sent[which])                       # duplicate (or partly new)
        elif r < 0.08:
            feed.seq += rng.randint(1, 5)                         # a gap before this frame
            frame = random_frames(rng, feed, 1, max_messages=8, vlan_choices=vlans)[0]
        elif r < 0.10:
            frame = feed.heartbeat(vlan=rng.choice(vlans))
        elif r < 0.13:
            frame = random_frames(rng, rng.choice(stray), 1, max_messages=4,
                                  vlan_choices=vlans)[0]
        else:
            frame = random_frames(rng, feed, 1, max_messages=8, vlan_choices=vlans)[0]
        sent[which].append(frame)
        frames.append((frame, True, None))
    frames.append((feeds[0].end_of_session(), True, None))

    out = []
    for frame, good, error_at in frames:
        if good:
            data = _gmii_good(frame)
        else:
            wrong = (int.from_bytes(pack.fcs(frame), "little") ^ 0x00010000).to_bytes(4, "little")
            data = bytes(GmiiFrame.from_raw_payload(frame + wrong))
        r = rng.random()
        ifg = MIN_IFG if r < 0.7 else rng.randint(13, 64) if r < 0.9 else rng.randint(100, 400)
        out.append(Send(data, ifg, error_at))
    return out


def subscription_write(index: int, sub: tuple[int, int, bytes, int] | None) -> int:
    row = {} if sub is None else {
        "valid": 1, "group": sub[0], "port": sub[1],
        "session": int.from_bytes(sub[2], "big"), "next_seq": sub[3]}
    return SubscriptionWrite.const({"index": index, "row": row}).as_value().value


@dataclass
class Seen:
    """What the pins showed, cycle by cycle (cycle numbers as in the module docstring)."""
    bursts: list[tuple[int, bytearray, int | None]] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)           # first idle cycle after each burst
    messages: list[tuple[int, int]] = field(default_factory=list)   # (cycle, payload)
    verdicts: list[int] = field(default_factory=list)
    gaps: list[int] = field(default_factory=list)


async def monitor(dut: Any, seen: Seen) -> None:
    rxd, dv, er = dut.gmii__rxd, dut.gmii__rx_dv, dut.gmii__rx_er
    mv, mp = dut.message__valid, dut.message__payload
    vv, vp = dut.verdict__valid, dut.verdict__payload
    gv, gp = dut.gap__valid, dut.gap__payload
    falling = FallingEdge(dut.clk)
    cycle, burst = 0, None
    while True:
        await falling
        if int(dv.value):
            if burst is None:
                burst = (cycle, bytearray(), None)
                seen.bursts.append(burst)
            if int(er.value) and burst[2] is None:
                seen.bursts[-1] = burst = (burst[0], burst[1], len(burst[1]))
            burst[1].append(rxd.value.to_unsigned())
        elif burst is not None:
            seen.ends.append(cycle)
            burst = None
        if int(mv.value):
            seen.messages.append((cycle, mp.value.to_unsigned()))
        if int(vv.value):
            seen.verdicts.append(vp.value.to_unsigned())
        if int(gv.value):
            seen.gaps.append(gp.value.to_unsigned())
        cycle += 1


def _first_difference(got: list[Any], want: list[Any]) -> str:
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        if g != w:
            return f"first difference at [{i}]:\n  gateware {g}\n  model    {w}"
    return f"lengths differ: gateware {len(got)}, model {len(want)}"


def _block_ends(burst: bytes) -> tuple[int, list[int]]:
    """(first sequence number, offset in the burst of each MoldUDP64 block's last byte), read
    straight from the bytes, independently of the model."""
    f = burst[burst.index(0xD5) + 1:]
    eth = 18 if int.from_bytes(f[12:14], "big") == ETHERTYPE_VLAN else 14
    pos = eth + (f[eth] & 0x0F) * 4 + 8
    seq = int.from_bytes(f[pos + 10:pos + 18], "big")
    count = int.from_bytes(f[pos + 18:pos + 20], "big")
    pos += MOLD_HEADER_LEN
    ends, base = [], len(burst) - len(f)
    for _ in range(0 if count == 0xFFFF else count):
        pos += 2 + int.from_bytes(f[pos:pos + 2], "big")
        ends.append(base + pos - 1)
    return seq, ends


@cocotb.test()
async def feed_matches_model(dut: Any) -> None:
    sends = traffic(SEED)
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    with warnings.catch_warnings():
        # cocotbext-eth 0.1.28 still calls setimmediatevalue, deprecated in cocotb 2.
        warnings.simplefilter("ignore", DeprecationWarning)
        source = GmiiSource(dut.gmii__rxd, dut.gmii__rx_er, dut.gmii__rx_dv, dut.clk)
    source.log.setLevel(logging.WARNING)     # it logs every frame's bytes at INFO
    dut.own_mac.value = OWN_MAC
    dut.sub_write__valid.value = 0
    dut.sub_write__payload.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    seen = Seen()
    cocotb.start_soon(monitor(dut, seen))    # its first falling edge is cycle 0

    for i, sub in enumerate(SUBS):
        dut.sub_write__payload.value = subscription_write(i, sub)
        dut.sub_write__valid.value = 1
        await RisingEdge(dut.clk)
        dut.sub_write__valid.value = 0
    await RisingEdge(dut.clk)

    # The gap after frame i is set when frame i - 1 completes (see the module docstring).
    source.ifg = sends[0].ifg_after
    for i, s in enumerate(sends):
        nxt = sends[i + 1].ifg_after if i + 1 < len(sends) else MIN_IFG
        err = None if s.error_at is None else [0] * s.error_at + [1, 0]
        source.send_nowait(GmiiFrame(s.data, error=err,
                                     tx_complete=lambda _f, g=nxt: setattr(source, "ifg", g)))
    await source.wait()
    await ClockCycles(dut.clk, DRAIN)
    await FallingEdge(dut.clk)
    final = {name: getattr(dut, name).value.to_unsigned() for name in (
        "counters__frames_ok", "counters__drops", "counters__messages_by_type",
        "counters__gaps")}
    dut._log.info("%d bursts, %d cycles, %d messages", len(seen.bursts),
                  seen.ends[-1] if seen.ends else 0, len(seen.messages))

    # 1. The source put exactly our bytes, RX_ER bytes and gaps on the pins.
    assert [(bytes(b), e) for _, b, e in seen.bursts] == [(s.data, s.error_at) for s in sends]
    starts = [c for c, _, _ in seen.bursts]
    idle = [s - e for s, e in zip(starts[1:], seen.ends[:-1], strict=True)]
    assert idle == [s.ifg_after for s in sends[:-1]]

    # 2. The model on the same bursts, stamped with the cycles they started on.
    model = FeedModel(OWN_MAC, [None if s is None else Subscription(*s) for s in SUBS])
    want_msgs: list[dict[str, Any]] = []
    want_verdicts, want_gaps = [], []
    for (start, data, error_at) in seen.bursts:
        r = model.receive(bytes(data), error_at, start)
        want_msgs += r.messages
        want_verdicts.append(r.drop)
        if r.gap:
            want_gaps.append(r.gap)

    got_msgs = [decode_message(v) for _, v in seen.messages]
    got_verdicts = [Drop(v) for v in seen.verdicts]
    got_gaps = [Gap(**unpack(GapReport, v)) for v in seen.gaps]

    def no_cycle(ms: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in m.items() if k != "rx_cycle"} for m in ms]

    assert got_verdicts == want_verdicts, _first_difference(got_verdicts, want_verdicts)
    assert no_cycle(got_msgs) == no_cycle(want_msgs), \
        _first_difference(no_cycle(got_msgs), no_cycle(want_msgs))
    assert got_gaps == want_gaps, _first_difference(got_gaps, want_gaps)
    assert decode_counters(final) == model.counters()

    # 3. rx_cycle: increasing; within a frame, consecutive messages as far apart as their last
    # bytes are in the frame; valid LATENCY cycles after the last byte; equal to the model's.
    cycles = [m["rx_cycle"] for m in got_msgs]
    assert all(a < b for a, b in zip(cycles, cycles[1:], strict=False)), "rx_cycle decreased"
    prev: tuple[int, int, int] | None = None        # (burst, seq, rx_cycle)
    for (emitted, _), m in zip(seen.messages, got_msgs, strict=True):
        assert emitted - m["rx_cycle"] == FeedHandler.LATENCY, (emitted, m)
        b = bisect.bisect_right(starts, m["rx_cycle"]) - 1
        first, ends = _block_ends(bytes(seen.bursts[b][1]))
        assert starts[b] + ends[m["seq"] - first] == m["rx_cycle"], (b, m)
        if prev is not None and prev[0] == b:
            distance = ends[m["seq"] - first] - ends[prev[1] - first]
            assert m["rx_cycle"] - prev[2] == distance, (b, m, prev, distance)
        prev = (b, m["seq"], m["rx_cycle"])
    assert cycles == [m["rx_cycle"] for m in want_msgs], \
        _first_difference(cycles, [m["rx_cycle"] for m in want_msgs])

    # The traffic must exercise what it claims to, or a generator change could hollow it out.
    counters = model.counters()
    assert {"mac_fcs", "mac_phy_error", "udp_no_sub", "eth_dst", "mold_session",
            "mold_duplicate"} <= set(counters["drops"]), counters["drops"]
    assert counters["gaps"] >= 3 and len(want_msgs) > 500, counters
