"""Read market-data captures: pcap, pcapng, or a Nasdaq BinaryFILE ITCH 5.0 file, any of them
optionally gzipped, told apart by their content (never by the file name).

Our own small reader rather than scapy's: it is several times faster, has no dependencies the
host does not already need, and gives errors that name the file.
"""

import gzip
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hdl.formats import ITCH_LENGTHS, MOLD_HEADER_LEN
from host.model.pack import FEED_GROUP, FEED_PORT, mold_batches, mold_packet, udp_frame

__all__ = ["Capture", "read_capture", "frames_from_messages"]

LINKTYPE_ETHERNET = 1
_GZIP_MAGIC = b"\x1f\x8b"
_PCAP_MAGICS = {  # magic as read little-endian -> (byte order, timestamp fraction)
    0xA1B2C3D4: ("<", "us"), 0xD4C3B2A1: (">", "us"),
    0xA1B23C4D: ("<", "ns"), 0x4D3CB2A1: (">", "ns"),
}
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BYTE_ORDER = 0x1A2B3C4D

Kind = Literal["pcap", "pcapng", "binaryfile"]


@dataclass
class Capture:
    """What a capture file holds: Ethernet frames without FCS (pcap, pcapng) or raw ITCH
    messages (BinaryFILE). The other list is empty; `kind` says which format was read."""
    path: Path
    kind: Kind
    gzipped: bool = False
    frames: list[bytes] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)

    def as_frames(self) -> list[bytes]:
        """The frames to replay: a BinaryFILE's messages are wrapped by `frames_from_messages`."""
        return self.frames if self.kind != "binaryfile" else frames_from_messages(self.messages)


def read_capture(path: str | Path) -> Capture:
    """Read a pcap (either byte order, us or ns timestamps), a pcapng (EPB, SPB and the obsolete
    packet block; Ethernet interfaces only) or a BinaryFILE (u16 length + ITCH 5.0 message,
    repeated), gzipped or not. Raises ValueError naming the file and what was expected."""
    path = Path(path)
    data = path.read_bytes()
    gzipped = data[:2] == _GZIP_MAGIC
    if gzipped:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: starts with the gzip magic but does not decompress: {e}") \
                from e
    magic = int.from_bytes(data[:4], "little") if len(data) >= 4 else None
    if magic in _PCAP_MAGICS:
        return Capture(path, "pcap", gzipped, frames=_pcap(path, data))
    if magic == _PCAPNG_SHB:
        return Capture(path, "pcapng", gzipped, frames=_pcapng(path, data))
    if len(data) >= 3 and chr(data[2]) in ITCH_LENGTHS \
            and int.from_bytes(data[:2], "big") == ITCH_LENGTHS[chr(data[2])]:
        return Capture(path, "binaryfile", gzipped, messages=_binaryfile(path, data))
    raise ValueError(
        f"{path}: not a capture: expected a pcap (magic a1b2c3d4 or a1b23c4d, either byte order), "
        f"a pcapng (block type 0a0d0d0a) or a Nasdaq BinaryFILE (u16 length + ITCH 5.0 message, "
        f"the first one of a known type and length), optionally gzipped; "
        f"it starts with {data[:8].hex(' ') or 'nothing (empty file)'}")


def _truncated(path: Path, what: str, pos: int) -> ValueError:
    return ValueError(f"{path}: truncated {what} at byte {pos}; the file was cut short, "
                      "capture it again or cut it at a record boundary")


def _pcap(path: Path, data: bytes) -> list[bytes]:
    if len(data) < 24:
        raise _truncated(path, "pcap file header", 0)
    order, _ = _PCAP_MAGICS[int.from_bytes(data[:4], "little")]
    linktype = struct.unpack_from(order + "I", data, 20)[0]
    if linktype & 0xFFFF != LINKTYPE_ETHERNET:
        raise ValueError(f"{path}: pcap link type is {linktype & 0xFFFF}, but only Ethernet "
                         f"({LINKTYPE_ETHERNET}) is supported")
    # Bit 28 flags that every record ends with an FCS of (bits 29-31) 16-bit words: drop it so
    # frames are always FCS-less, as pack.with_fcs expects.
    fcs_len = (linktype >> 29) * 2 if linktype & 1 << 28 else 0
    record = struct.Struct(order + "IIII")
    frames, pos = [], 24
    while pos < len(data):
        if pos + 16 > len(data):
            raise _truncated(path, "pcap record header", pos)
        _, _, incl, _ = record.unpack_from(data, pos)
        pos += 16
        if pos + incl > len(data):
            raise _truncated(path, f"pcap record of {incl} bytes", pos)
        frames.append(data[pos:pos + incl - fcs_len])
        pos += incl
    return frames


def _pcapng(path: Path, data: bytes) -> list[bytes]:
    frames: list[bytes] = []
    order = "<"
    fcs_lens: list[int] = []  # per interface of the current section; -1: not Ethernet
    pos = 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise _truncated(path, "pcapng block header", pos)
        if int.from_bytes(data[pos:pos + 4], "little") == _PCAPNG_SHB:
            # Each section declares its own byte order; the SHB type reads the same either way.
            bom = data[pos + 8:pos + 12]
            if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                raise ValueError(f"{path}: pcapng section at byte {pos} has byte-order magic "
                                 f"{bom.hex()}, expected 1a2b3c4d in either byte order")
            order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            fcs_lens = []
        btype, blen = struct.unpack_from(order + "II", data, pos)
        if blen < 12 or blen % 4 or pos + blen > len(data):
            raise _truncated(path, f"pcapng block of type {btype:#x} and length {blen}", pos)
        body = data[pos + 8:pos + blen - 4]
        if btype == 1:  # interface description
            linktype = struct.unpack_from(order + "H", body)[0]
            fcs_lens.append(_if_fcslen(body[8:], order) if linktype == LINKTYPE_ETHERNET else -1)
        elif btype in (2, 3, 6):  # obsolete packet, simple packet, enhanced packet
            if btype == 3:
                iface, start = 0, 4
                size = min(struct.unpack_from(order + "I", body)[0], len(body) - 4)
            else:
                iface = struct.unpack_from(order + ("H" if btype == 2 else "I"), body)[0]
                start, size = 20, struct.unpack_from(order + "I", body, 12)[0]
            if iface >= len(fcs_lens):
                raise ValueError(f"{path}: pcapng packet at byte {pos} names interface {iface}, "
                                 f"but only {len(fcs_lens)} are described before it")
            if fcs_lens[iface] < 0:
                raise ValueError(f"{path}: pcapng interface {iface} is not Ethernet "
                                 f"(link type {LINKTYPE_ETHERNET}); only Ethernet is supported")
            frames.append(body[start:start + size - fcs_lens[iface]])
        pos += blen
    return frames


def _if_fcslen(options: bytes, order: str) -> int:
    """The if_fcslen option (code 13) of an interface description: FCS bytes on each packet."""
    pos = 0
    while pos + 4 <= len(options):
        code, size = struct.unpack_from(order + "HH", options, pos)
        if code == 0:
            break
        if code == 13 and size >= 1:
            return options[pos + 4]
        pos += 4 + (size + 3) // 4 * 4
    return 0


def _binaryfile(path: Path, data: bytes) -> list[bytes]:
    messages: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        size = int.from_bytes(data[pos:pos + 2], "big")
        if size == 0 and pos + 2 <= end:
            raise ValueError(f"{path}: BinaryFILE message {len(messages)} at byte {pos} has "
                             "length 0; every message has at least its type byte")
        if pos + 2 + max(size, 1) > end:
            raise ValueError(f"{path}: BinaryFILE message {len(messages)} at byte {pos} needs "
                             f"{2 + size} bytes (u16 length {size} + message), but only "
                             f"{end - pos} remain; expected u16 length (1 or more) + that many "
                             "bytes, repeated to the end of the file")
        messages.append(data[pos + 2:pos + 2 + size])
        pos += 2 + size
    return messages


def frames_from_messages(messages: Sequence[bytes], *, session: bytes = b"BINARYFILE",
                         first_seq: int = 1, per_packet: int | None = None,
                         max_payload: int = 1400, dst_ip: int = FEED_GROUP,
                         dst_port: int = FEED_PORT, vlan: int | None = None) -> list[bytes]:
    """Wrap raw ITCH messages, in order, into MoldUDP64 packets (UDP payload at most
    `max_payload` bytes, at most `per_packet` messages each, sequence numbers continuous from
    `first_seq`) inside Ethernet frames without FCS, so a BinaryFILE replays like a live feed."""
    frames, seq = [], first_seq
    for batch in mold_batches(messages, max_payload - MOLD_HEADER_LEN, per_packet):
        payload = mold_packet(session, seq, batch)
        frames.append(udp_frame(payload, dst_ip=dst_ip, dst_port=dst_port, vlan=vlan))
        seq += len(batch)
    return frames
