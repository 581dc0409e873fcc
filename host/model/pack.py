"""Builders (and a few parsers) for the wire formats under ITCH: MoldUDP64, UDP/IPv4, Ethernet.

Pure Python on purpose: the host, the backtester and the traffic generators call these for every
packet, so they use `struct` and `zlib` only. All wire integers are big-endian; IPv4 addresses
and MAC addresses are ints.

The `FEED_*` defaults are the addresses of the real Nasdaq TotalView-ITCH captures in
`../shared/data/nasdaq/`, so synthetic frames look like the exchange's.
"""

import struct
import zlib
from collections.abc import Sequence

from hdl.formats import (
    ETH_MIN_FRAME,
    ETH_PREAMBLE,
    ETH_PREAMBLE_LEN,
    ETH_SFD,
    ETHERTYPE_IPV4,
    ETHERTYPE_VLAN,
    FCS_LEN,
    IP_PROTO_UDP,
    MOLD_HEADER_LEN,
    SESSION_LEN,
    multicast_mac,
)

__all__ = [
    "FEED_GROUP", "FEED_PORT", "FEED_SRC_IP", "FEED_SRC_PORT", "FEED_SRC_MAC", "FEED_VLAN",
    "IP_MTU", "MOLD_MAX_BLOCKS", "ETH_CRC_RESIDUE",
    "mold_packet", "mold_unpack", "mold_batches", "ipv4_checksum", "udp_frame", "fcs",
    "pad", "with_fcs", "gmii", "payload_of", "udp_endpoint", "ip",
]


def ip(dotted: str) -> int:
    """An IPv4 address in dotted-quad notation as the int the builders take."""
    parts = [int(p) for p in dotted.split(".")]
    if len(parts) != 4 or not all(0 <= p <= 255 for p in parts):
        raise ValueError(f"IPv4 address must be four numbers 0..255 joined by '.', not {dotted!r}")
    return int.from_bytes(bytes(parts), "big")


FEED_GROUP = ip("233.54.12.111")
FEED_PORT = 26477
FEED_SRC_IP = ip("206.200.127.138")
FEED_SRC_PORT = 49653
FEED_SRC_MAC = 0xD4AFF7CB20D5
FEED_VLAN = 141

IP_MTU = 1500
# Bytes of MoldUDP64 blocks (u16 length + message each) that fit one unfragmented IPv4 packet.
MOLD_MAX_BLOCKS = IP_MTU - 20 - 8 - MOLD_HEADER_LEN
# CRC-32 over a frame followed by its correct FCS always gives this constant.
ETH_CRC_RESIDUE = 0x2144DF1C

_MOLD_HEADER = struct.Struct(">10sQH")
_IPV4_HEADER = struct.Struct(">BBHHHBBH4s4s")
_UDP_HEADER = struct.Struct(">HHHH")


def mold_packet(session: bytes, seq: int, messages: Sequence[bytes],
                count: int | None = None) -> bytes:
    """A MoldUDP64 downstream packet: session (10), sequence number of the first message (u64),
    message count (u16; `len(messages)` unless given: 0 heartbeat, 0xFFFF end of session), then
    one u16 length + message block per message. `count` may disagree with `messages` so tests
    can build malformed packets."""
    if len(session) != SESSION_LEN:
        raise ValueError(f"session must be {SESSION_LEN} bytes, not {len(session)} ({session!r}); "
                         "pad it with spaces")
    n = len(messages) if count is None else count
    if not 0 <= n <= 0xFFFF or not 0 <= seq < 1 << 64:
        raise ValueError(f"count must be 0..65535 and seq 0..2**64-1, not {n} and {seq}")
    parts = [_MOLD_HEADER.pack(session, seq, n)]
    for m in messages:
        if len(m) > 0xFFFF:
            raise ValueError(f"a MoldUDP64 message must be at most 65535 bytes, not {len(m)}")
        parts.append(len(m).to_bytes(2, "big"))
        parts.append(m)
    return b"".join(parts)


def mold_unpack(payload: bytes) -> tuple[bytes, int, int, list[bytes]]:
    """Inverse of `mold_packet`: (session, seq, count, messages). Heartbeats and end of session
    have no messages. Raises ValueError on a truncated packet or trailing bytes."""
    if len(payload) < MOLD_HEADER_LEN:
        raise ValueError(f"a MoldUDP64 packet has at least {MOLD_HEADER_LEN} bytes, "
                         f"not {len(payload)}")
    session, seq, count = _MOLD_HEADER.unpack_from(payload)
    messages: list[bytes] = []
    pos = MOLD_HEADER_LEN
    for _ in range(0 if count == 0xFFFF else count):
        if pos + 2 > len(payload):
            raise ValueError(f"MoldUDP64 packet ends after {len(messages)} of {count} blocks")
        end = pos + 2 + int.from_bytes(payload[pos:pos + 2], "big")
        if end > len(payload):
            raise ValueError(f"MoldUDP64 block {len(messages)} ends at byte {end}, "
                             f"beyond the {len(payload)}-byte packet")
        messages.append(payload[pos + 2:end])
        pos = end
    if pos != len(payload):
        raise ValueError(f"{len(payload) - pos} bytes after the {count} MoldUDP64 blocks")
    return session, seq, count, messages


def mold_batches(messages: Sequence[bytes], max_blocks: int = MOLD_MAX_BLOCKS,
                 per_packet: int | None = None) -> list[list[bytes]]:
    """Split messages, in order, into packets whose blocks take at most `max_blocks` bytes and
    that hold at most `per_packet` messages; every packet holds at least one message."""
    batches: list[list[bytes]] = []
    batch: list[bytes] = []
    size = 0
    for m in messages:
        if batch and (size + 2 + len(m) > max_blocks or len(batch) == per_packet):
            batches.append(batch)
            batch, size = [], 0
        batch.append(m)
        size += 2 + len(m)
    if batch:
        batches.append(batch)
    return batches


def ipv4_checksum(header: bytes) -> int:
    """The ones-complement sum checksum of an IPv4 header. Over a header whose checksum field is
    0 it is the value to put there; over a header with a correct checksum it is 0."""
    if len(header) % 2:
        header += b"\0"
    total: int = sum(struct.unpack(f">{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(payload: bytes, *, dst_ip: int, dst_port: int, src_ip: int = FEED_SRC_IP,
              src_port: int = FEED_SRC_PORT, dst_mac: int | None = None,
              src_mac: int = FEED_SRC_MAC, vlan: int | None = None, ttl: int = 64,
              ident: int = 0) -> bytes:
    """An Ethernet frame without FCS: dst MAC (the group's multicast MAC unless given), src MAC,
    optional 802.1Q tag (VLAN id, priority 0), IPv4 (IHL 5, DF, valid checksum), UDP (checksum 0,
    which IPv4 allows), payload; zero-padded to the 60 bytes that make a minimum frame with FCS.
    No MTU check, so tests can build oversized frames."""
    ip_len = 20 + 8 + len(payload)
    if ip_len > 0xFFFF:
        raise ValueError(f"UDP payload must be at most {0xFFFF - 28} bytes, not {len(payload)}")
    if vlan is not None and not 0 <= vlan < 4096:
        raise ValueError(f"vlan must be a VLAN id 0..4095 or None, not {vlan}")
    if dst_mac is None:
        dst_mac = multicast_mac(dst_ip)
    header = bytearray(_IPV4_HEADER.pack(
        0x45, 0, ip_len, ident, 0x4000, ttl, IP_PROTO_UDP, 0,
        src_ip.to_bytes(4, "big"), dst_ip.to_bytes(4, "big")))
    header[10:12] = ipv4_checksum(bytes(header)).to_bytes(2, "big")
    tag = b"" if vlan is None else struct.pack(">HH", ETHERTYPE_VLAN, vlan)
    frame = b"".join((
        dst_mac.to_bytes(6, "big"), src_mac.to_bytes(6, "big"), tag,
        ETHERTYPE_IPV4.to_bytes(2, "big"), header,
        _UDP_HEADER.pack(src_port, dst_port, 8 + len(payload), 0), payload))
    return pad(frame)


def pad(frame: bytes) -> bytes:
    """The frame zero-padded to the ETH_MIN_FRAME - FCS_LEN bytes that make a minimum frame once
    the FCS is appended, as a MAC pads a short frame before computing the FCS."""
    return frame.ljust(ETH_MIN_FRAME - FCS_LEN, b"\0")


def fcs(frame: bytes) -> bytes:
    """The Ethernet FCS of a frame (destination MAC through padding): CRC-32, in the byte order
    it is sent (zlib's CRC-32 is the Ethernet one, least significant byte first)."""
    return zlib.crc32(frame).to_bytes(4, "little")


def with_fcs(frame: bytes) -> bytes:
    """The frame with its FCS appended, as a MAC receives it."""
    return frame + fcs(frame)


def gmii(frame_with_fcs: bytes, preamble: int = ETH_PREAMBLE_LEN) -> bytes:
    """The bytes a GMII receiver presents: `preamble` bytes 0x55, the SFD 0xD5, then the frame."""
    return bytes([ETH_PREAMBLE]) * preamble + bytes([ETH_SFD]) + frame_with_fcs


def payload_of(frame: bytes) -> bytes | None:
    """The UDP payload of an Ethernet (+ one optional 802.1Q tag) IPv4/UDP frame, or None if the
    frame is not one. Checksums are ignored so the anonymised captures (zeroed addresses, wrong
    IPv4 checksum) can be re-framed; the length comes from the UDP header, so padding is cut."""
    endpoint = udp_endpoint(frame)
    return None if endpoint is None else endpoint[2]


def udp_endpoint(frame: bytes) -> tuple[int, int, bytes] | None:
    """(destination address, destination port, payload) of an IPv4/UDP frame, as `payload_of`."""
    pos = 12
    ethertype = int.from_bytes(frame[pos:pos + 2], "big")
    if ethertype == ETHERTYPE_VLAN:
        pos += 4
        ethertype = int.from_bytes(frame[pos:pos + 2], "big")
    pos += 2
    if ethertype != ETHERTYPE_IPV4 or len(frame) < pos + 20 or frame[pos] >> 4 != 4:
        return None
    ihl = (frame[pos] & 0xF) * 4
    if frame[pos + 9] != IP_PROTO_UDP or ihl < 20:
        return None
    udp = pos + ihl
    if len(frame) < udp + 8:
        return None
    udp_len = int.from_bytes(frame[udp + 4:udp + 6], "big")
    if udp_len < 8 or udp + udp_len > len(frame):
        return None
    dst = int.from_bytes(frame[pos + 16:pos + 20], "big")
    port = int.from_bytes(frame[udp + 2:udp + 4], "big")
    return dst, port, frame[udp + 8:udp + udp_len]
