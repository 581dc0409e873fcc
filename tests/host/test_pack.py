"""host.model.pack against scapy (an independent Ethernet/IPv4/UDP implementation) and the real
Nasdaq captures."""

import random
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from hdl.formats import ETHERTYPE_VLAN, ITCH_TYPES, MOLD_END_OF_SESSION, multicast_mac
from host.capture import read_capture
from host.model.pack import (
    ETH_CRC_RESIDUE,
    FEED_GROUP,
    FEED_PORT,
    FEED_SRC_IP,
    FEED_SRC_MAC,
    FEED_SRC_PORT,
    FEED_VLAN,
    IP_MTU,
    fcs,
    gmii,
    ip,
    ipv4_checksum,
    mold_batches,
    mold_packet,
    mold_unpack,
    payload_of,
    udp_frame,
    with_fcs,
)
from sim.traffic import Feed, random_frames, random_packets, random_stream

NASDAQ = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nasdaq"
ITCH = NASDAQ / "Nasdaq.Equities.TotalView.Itch.v5.0"


def _mac(value: int) -> str:
    return value.to_bytes(6, "big").hex(":")


def _scapy_checksums_ok(pkt: Ether) -> None:
    ip_layer = pkt[IP].copy()
    del ip_layer.chksum
    assert IP(bytes(ip_layer)).chksum == pkt[IP].chksum


@pytest.mark.parametrize("vlan", [None, 0, 5, 4095])
@pytest.mark.parametrize("size", [0, 1, 17, 18, 19, 100, 1472])
def test_udp_frame_against_scapy(vlan: int | None, size: int) -> None:
    payload = random.Random(size).randbytes(size)
    frame = udp_frame(payload, dst_ip=ip("233.54.12.111"), dst_port=26477, src_ip=ip("10.1.2.3"),
                      src_port=1234, src_mac=0x020000ABCDEF, vlan=vlan, ttl=7, ident=0x1234)
    pkt = Ether(frame)
    assert len(frame) == max(60, 14 + (vlan is not None) * 4 + 28 + size)
    assert pkt.dst == "01:00:5e:36:0c:6f" and pkt.src == "02:00:00:ab:cd:ef"
    if vlan is None:
        assert pkt.type == 0x0800 and Dot1Q not in pkt
    else:
        assert pkt.type == ETHERTYPE_VLAN
        assert (pkt[Dot1Q].vlan, pkt[Dot1Q].prio, pkt[Dot1Q].dei) == (vlan, 0, 0)
        assert pkt[Dot1Q].type == 0x0800
    h = pkt[IP]
    assert (h.version, h.ihl, h.tos, h.len, h.id) == (4, 5, 0, 28 + size, 0x1234)
    assert (str(h.flags), h.frag, h.ttl, h.proto) == ("DF", 0, 7, 17)
    assert (h.src, h.dst) == ("10.1.2.3", "233.54.12.111")
    _scapy_checksums_ok(pkt)
    u = pkt[UDP]
    assert (u.sport, u.dport, u.len, u.chksum) == (1234, 26477, 8 + size, 0)
    assert (bytes(pkt[Raw].load) if size else b"")[:size] == payload
    assert payload_of(frame) == payload


def test_udp_frame_defaults_and_explicit_mac() -> None:
    frame = udp_frame(b"x", dst_ip=FEED_GROUP, dst_port=FEED_PORT, vlan=FEED_VLAN)
    pkt = Ether(frame)
    assert pkt.dst == _mac(multicast_mac(FEED_GROUP)) and pkt.src == _mac(FEED_SRC_MAC)
    assert (pkt[IP].src, pkt[UDP].sport) == ("206.200.127.138", FEED_SRC_PORT)
    assert pkt[IP].src == ".".join(str(b) for b in FEED_SRC_IP.to_bytes(4, "big"))
    assert Ether(udp_frame(b"", dst_ip=1, dst_port=2, dst_mac=0x0A0B0C0D0E0F)).dst \
        == "0a:0b:0c:0d:0e:0f"


def test_udp_frame_rejects_bad_fields() -> None:
    with pytest.raises(ValueError, match="vlan must be"):
        udp_frame(b"", dst_ip=FEED_GROUP, dst_port=1, vlan=4096)
    with pytest.raises(ValueError, match="UDP payload must be at most"):
        udp_frame(bytes(65508), dst_ip=FEED_GROUP, dst_port=1)


def test_ipv4_checksum_known_and_real() -> None:
    # The worked example of RFC 1071 style checksums from Wikipedia's IPv4 header article.
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert ipv4_checksum(header) == 0xB861
    for frame in read_capture(ITCH / "Multiple.Packets.pcap").frames:
        assert ipv4_checksum(frame[18:38]) == 0  # a valid header sums to zero


def test_fcs_known_value_and_residue() -> None:
    assert fcs(b"123456789") == (0xCBF43926).to_bytes(4, "little")  # the CRC-32 check value
    frame = udp_frame(b"hello", dst_ip=FEED_GROUP, dst_port=FEED_PORT)
    wire = with_fcs(frame)
    assert wire[:-4] == frame and zlib.crc32(wire) == ETH_CRC_RESIDUE
    assert zlib.crc32(wire[:-1] + bytes([wire[-1] ^ 1])) != ETH_CRC_RESIDUE
    assert gmii(wire) == b"\x55" * 7 + b"\xd5" + wire
    assert gmii(wire, preamble=2)[:3] == b"\x55\x55\xd5"


def test_mold_packet_layout_and_round_trip() -> None:
    msgs = [b"S" + bytes(11), b"D" + bytes(18)]
    pkt = mold_packet(b"000010059B", 14764496, msgs)
    assert pkt[:20] == b"000010059B" + (14764496).to_bytes(8, "big") + b"\x00\x02"
    assert pkt[20:22] == b"\x00\x0c" and pkt[34:36] == b"\x00\x13"
    assert mold_unpack(pkt) == (b"000010059B", 14764496, 2, msgs)
    assert mold_packet(b"S" * 10, 5, [])[-2:] == b"\x00\x00"  # heartbeat
    end = mold_packet(b"S" * 10, 5, [], count=MOLD_END_OF_SESSION)
    assert mold_unpack(end) == (b"S" * 10, 5, 0xFFFF, [])
    with pytest.raises(ValueError, match="session must be 10 bytes"):
        mold_packet(b"short", 1, [])
    with pytest.raises(ValueError, match="ends after 2 of 3"):
        mold_unpack(mold_packet(b"S" * 10, 1, msgs, count=3))
    with pytest.raises(ValueError, match="bytes after"):
        mold_unpack(pkt + b"\0")


def test_mold_batches() -> None:
    msgs = [bytes(n) for n in (50, 50, 50, 10)]
    assert [len(b) for b in mold_batches(msgs, max_blocks=104)] == [2, 2]
    assert [len(b) for b in mold_batches(msgs, per_packet=3)] == [3, 1]
    assert mold_batches([]) == []


def test_payload_of_real_captures() -> None:
    first, second = read_capture(ITCH / "Multiple.Packets.pcap").frames
    assert len(second) == 1518  # a full 1500-byte IP MTU behind a VLAN tag
    for frame in (first, second):
        payload = payload_of(frame)
        assert payload is not None and payload == bytes(Ether(frame)[UDP].payload)
        assert payload[:10] == b"000010059B"
    assert mold_unpack(payload_of(first) or b"")[1:3] == (14764496, 1)
    assert mold_unpack(payload_of(second) or b"")[1:3] == (19009117, 38)
    ouch = read_capture(NASDAQ / "Nasdaq.Nsm.Ouch.v5.0" / "EnterOrderMessage.pcap").frames[0]
    assert payload_of(ouch) is None  # TCP


def test_payload_of_rejects_non_udp() -> None:
    frame = bytearray(udp_frame(b"abc", dst_ip=FEED_GROUP, dst_port=1))
    assert payload_of(bytes(frame)) == b"abc"
    assert payload_of(bytes(frame[:40])) is None  # cut inside the UDP header
    frame[23] = 6  # TCP
    assert payload_of(bytes(frame)) is None
    frame[12:14] = b"\x86\xdd"  # IPv6
    assert payload_of(bytes(frame)) is None
    assert payload_of(b"") is None


def test_random_packets_parse_and_number_continuously() -> None:
    rng = random.Random(1)
    frames = random_packets(rng, 200, session=b"ABCDEFGHIJ", first_seq=1000, group=FEED_GROUP,
                            port=FEED_PORT, max_messages=40)
    seq, kinds, vlans = 1000, set(), set()
    for frame in frames:
        pkt = Ether(frame)
        vlans.add(pkt[Dot1Q].vlan if Dot1Q in pkt else None)
        assert pkt[IP].len <= IP_MTU and pkt[IP].dst == "233.54.12.111"
        _scapy_checksums_ok(pkt)
        session, first, count, msgs = mold_unpack(payload_of(frame) or b"")
        assert (session, first) == (b"ABCDEFGHIJ", seq) and 1 <= count == len(msgs)
        kinds |= {chr(m[0]) for m in msgs}
        seq += count
    assert kinds == set(ITCH_TYPES) and vlans == {None, 5}
    assert any(Ether(f)[IP].len > 1400 for f in frames)  # the MTU limit was reached


def test_feed_continues_across_calls() -> None:
    rng = random.Random(2)
    feed = Feed(seq=7)
    frames = random_frames(rng, feed, 3) + [feed.heartbeat()] + random_frames(rng, feed, 3)
    seq = 7
    for frame in frames:
        _, first, count, _ = mold_unpack(payload_of(frame) or b"")
        assert first == seq
        seq += count
    assert feed.seq == seq
    assert mold_unpack(payload_of(feed.end_of_session()) or b"")[1:] == (seq, 0xFFFF, [])
    assert len(random_stream(rng, 10, kinds="AD")) == 10


@given(st.binary(min_size=10, max_size=10), st.integers(0, 2**64 - 1),
       st.lists(st.binary(min_size=1, max_size=60), max_size=30),
       st.sampled_from([None, 0, 4095]))
def test_mold_and_udp_round_trip(session: bytes, seq: int, msgs: list[bytes],
                                 vlan: int | None) -> None:
    payload = mold_packet(session, seq, msgs)
    frame = udp_frame(payload, dst_ip=FEED_GROUP, dst_port=FEED_PORT, vlan=vlan)
    assert payload_of(frame) == payload
    assert mold_unpack(payload) == (session, seq, len(msgs), msgs)
    assert zlib.crc32(with_fcs(frame)) == ETH_CRC_RESIDUE
