"""host.capture: format detection from content, against scapy's readers and the real captures."""

import gzip
import struct
from pathlib import Path

import pytest
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap, wrpcap, wrpcapng

from hdl.formats import MOLD_HEADER_LEN
from host.capture import Capture, frames_from_messages, read_capture
from host.model.pack import FEED_GROUP, FEED_PORT, mold_unpack, payload_of

NASDAQ = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nasdaq"
PCAPS = sorted(NASDAQ.glob("*/*.pcap"))
ITCH_PCAPS = sorted(NASDAQ.glob("Nasdaq.Equities.TotalView.Itch.v5.0*/*.pcap"))


def _messages(frames: list[bytes]) -> list[bytes]:
    return [m for f in frames for m in mold_unpack(payload_of(f) or b"")[3]]


def test_real_captures_exist() -> None:
    assert len(PCAPS) >= 29, f"expected the Nasdaq sample captures under {NASDAQ}"


@pytest.mark.parametrize("path", PCAPS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_pcap_matches_scapy(path: Path, tmp_path: Path) -> None:
    cap = read_capture(path)
    assert (cap.kind, cap.gzipped, cap.messages) == ("pcap", False, [])
    assert cap.frames == [bytes(p) for p in rdpcap(str(path))]
    gz = tmp_path / "renamed.bin"  # detection must not depend on the name
    gz.write_bytes(gzip.compress(path.read_bytes()))
    cap_gz = read_capture(gz)
    assert (cap_gz.kind, cap_gz.gzipped, cap_gz.frames) == ("pcap", True, cap.frames)


def test_real_frame_counts() -> None:
    itch = NASDAQ / "Nasdaq.Equities.TotalView.Itch.v5.0"
    assert len(read_capture(itch / "Multiple.Packets.pcap").frames) == 2
    anon = NASDAQ / "Nasdaq.Equities.TotalView.Itch.v5.0.20230822"
    assert len(read_capture(anon / "OrderDelete.pcap").frames) == 5
    assert len(read_capture(anon / "SystemEvent.pcap").frames) == 1


def _frames() -> list[bytes]:
    return [f for p in ITCH_PCAPS[:6] for f in read_capture(p).frames]


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path: Path, endian: str, nano: bool) -> None:
    frames = _frames()
    path = tmp_path / "x.pcap"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)]
    for i, f in enumerate(frames):
        out += [struct.pack(endian + "IIII", 1_700_000_000 + i, 999, len(f), len(f)), f]
    path.write_bytes(b"".join(out))
    assert read_capture(path).frames == frames
    assert [bytes(p) for p in rdpcap(str(path))] == frames  # scapy agrees on our file


def test_pcap_with_fcs_flag_strips_it(tmp_path: Path) -> None:
    frame = _frames()[0]
    path = tmp_path / "fcs.pcap"
    linktype = 1 | 1 << 28 | 2 << 29  # FCS present, 2 x 16 bits
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
                     + struct.pack("<IIII", 0, 0, len(frame) + 4, len(frame) + 4)
                     + frame + b"\xde\xad\xbe\xef")
    assert read_capture(path).frames == [frame]


def test_pcapng_written_by_scapy(tmp_path: Path) -> None:
    frames = _frames()
    path = tmp_path / "x.pcapng"
    wrpcapng(str(path), [Ether(f) for f in frames])
    cap = read_capture(path)
    assert (cap.kind, cap.frames) == ("pcapng", frames)
    gz = tmp_path / "x.pcapng.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read_capture(gz).frames == frames


def _block(order: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack(order + "II", btype, len(body) + 12) + body + struct.pack(order + "I",
                                                                                 len(body) + 12)


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_constructed_spb_epb_two_sections(tmp_path: Path, order: str) -> None:
    frames = _frames()[:3]
    shb = struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    idb = struct.pack(order + "HHI", 1, 0, 0)
    data = b"".join([
        _block(order, 0x0A0D0D0A, shb), _block(order, 1, idb),
        _block(order, 3, struct.pack(order + "I", len(frames[0])) + frames[0]),
        _block(order, 5, b"statistics, skipped"),
        # A second section in the other byte order, with an interface that carries the FCS.
        _block(">" if order == "<" else "<", 0x0A0D0D0A,
               struct.pack(("<" if order == ">" else ">") + "IHHq", 0x1A2B3C4D, 1, 0, -1)),
    ])
    o2 = ">" if order == "<" else "<"
    # if_fcslen option (code 13) = 4, padded to 4 bytes, then opt_endofopt.
    fcs_idb = struct.pack(o2 + "HHIHH", 1, 0, 0, 13, 1) + b"\x04\0\0\0" + bytes(4)
    data += _block(o2, 1, struct.pack(o2 + "HHI", 105, 0, 0))  # 802.11: never used
    data += _block(o2, 1, fcs_idb)
    for f in frames[1:]:
        data += _block(o2, 6, struct.pack(o2 + "IIIII", 1, 0, 0, len(f) + 4, len(f) + 4) + f
                       + b"FCS!")
    path = tmp_path / "x.pcapng"
    path.write_bytes(data)
    assert read_capture(path).frames == frames
    bad = tmp_path / "wifi.pcapng"
    bad.write_bytes(data + _block(o2, 6, struct.pack(o2 + "IIIII", 0, 0, 0, 4, 4) + b"abcd"))
    with pytest.raises(ValueError, match="interface 0 is not Ethernet"):
        read_capture(bad)


def test_binaryfile_plain_and_gzipped(tmp_path: Path) -> None:
    messages = _messages(_frames())
    data = b"".join(len(m).to_bytes(2, "big") + m for m in messages)
    for name, content in (("itch", data), ("itch.gz", gzip.compress(data))):
        path = tmp_path / name
        path.write_bytes(content)
        cap = read_capture(path)
        assert (cap.kind, cap.frames, cap.messages) == ("binaryfile", [], messages)
        assert cap.gzipped == name.endswith(".gz")
        assert _messages(cap.as_frames()) == messages


def test_frames_from_messages() -> None:
    messages = _messages([f for p in ITCH_PCAPS for f in read_capture(p).frames]) * 20
    frames = frames_from_messages(messages, first_seq=42, dst_ip=FEED_GROUP, dst_port=FEED_PORT)
    seq = 42
    for frame in frames:
        payload = payload_of(frame) or b""
        assert len(payload) <= 1400
        session, first, count, msgs = mold_unpack(payload)
        assert (session, first) == (b"BINARYFILE", seq)
        seq += count
    assert seq == 42 + len(messages) and _messages(frames) == messages
    assert max(len(payload_of(f) or b"") for f in frames) > 1400 - 52 - MOLD_HEADER_LEN
    few = frames_from_messages(messages[:10], per_packet=3)
    assert [mold_unpack(payload_of(f) or b"")[2] for f in few] == [3, 3, 3, 1]
    assert Capture(Path("x"), "pcap", frames=few).as_frames() == few


@pytest.mark.parametrize("content, match", [
    (b"", "empty file"),
    (b"hello, this is text\n", "not a capture.*68 65 6c 6c"),
    (b"\x1f\x8bnot really gzip", "does not decompress"),
    (b"\x00\x0cS" + bytes(11) + b"\x00\x13D", "message 1 at byte 14 needs 21 bytes.*only 3"),
    (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + bytes(10), "truncated pcap"),
    (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101), "link type is 101"),
    (bytes.fromhex("0a0d0d0a") + bytes(12), "byte-order magic"),
])
def test_bad_files_name_the_file(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.cap"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        read_capture(path)
    assert str(path) in str(info.value)


def test_wrpcap_us_round_trip(tmp_path: Path) -> None:
    frames = _frames()
    path = tmp_path / "scapy.pcap"
    wrpcap(str(path), [Ether(f) for f in frames])
    assert read_capture(path).frames == frames
