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
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hdl.feed import FeedHandler
from hdl.formats import (
    ETHERTYPE_VLAN,
    ITCH_LENGTHS,
    ITCH_TYPES,
    MOLD_END_OF_SESSION,
    MOLD_HEADER_LEN,
    Drop,
    multicast_mac,
)
from hdl.itch import HEAD_AT, HEAD_EXTRAS, HEAD_KEYS, LOCATE_AT, field_end
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


def test_stream_heads_come_early_and_carry_the_keys(
        stream: tuple[Stream, Outcome, Outcome]) -> None:
    """Every decoded message is announced by a head after its locate, and a type with key
    fields by a second one after the last of them, each exactly as many cycles before the
    message as bytes remain; the heads carry what the message then carries. (The stream has
    no bad frames, so there is no head without its message.)"""
    _, rtl_out, _ = stream
    heads = dict(rtl_out.heads)
    assert len(heads) == len(rtl_out.heads)
    expected = 0
    for at, m in zip(rtl_out.emitted_at, rtl_out.messages, strict=True):
        last = ITCH_LENGTHS[m["type"]] - 1
        marks = [(LOCATE_AT, 0)] + ([(HEAD_AT[m["type"]], 1)] if m["type"] in HEAD_AT else [])
        for offset, key in marks:
            h = heads[at - (last - offset)]
            assert (chr(h["type"]), h["locate"], h["key"]) == (m["type"], m["locate"], key)
            for name in HEAD_KEYS + HEAD_EXTRAS:
                if key and name in m and HEAD_AT[m["type"]] >= field_end(m["type"], name):
                    assert h[name] == m[name], (name, m)
        expected += len(marks)
    assert expected == len(heads)
    assert {chr(h["type"]) for h in heads.values() if h["key"]} >= set("RHAFECXDU")


# --- 2. one case per drop reason ----------------------------------------------------------------

def _msgs(*kinds: str, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [random_message(rng, k) for k in kinds]


GOOD = mold_frame(0, 1, _msgs("A", "E", "S"))
PAYLOAD_BIT = (len(GOOD) - 10) * 8 + 3     # a bit in the last message


def _flip(data: bytes, bit: int) -> bytes:
    return data[:bit // 8] + bytes([data[bit // 8] ^ (1 << (bit % 8))]) + data[bit // 8 + 1:]


def _oversize() -> bytes:
    frame = mold_frame(0, 1, _msgs(*"I" * 30))       # 30 * 52 bytes of blocks: 1600+ bytes
    assert len(frame) + 4 > 1522
    return frame


def _longer_than_frame(frame: bytes) -> bytes:
    """IPv4 and UDP lengths agree but claim 10 bytes more than the frame (and its FCS) holds."""
    total = len(frame) - ip_at(frame) + 10
    return set_udp(set_ip(frame, 2, total.to_bytes(2, "big")), 4, (total - 20).to_bytes(2, "big"))


# name -> (bursts, the last one's expected verdict); earlier bursts must be good.
REASON_CASES: dict[str, tuple[Callable[[], list[Burst]], Drop]] = {
    "good": (lambda: [burst(GOOD)], Drop.NONE),
    "good_vlan_options_padding": (lambda: [burst(add_ip_options(
        mold_frame(0, 1, _msgs("A"), vlan=9), 2) + bytes(30))], Drop.NONE),
    "phy_error": (lambda: [burst(GOOD, error_at=40)], Drop.MAC_PHY_ERROR),
    "preamble_bad_byte": (lambda: [Burst(b"\x54" + burst(GOOD).data[1:])], Drop.MAC_PREAMBLE),
    "preamble_no_sfd": (lambda: [Burst(b"\x55" * 7 + pack.with_fcs(GOOD))], Drop.MAC_PREAMBLE),
    "oversize": (lambda: [burst(_oversize())], Drop.MAC_OVERSIZE),
    "runt": (lambda: [burst(GOOD[:50])], Drop.MAC_RUNT),
    "fcs": (lambda: [Burst(pack.gmii(_flip(pack.with_fcs(GOOD), PAYLOAD_BIT)))], Drop.MAC_FCS),
    "no_fcs": (lambda: [burst(GOOD, fcs=False)], Drop.MAC_FCS),
    "eth_dst": (lambda: [burst(mold_frame(0, 1, _msgs("A"), dst_mac=OWN_MAC + 1))],
                Drop.ETH_DST),
    "eth_type": (lambda: [burst(GOOD[:12] + b"\x86\xdd" + GOOD[14:])], Drop.ETH_TYPE),
    "eth_double_vlan": (lambda: [burst(vlan_tag(mold_frame(0, 1, _msgs("A"), vlan=5)))],
                        Drop.ETH_TYPE),
    "ip_version": (lambda: [burst(set_ip(GOOD, 0, b"\x65"))], Drop.IP_VERSION),
    "ip_ihl_below_5": (lambda: [burst(set_ip(GOOD, 0, b"\x44"))], Drop.IP_VERSION),
    "ip_length_in_header": (lambda: [burst(set_ip(GOOD, 2, (27).to_bytes(2, "big")))],
                            Drop.IP_LENGTH),
    "ip_length_beyond_frame": (lambda: [burst(_longer_than_frame(GOOD))], Drop.IP_LENGTH),
    "ip_length_beyond_frame_udp_length": (
        lambda: [burst(set_ip(GOOD, 2, len(GOOD).to_bytes(2, "big")))], Drop.IP_LENGTH),
    "ip_fragment": (lambda: [burst(set_ip(GOOD, 6, b"\x20\x00"))], Drop.IP_FRAGMENT),
    "ip_proto": (lambda: [burst(set_ip(GOOD, 9, b"\x06"))], Drop.IP_PROTO),
    "ip_checksum": (lambda: [burst(set_ip(GOOD, 10, b"\x12\x34", checksum=False))],
                    Drop.IP_CHECKSUM),
    "udp_no_sub": (lambda: [burst(mold_frame(0, 1, _msgs("A"), port=1234))], Drop.UDP_NO_SUB),
    "udp_length": (lambda: [burst(set_udp(GOOD, 4, (len(GOOD) - 41).to_bytes(2, "big")))],
                   Drop.UDP_LENGTH),
    "mold_session": (lambda: [burst(mold_frame(0, 1, _msgs("A"), session=b"TICKNIC999"))],
                     Drop.MOLD_SESSION),
    "mold_duplicate": (lambda: [burst(GOOD), burst(GOOD)], Drop.MOLD_DUPLICATE),
    "mold_truncated_count": (lambda: [burst(mold_frame(0, 1, _msgs("A", "D"), count=3))],
                             Drop.MOLD_TRUNCATED),
    "mold_truncated_header": (lambda: [burst(pack.udp_frame(
        b"TICKNIC001" + bytes(5), dst_ip=SUBS[0].group, dst_port=SUBS[0].port))],
                              Drop.MOLD_TRUNCATED),
    "mold_trailing": (lambda: [burst(mold_frame(0, 1, _msgs("A"), extra=b"\0\0\0"))],
                      Drop.MOLD_TRAILING),
    "mold_empty_block": (lambda: [burst(mold_frame(0, 1, [*_msgs("A"), b""]))],
                         Drop.MOLD_EMPTY_BLOCK),
    "itch_unknown_type": (lambda: [burst(mold_frame(0, 1, [b"Z" + bytes(11), *_msgs("A")]))],
                          Drop.ITCH_UNKNOWN_TYPE),
    "itch_bad_length": (lambda: [burst(mold_frame(0, 1, [*_msgs("D"), _msgs("A")[0][:35]]))],
                        Drop.ITCH_BAD_LENGTH),
}


def test_reason_cases_cover_every_drop() -> None:
    assert {expected for _, expected in REASON_CASES.values()} == set(Drop)


@pytest.mark.parametrize("name", REASON_CASES)
def test_each_reason(rtl: FeedRtl, name: str) -> None:
    make, expected = REASON_CASES[name]
    s = schedule()
    s.bursts = make()
    rtl_out, model = rtl.run(s), run_model(s)
    assert model.verdicts == [Drop.NONE] * (len(s.bursts) - 1) + [expected]
    assert_same(rtl_out, model, len(s.bursts))
    if expected is not Drop.NONE:
        assert model.counters["drops"] == {expected.name.lower(): 1}


# --- 3. bad input, generated -------------------------------------------------------------------

# Applied to a valid frame of one of the subscriptions (or at the end, to its GMII burst).
MUTATIONS = (
    "none", "vlan_frame", "padding", "unicast", "truncate", "bit_flip", "ip_total_length",
    "ip_ihl", "ip_options", "ip_version", "udp_length", "mold_count", "block_length",
    "ip_checksum", "ip_fragment", "ip_proto", "ethertype", "double_vlan", "dst_mac", "port",
    "group", "session", "garbage", "itch_unknown_type", "itch_bad_length", "oversize", "runt",
    "phy_error", "preamble", "no_fcs", "byte_errors",
)
SEQ_MODES = ("next", "next", "next", "gap", "repeat", "overlap", "zero")


@dataclass
class Mutated:
    """A frame (no FCS) on its way to a burst: what is still to be done to it."""
    frame: bytes
    fcs: str = "good"               # "good", "none", or "kept" (the original FCS, after edits)
    truncate_wire: int | None = None  # cut the frame + FCS here (after the FCS is appended)
    wire_bit: int | None = None     # flip this bit of frame + FCS (after the FCS is appended)


def _u16(draw: st.DrawFn, around: int) -> bytes:
    value = draw(st.one_of(st.integers(0, 0xFFFF), st.integers(around - 40, around + 40)
                           .map(lambda v: v & 0xFFFF)))
    return value.to_bytes(2, "big")


@st.composite
def bad_schedules(draw: st.DrawFn) -> Schedule:
    """1..24 frames of the four subscriptions, each valid or broken in one of `MUTATIONS`."""
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))   # field values only, not structure
    next_seq = [1, 1, 995, 1 << 40]
    sent: list[list[tuple[int, list[bytes]]]] = [[] for _ in SUBS]
    s = schedule()
    for _ in range(draw(st.integers(1, 24))):
        row = draw(st.integers(0, len(SUBS) - 1))
        mode = draw(st.sampled_from(SEQ_MODES))
        mutation = draw(st.sampled_from(MUTATIONS))
        kinds = draw(st.lists(st.sampled_from(ITCH_TYPES), max_size=10))
        msgs = [random_message(rng, k) for k in kinds]
        count = None
        seq = next_seq[row]
        if mode == "gap":
            seq += draw(st.integers(1, 50))
        elif mode == "overlap":
            seq = max(1, seq - draw(st.integers(1, 10)))
        elif mode == "zero":
            seq = 0
        elif mode == "repeat" and sent[row]:
            seq, msgs = draw(st.sampled_from(sent[row]))
        if not msgs and draw(st.booleans()):
            count = MOLD_END_OF_SESSION
        extra = b""
        session = None
        if mutation == "garbage":
            extra = draw(st.binary(min_size=1, max_size=40))
        elif mutation == "session":
            session = draw(st.sampled_from([x.session for x in SUBS] + [b"TICKNIC00\0"]))
        elif mutation == "mold_count":
            count = int.from_bytes(_u16(draw, len(msgs)), "big")
        elif mutation == "itch_unknown_type":
            kind = draw(st.integers(0, 255).filter(lambda b: chr(b) not in ITCH_LENGTHS))
            msgs.insert(draw(st.integers(0, len(msgs))),
                        bytes([kind]) + rng.randbytes(draw(st.integers(0, 60))))
        elif mutation == "itch_bad_length":
            kind = draw(st.sampled_from(ITCH_TYPES))
            length = draw(st.integers(1, 60).filter(lambda n, k=kind: n != ITCH_LENGTHS[k]))
            msgs.insert(draw(st.integers(0, len(msgs))),
                        (random_message(rng, kind) + rng.randbytes(60))[:length])
        elif mutation == "oversize":
            while sum(2 + len(m) for m in msgs) < 1500 + draw(st.integers(0, 60)):
                msgs.append(random_message(rng, draw(st.sampled_from(ITCH_TYPES))))
        vlan = draw(st.sampled_from((None, 5))) if mutation != "vlan_frame" else 4095
        frame = mold_frame(row, seq, msgs, vlan=vlan, count=count, extra=extra, session=session)
        if mutation in {"none", "vlan_frame", "garbage", "session", "mold_count", "oversize",
                        "itch_unknown_type", "itch_bad_length"} and seq:
            sent[row].append((seq, msgs))
            next_seq[row] = max(next_seq[row], seq + len(msgs))
        m = _mutate(draw, rng, Mutated(frame), mutation)
        body = m.frame
        if m.fcs == "good":
            body = pack.with_fcs(body)
        elif m.fcs == "kept":
            body = body + pack.fcs(frame)
        if m.truncate_wire is not None:
            body = body[:m.truncate_wire]
        if m.wire_bit is not None and body:
            body = _flip(body, m.wire_bit % (8 * len(body)))
        data = pack.gmii(body)
        error_at = None
        if mutation == "preamble":
            data = _bad_preamble(draw, body)
        elif mutation == "phy_error":
            error_at = draw(st.integers(0, len(data) - 1))
        idle = draw(st.one_of(st.just(IFG), st.integers(IFG, 300)))
        s.bursts.append(Burst(data, idle, error_at))
    return s


def _bad_preamble(draw: st.DrawFn, body: bytes) -> bytes:
    how = draw(st.sampled_from(("first_byte", "no_sfd", "bad_sfd", "short", "long", "late")))
    if how == "first_byte":            # not 0x55 or 0xD5
        return bytes([draw(st.integers(0, 255).filter(lambda b: b not in (0x55, 0xD5)))]) + \
            pack.gmii(body)[1:]
    if how == "no_sfd":
        return b"\x55" * 7 + body
    if how == "bad_sfd":
        return b"\x55" * 7 + bytes([draw(st.sampled_from((0xD4, 0x5D, 0xF5, 0x00)))]) + body
    if how == "late":                  # a bad byte inside the preamble
        pre = bytearray(b"\x55" * 7)
        pre[draw(st.integers(1, 6))] = draw(st.integers(0, 255).filter(lambda b: b != 0x55))
        return bytes(pre) + b"\xd5" + body
    # Any number of 0x55 then the SFD is a valid preamble.
    return pack.gmii(body, draw(st.integers(0, 2) if how == "short" else st.integers(8, 20)))


def _mutate(draw: st.DrawFn, rng: random.Random, m: Mutated, mutation: str) -> Mutated:
    f = m.frame
    ip = ip_at(f)
    if mutation == "padding":          # Ethernet padding after the IPv4 packet: still good
        m.frame = f + bytes(draw(st.integers(1, 100)))
    elif mutation == "unicast":        # to our own MAC: still good
        m.frame = OWN_MAC.to_bytes(6, "big") + f[6:]
    elif mutation == "truncate":
        how = draw(st.sampled_from(("recompute", "keep", "wire")))
        cut = draw(st.integers(0, len(f) + 3))
        if how == "wire":              # the burst simply stops early
            m.truncate_wire = cut
        else:                          # a shorter frame, with its own FCS or the original one
            m.frame, m.fcs = f[:cut], "good" if how == "recompute" else "kept"
    elif mutation == "bit_flip":
        if draw(st.booleans()):        # FCS recomputed: only the layers can tell
            m.frame = _flip(f, draw(st.integers(0, 8 * len(f) - 1)))
        else:
            m.wire_bit = draw(st.integers(0, 8 * (len(f) + 4) - 1))
    elif mutation == "byte_errors":    # a few random bytes, FCS recomputed
        b = bytearray(f)
        for _ in range(draw(st.integers(1, 4))):
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
        m.frame = bytes(b)
    elif mutation == "ip_total_length":
        total = int.from_bytes(f[ip + 2:ip + 4], "big")
        m.frame = set_ip(f, 2, _u16(draw, total))
        if draw(st.booleans()):        # keep UDP consistent with it
            new = int.from_bytes(m.frame[ip + 2:ip + 4], "big")
            m.frame = set_udp(m.frame, 4, ((new - 20) & 0xFFFF).to_bytes(2, "big"))
    elif mutation == "ip_ihl":         # a header length the bytes do not follow
        m.frame = set_ip(f, 0, bytes([0x40 | draw(st.integers(0, 15))]))
    elif mutation == "ip_options":     # valid options: the frame stays good
        fill = draw(st.sampled_from((b"\x01", b"\x00", b"\x94\x04\x00\x00")))
        m.frame = add_ip_options(f, draw(st.integers(1, 10)), fill)
    elif mutation == "ip_version":
        m.frame = set_ip(f, 0, bytes([draw(st.integers(0, 15)) << 4 | 5]))
    elif mutation == "udp_length":
        u = udp_at(f)
        m.frame = set_udp(f, 4, _u16(draw, int.from_bytes(f[u + 4:u + 6], "big")))
    elif mutation == "block_length":
        blocks = block_offsets(f)
        if blocks:
            at = draw(st.sampled_from(blocks))
            length = draw(st.one_of(st.just(0), st.integers(0, 0xFFFF), st.integers(1, 60)))
            m.frame = set_mold(f, at, length.to_bytes(2, "big"))
    elif mutation == "ip_checksum":
        bad = draw(st.integers(1, 0xFFFF))
        c = int.from_bytes(f[ip + 10:ip + 12], "big")
        m.frame = set_ip(f, 10, (c ^ bad).to_bytes(2, "big"), checksum=False)
    elif mutation == "ip_fragment":
        flags = draw(st.sampled_from((0x2000, 0x6000, 0x0001, 0x1FFF, 0x2001, 0x8000)))
        m.frame = set_ip(f, 6, flags.to_bytes(2, "big"))   # 0x8000 (reserved bit): still good
    elif mutation == "ip_proto":
        m.frame = set_ip(f, 9, bytes([draw(st.integers(0, 255))]))
    elif mutation == "ethertype":
        t = draw(st.sampled_from((0x86DD, 0x0806, 0x88A8, 0x0000, 0xFFFF, 0x0801)))
        m.frame = f[:ip - 2] + t.to_bytes(2, "big") + f[ip:]
    elif mutation == "double_vlan":
        tpid = draw(st.sampled_from((ETHERTYPE_VLAN, 0x88A8)))
        m.frame = vlan_tag(f, tpid, draw(st.integers(0, 4095)))
    elif mutation == "dst_mac":
        mac = draw(st.sampled_from((OWN_MAC + 1, 0xFFFFFFFFFFFF, multicast_mac(UNSUBSCRIBED_GROUP),
                                    *(multicast_mac(x.group) for x in SUBS), OWN_MAC)))
        m.frame = mac.to_bytes(6, "big") + f[6:]
    elif mutation == "port":
        port = draw(st.sampled_from((*(x.port for x in SUBS), 0, 1234)))
        m.frame = set_udp(f, 2, port.to_bytes(2, "big"))
    elif mutation == "group":          # the MAC still that of the original group
        group = draw(st.sampled_from((*(x.group for x in SUBS), UNSUBSCRIBED_GROUP)))
        m.frame = set_ip(f, 16, group.to_bytes(4, "big"))
    elif mutation == "runt":
        m.frame = f[:draw(st.integers(0, 59))]
    elif mutation == "no_fcs":
        m.fcs = "none"
    return m


def ip_length_in_header(b: Burst) -> bool:
    """Whether a frame's IPv4 total length is below its header + 8: a header-level rejection."""
    f = b.data[b.data.index(0xD5) + 1:]
    ip = ip_at(f)
    if len(f) < ip + 20:
        return True                    # cannot even hold the fixed header
    hlen = max(f[ip] & 0xF, 5) * 4
    return len(f) < ip + hlen + 8 or int.from_bytes(f[ip + 2:ip + 4], "big") < hlen + 8


def check_cut_through(s: Schedule, rtl_out: Outcome, model: Outcome) -> None:
    """Messages belong to the burst their last byte was in; a frame rejected by a header check
    emits none, and every message is followed by its own frame's verdict."""
    find = frame_of(s)
    by_frame: dict[int, list[dict[str, Any]]] = {}
    for msg, emitted in zip(rtl_out.messages, rtl_out.emitted_at, strict=True):
        i = find(msg["rx_cycle"])
        assert i >= 0, f"message {msg} outside every burst"
        assert rtl_out.verdict_at[i] > emitted
        by_frame.setdefault(i, []).append(msg)
    for i, msgs in by_frame.items():
        v = model.verdicts[i]
        assert v not in HEADER_REJECTS, (i, v, msgs)
        if v is Drop.IP_LENGTH:
            assert not ip_length_in_header(s.bursts[i]), (i, msgs)
        assert msgs == [m for m in model.messages if find(m["rx_cycle"]) == i]


@settings(max_examples=300, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(s=bad_schedules())
def test_bad_input_matches_model(rtl: FeedRtl, s: Schedule) -> None:
    rtl_out, model = rtl.run(s), run_model(s)
    assert_same(rtl_out, model, len(s.bursts))
    check_cut_through(s, rtl_out, model)


# --- the byte valid: one AND of the blocks' `passing`, equal to the chain of their valids -----

class _Watched(FeedHandler):
    """The feed handler, with its receive blocks in order (MAC first) for the test to read."""
    def elaborate(self, platform):
        m = super().elaborate(platform)
        self.blocks = [getattr(m.submodules, n) for n in ("mac", "eth", "ipv4", "udp", "mold",
                                                          "itch")]
        return m


def _harsh_gmii(rng: random.Random, n_frames: int) -> list[tuple[int, int, int]]:
    """(rxd, rx_dv, rx_er) per cycle: frames of the four subscriptions, new and repeated, some
    cut short, bit-flipped or with PHY errors, with preambles of 0-7 bytes and gaps of 0-3
    cycles (none legal on a wire; the blocks' end beats then meet the next frame's bytes)."""
    cycles: list[tuple[int, int, int]] = []
    seqs = [1, 1, 1000, 1]
    for _ in range(n_frames):
        row = rng.randrange(len(SUBS))
        msgs = [random_message(rng, rng.choice(ITCH_TYPES)) for _ in range(rng.randint(0, 3))]
        seq = seqs[row] - rng.choice((0, 0, 0, 1))          # some repeat the last message
        seqs[row] = max(seqs[row], seq + len(msgs))
        body = pack.with_fcs(mold_frame(row, seq, msgs))
        how = rng.choice(("good", "good", "good", "cut", "flip", "error"))
        if how == "cut":
            body = body[:rng.randrange(len(body))]
        elif how == "flip":
            body = _flip(body, rng.randrange(8 * len(body)))
        wire = pack.gmii(body, rng.randint(0, PREAMBLE))
        error_at = rng.randrange(len(wire)) if how == "error" else None
        cycles += [(b, 1, int(i == error_at)) for i, b in enumerate(wire)]
        cycles += [(0, 0, 0)] * rng.randint(0, 3)
    return cycles + [(0, 0, 0)] * 8


def test_the_byte_valid_is_the_chain_of_valids() -> None:
    """Each block's sink is valid (`hdl.feed`: an end beat, or every block before it
    `passing`) in exactly the cycles the block before it offers a beat: on back-to-back
    frames, cut and broken ones, duplicates, with end beats running into the next frame."""
    dut = _Watched()
    sim = Simulator(dut)
    sim.add_clock(8e-9)
    stream = _harsh_gmii(random.Random(5), 60)
    seen = {"data": 0, "end": 0}

    async def bench(ctx):
        for i, s in enumerate(SUBS):
            ctx.set(dut.sub_write.payload, {"index": i, "row": {
                "valid": 1, "group": s.group, "port": s.port,
                "session": int.from_bytes(s.session, "big"), "next_seq": s.next_seq}})
            ctx.set(dut.sub_write.valid, 1)
            await ctx.tick()
        ctx.set(dut.sub_write.valid, 0)
        for rxd, dv, er in stream:
            ctx.set(dut.gmii.rxd, rxd)
            ctx.set(dut.gmii.rx_dv, dv)
            ctx.set(dut.gmii.rx_er, er)
            await ctx.delay(1e-9)
            for before, block in zip(dut.blocks, dut.blocks[1:], strict=False):
                assert ctx.get(block.sink.valid) == ctx.get(before.source.valid), \
                    (type(block).__name__, ctx.get(dut.cycle))
            itch = dut.blocks[-1].sink
            if ctx.get(itch.valid):
                seen["end" if ctx.get(itch.payload.end) else "data"] += 1
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    # Messages reached the decoder, and the frames' end beats (frames with no gap between
    # them are one frame to the MAC).
    assert seen["data"] > 1000 and seen["end"] > 40, seen
