"""The feed handler gateware (`hdl.feed.FeedHandler`, in Verilator) against its reference model
(`host.model.feed.FeedModel`), which is the specification.

Three parts, each running whole schedules (many frames per Verilator run, so the suite stays fast):

* a long stream of valid traffic (10,000+ packets on four interleaved subscriptions, heartbeats,
  end of session, sequence gaps, repeats and partial overlaps, idle gaps from the minimum
  inter-frame gap up), compared message for message, cycle for cycle;
* one named case per `Drop` reason, proving every drop counter reachable;
* hypothesis-generated lists of valid frames with mutations (truncations, bit flips, wrong lengths,
  wrong addresses, bad preambles, PHY errors, ...), compared exactly and checked for the
  cut-through rules: no message from a frame rejected by a header check, and every message of a
  frame is followed by that frame's verdict.
"""

import bisect
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hdl.feed import FeedHandler
from hdl.formats import (
    ETHERTYPE_IPV4, ETHERTYPE_VLAN, ITCH_BODIES, ITCH_LENGTHS, ITCH_TYPES, MOLD_END_OF_SESSION,
    MOLD_HEADER_LEN, Drop, multicast_mac,
)
from host.model import pack
from host.model.feed import Subscription
from sim.feed_rtl import IFG, PREAMBLE, Burst, FeedRtl, Outcome, Schedule, run_model
from sim.traffic import random_message

OWN_MAC = 0x02_00_00_00_00_01
# Four rows on different groups, ports and sessions; rows 0 and 2 share a group (so a frame to
# the wrong port of a subscribed group passes the MAC filter), row 2 starts synchronised.
SUBS = (
    Subscription(pack.FEED_GROUP, pack.FEED_PORT, b"TICKNIC001"),
    Subscription(pack.ip("233.54.12.112"), 26478, b"SESSIONB01"),
    Subscription(pack.FEED_GROUP, 26480, b"TICKNIC002", next_seq=1000),
    Subscription(pack.ip("233.49.196.73"), 18000, b"0000012345"),
)
UNSUBSCRIBED_GROUP = pack.ip("233.54.12.200")
# Decided before any payload byte passes: such a frame never emits a message.
HEADER_REJECTS = {
    Drop.MAC_PREAMBLE, Drop.ETH_DST, Drop.ETH_TYPE, Drop.IP_VERSION, Drop.IP_FRAGMENT,
    Drop.IP_PROTO, Drop.IP_CHECKSUM, Drop.UDP_NO_SUB, Drop.UDP_LENGTH, Drop.MOLD_SESSION,
    Drop.MOLD_DUPLICATE,
}
GMII_HEADER = PREAMBLE + 1          # preamble and SFD before the frame's first byte


@pytest.fixture(scope="module")
def rtl() -> FeedRtl:
    return FeedRtl()


def schedule() -> Schedule:
    return Schedule(OWN_MAC, [Subscription(s.group, s.port, s.session, s.next_seq)
                              for s in SUBS])


def mold_frame(row: int, seq: int, messages: list[bytes], *, vlan: int | None = None,
               count: int | None = None, extra: bytes = b"", dst_mac: int | None = None,
               session: bytes | None = None, group: int | None = None,
               port: int | None = None) -> bytes:
    """A frame (no FCS) of subscription `row`'s stream; the keywords make it wrong on purpose."""
    s = SUBS[row]
    payload = pack.mold_packet(session or s.session, seq, messages, count) + extra
    return pack.udp_frame(payload, dst_ip=s.group if group is None else group,
                          dst_port=s.port if port is None else port, vlan=vlan, dst_mac=dst_mac)


# --- frame surgery: offsets of an (unmutated) udp_frame, and header rewrites -----------------

def ip_at(frame: bytes) -> int:
    return 18 if frame[12:14] == ETHERTYPE_VLAN.to_bytes(2, "big") else 14


def udp_at(frame: bytes) -> int:
    ip = ip_at(frame)
    return ip + max(frame[ip] & 0xF, 5) * 4


def fix_ip_checksum(frame: bytearray) -> None:
    ip = ip_at(frame)
    hlen = max(frame[ip] & 0xF, 5) * 4
    frame[ip + 10:ip + 12] = b"\0\0"
    frame[ip + 10:ip + 12] = pack.ipv4_checksum(bytes(frame[ip:ip + hlen])).to_bytes(2, "big")


def set_ip(frame: bytes, offset: int, value: bytes, *, checksum: bool = True) -> bytes:
    """Overwrite IPv4 header bytes at `offset`; recompute the header checksum unless told not."""
    f = bytearray(frame)
    ip = ip_at(f)
    f[ip + offset:ip + offset + len(value)] = value
    if checksum:
        fix_ip_checksum(f)
    return bytes(f)


def add_ip_options(frame: bytes, words: int, fill: bytes = b"\x01") -> bytes:
    """Valid IPv4 options (`fill`, default NOP) making IHL 5 + `words`; lengths and checksum
    follow."""
    f = bytearray(frame)
    ip = ip_at(f)
    total = int.from_bytes(f[ip + 2:ip + 4], "big") + 4 * words
    f[ip + 20:ip + 20] = (fill * (4 * words))[:4 * words]
    f[ip] = 0x40 | (5 + words)
    f[ip + 2:ip + 4] = total.to_bytes(2, "big")
    fix_ip_checksum(f)
    return bytes(f)


def set_udp(frame: bytes, offset: int, value: bytes) -> bytes:
    f = bytearray(frame)
    u = udp_at(f)
    f[u + offset:u + offset + len(value)] = value
    return bytes(f)


def set_mold(frame: bytes, offset: int, value: bytes) -> bytes:
    """Overwrite MoldUDP64 bytes (header offset 0..19, blocks from 20)."""
    return set_udp(frame, 8 + offset, value)


def block_offsets(frame: bytes) -> list[int]:
    """MoldUDP64 payload offset of each block's length field, by walking the valid blocks."""
    u = udp_at(frame) + 8
    count = int.from_bytes(frame[u + 18:u + 20], "big")
    out, pos = [], MOLD_HEADER_LEN
    for _ in range(0 if count == MOLD_END_OF_SESSION else count):
        if u + pos + 2 > len(frame):
            break
        out.append(pos)
        pos += 2 + int.from_bytes(frame[u + pos:u + pos + 2], "big")
    return out


def vlan_tag(frame: bytes, tpid: int = ETHERTYPE_VLAN, vid: int = 7) -> bytes:
    """Another 802.1Q tag right after the MAC addresses."""
    return frame[:12] + struct.pack(">HH", tpid, vid) + frame[12:]


def burst(frame: bytes, *, fcs: bool = True, idle_before: int = IFG,
          error_at: int | None = None, preamble: int = PREAMBLE) -> Burst:
    body = pack.with_fcs(frame) if fcs else frame
    return Burst(pack.gmii(body, preamble), idle_before, error_at)


# --- checks shared by the tests ----------------------------------------------------------------

def frame_of(schedule: Schedule) -> Callable[[int], int]:
    """Which burst a cycle belongs to (the burst it falls in, else -1)."""
    starts = schedule.start_cycles()

    def find(cycle: int) -> int:
        i = bisect.bisect_right(starts, cycle) - 1
        return i if i >= 0 and cycle < starts[i] + len(schedule.bursts[i].data) else -1
    return find


def true_rx_cycles(b: Burst, start: int) -> dict[int, int]:
    """Sequence number -> cycle the last byte of that block was on the pins, by walking a valid
    frame's headers independently of the model."""
    f = b.data[b.data.index(0xD5) + 1:]
    u = udp_at(f) + 8
    seq, count = struct.unpack_from(">QH", f, u + 10)
    out, pos = {}, u + MOLD_HEADER_LEN
    for i in range(0 if count == MOLD_END_OF_SESSION else count):
        length = int.from_bytes(f[pos:pos + 2], "big")
        pos += 2 + length
        out[seq + i] = start + b.data.index(0xD5) + 1 + pos - 1
    return out


def assert_same(rtl_out: Outcome, model: Outcome, n_bursts: int) -> None:
    # Every burst gets exactly one verdict: nothing hangs, nothing merges.
    assert len(rtl_out.verdicts) == n_bursts
    assert rtl_out.verdicts == model.verdicts
    assert rtl_out.messages == model.messages
    assert rtl_out.gaps == model.gaps
    assert rtl_out.counters == model.counters
    assert rtl_out.emitted_at == [m["rx_cycle"] + FeedHandler.LATENCY for m in rtl_out.messages]


# --- 1. a long valid stream ---------------------------------------------------------------------

@dataclass
class Stream:
    schedule: Schedule
    packets: int
    kinds: str                      # what the generator did, one letter per packet


def valid_stream(seed: int, n_packets: int) -> Stream:
    """Valid traffic on the four rows, interleaved: 1 to ~60 messages a packet, every ITCH type,
    with and without VLAN, heartbeats, end of session, gaps, exact repeats and partial
    overlaps; idle either the minimum gap or up to a few hundred cycles."""
    rng = random.Random(seed)
    s = schedule()
    next_seq = [1, 1, 990, 1 << 40]       # row 2 starts inside the preset window (overlap)
    sent: list[list[tuple[int, list[bytes]]]] = [[] for _ in SUBS]
    kinds = []
    for _ in range(n_packets):
        row = rng.randrange(len(SUBS))
        vlan = rng.choice((None, None, 5, pack.FEED_VLAN, 4095))
        roll = rng.random()
        if roll < 0.04:
            kind, frame = "h", mold_frame(row, next_seq[row], [], vlan=vlan)
        elif roll < 0.06:
            kind = "e"
            frame = mold_frame(row, next_seq[row], [], vlan=vlan, count=MOLD_END_OF_SESSION)
        elif roll < 0.09 and sent[row]:
            kind = "r"                                  # an exact repeat of an earlier packet
            seq, msgs = rng.choice(sent[row][-20:])
            frame = mold_frame(row, seq, msgs, vlan=vlan)
        else:
            kind = "m"
            if roll < 0.14:
                kind, next_seq[row] = "g", next_seq[row] + rng.randint(1, 100)
            elif roll < 0.19 and sent[row]:
                kind = "o"                              # partly seen already
                next_seq[row] = max(1, next_seq[row] - rng.randint(1, len(sent[row][-1][1])))
            want = rng.choice((1, 1, 2, 3, rng.randint(1, 10), rng.randint(1, 60)))
            msgs: list[bytes] = []
            size = 0
            while len(msgs) < want:
                m = random_message(rng, rng.choice(ITCH_TYPES))
                if size + 2 + len(m) > pack.MOLD_MAX_BLOCKS:
                    break
                msgs.append(m)
                size += 2 + len(m)
            dst_mac = OWN_MAC if rng.random() < 0.05 else None
            frame = mold_frame(row, next_seq[row], msgs, vlan=vlan, dst_mac=dst_mac)
            sent[row].append((next_seq[row], msgs))
            next_seq[row] += len(msgs)
        idle = IFG if rng.random() < 0.5 else rng.randint(IFG, 300)
        s.bursts.append(burst(frame, idle_before=idle))
        kinds.append(kind)
    return Stream(s, n_packets, "".join(kinds))


@pytest.fixture(scope="module")
def stream(rtl: FeedRtl) -> tuple[Stream, Outcome, Outcome]:
    st_ = valid_stream(seed=20240611, n_packets=10_000)
    return st_, rtl.run(st_.schedule), run_model(st_.schedule)


def test_stream_covers_what_it_claims(stream: tuple[Stream, Outcome, Outcome]) -> None:
    st_, _, model = stream
    assert st_.packets >= 10_000
    assert all(st_.kinds.count(k) > 50 for k in "mhegro")
    assert set(model.counters["messages_by_type"]) == set(ITCH_TYPES)
    assert {m["sub"] for m in model.messages} == set(range(len(SUBS)))
    assert model.gaps and model.counters["drops"].keys() == {"mold_duplicate"}
    starts = st_.schedule.start_cycles()
    back_to_back = sum(b.idle_before == IFG for b in st_.schedule.bursts)
    assert back_to_back > st_.packets // 3 and starts[-1] > 0


def test_stream_messages_match_model(stream: tuple[Stream, Outcome, Outcome]) -> None:
    _, rtl_out, model = stream
    assert len(rtl_out.messages) == len(model.messages) > 20_000
    for i, (a, b) in enumerate(zip(rtl_out.messages, model.messages, strict=True)):
        assert a == b, f"message {i}"


def test_stream_verdicts_gaps_counters_match_model(
        stream: tuple[Stream, Outcome, Outcome]) -> None:
    st_, rtl_out, model = stream
    assert len(rtl_out.verdicts) == len(st_.schedule.bursts)
    assert rtl_out.verdicts == model.verdicts
    assert rtl_out.gaps == model.gaps
    assert rtl_out.counters == model.counters


def test_stream_rx_cycle_is_true_and_latency_is_fixed(
        stream: tuple[Stream, Outcome, Outcome]) -> None:
    st_, rtl_out, model = stream
    sched = st_.schedule
    starts = sched.start_cycles()
    find = frame_of(sched)
    truth: dict[int, dict[int, int]] = {}
    for m in model.messages:
        i = find(m["rx_cycle"])
        assert i >= 0 and model.verdicts[i] is Drop.NONE
        if i not in truth:
            truth[i] = true_rx_cycles(sched.bursts[i], starts[i])
        assert truth[i][m["seq"]] == m["rx_cycle"]
    assert [m["rx_cycle"] for m in rtl_out.messages] == [m["rx_cycle"] for m in model.messages]
    assert all(e - m["rx_cycle"] == FeedHandler.LATENCY
               for e, m in zip(rtl_out.emitted_at, rtl_out.messages, strict=True))
