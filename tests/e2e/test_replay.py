"""`hostctl replay` on the real Nasdaq captures: both engines write identical counters."""

import gzip
import json
import random
from collections import Counter
from pathlib import Path

import pytest

from hdl.formats import Drop
from host.capture import read_capture
from host.cli import main as hostctl
from host.model import pack
from host.model.feed import Subscription
from sim import traffic
from sim.feed_rtl import FeedRtl, Schedule, run_model

NASDAQ = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nasdaq"
REAL = sorted((NASDAQ / "Nasdaq.Equities.TotalView.Itch.v5.0").glob("*.pcap"))
ANONYMISED = sorted((NASDAQ / "Nasdaq.Equities.TotalView.Itch.v5.0.20230822").glob("*.pcap"))
REAL_FEED = "233.54.12.111:26477"


def replay(capture: Path, out: Path, engine: str, *extra: str) -> dict:
    assert hostctl(["replay", str(capture), "--out", str(out), "--engine", engine, *extra]) == 0
    return json.loads((out / "counters.json").read_text())


@pytest.mark.parametrize("capture", REAL + ANONYMISED,
                         ids=lambda p: f"{p.parent.name[-8:]}/{p.name}")
def test_engines_agree(capture: Path, tmp_path: Path) -> None:
    model = replay(capture, tmp_path / "model", "model")
    rtl = replay(capture, tmp_path / "rtl", "rtl")
    assert model == rtl
    assert (tmp_path / "model" / "counters.json").read_bytes() == \
        (tmp_path / "rtl" / "counters.json").read_bytes()


@pytest.mark.parametrize("capture", REAL, ids=lambda p: p.name)
def test_real_captures_decode(capture: Path, tmp_path: Path) -> None:
    counters = replay(capture, tmp_path, "rtl")
    frames = read_capture(capture).frames
    assert counters["frames_ok"] == len(frames)
    assert counters["drops"] == {}
    assert sum(counters["messages_by_type"].values()) > 0


def test_multiple_packets(tmp_path: Path) -> None:
    """Two packets, 1 and 38 messages, 4,244,620 sequence numbers apart: one gap."""
    counters = replay(NASDAQ / "Nasdaq.Equities.TotalView.Itch.v5.0" / "Multiple.Packets.pcap",
                      tmp_path, "rtl")
    assert counters == {"frames_ok": 2, "messages_by_type": {"A": 36, "F": 2, "D": 1},
                        "drops": {}, "gaps": 1}


@pytest.mark.parametrize("capture", ANONYMISED, ids=lambda p: p.name)
def test_anonymised_dropped_at_ipv4(capture: Path, tmp_path: Path) -> None:
    """Their IPv4 checksums are zeroed: with the real feed subscribed (so the multicast MAC
    passes), every frame is dropped by the IPv4 layer and counted there."""
    frames = read_capture(capture).frames
    for engine in ("model", "rtl"):
        counters = replay(capture, tmp_path / engine, engine, "--feed", REAL_FEED + ":0000000000")
        assert counters["drops"] == {"ip_checksum": len(frames)}
        assert counters["frames_ok"] == 0 and counters["messages_by_type"] == {}


def test_anonymised_payloads_reframed() -> None:
    """The UDP payloads of the anonymised captures, framed again with valid headers, decode in
    the gateware exactly as in the model, and every message of a decoded type comes out."""
    session = b"REFRAMED01"
    schedule = Schedule()
    schedule.subscriptions[0] = Subscription(pack.FEED_GROUP, pack.FEED_PORT, session)
    seq, expected = 1, 0
    for capture in ANONYMISED:
        for frame in read_capture(capture).frames:
            payload = pack.payload_of(frame)
            assert payload is not None
            _, _, count, messages = pack.mold_unpack(payload)
            expected += sum(1 for m in messages if chr(m[0]) in "SRHAFECXDUP")
            schedule.add_frame(pack.udp_frame(pack.mold_packet(session, seq, messages, count),
                                              dst_ip=pack.FEED_GROUP, dst_port=pack.FEED_PORT,
                                              vlan=pack.FEED_VLAN))
            seq += len(messages)
    model = run_model(schedule)
    rtl = FeedRtl.shared().run(schedule)
    assert model.verdicts == [Drop.NONE] * len(schedule.bursts)
    assert rtl.verdicts == model.verdicts
    assert rtl.messages == model.messages
    assert rtl.counters == model.counters
    assert len(model.messages) == expected > 0


def test_bad_capture_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not a capture\n")
    assert hostctl(["replay", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "notes.txt" in err and "pcap" in err
    assert hostctl(["replay", str(tmp_path / "missing.pcap"), "--out", str(tmp_path)]) == 2
    with pytest.raises(SystemExit) as e:
        hostctl(["replay", str(bad), "--out", str(tmp_path), "--feed", "233.54.12:1"])
    assert e.value.code == 2


def test_binaryfile_gz(tmp_path: Path) -> None:
    """A gzipped Nasdaq BinaryFILE (u16 length + message, repeated) replays through the same
    pipeline: both engines agree, and every message is counted under its type."""
    rng = random.Random(5)
    messages = traffic.random_stream(rng, 3000)
    path = tmp_path / "day.itch.gz"
    path.write_bytes(gzip.compress(b"".join(len(m).to_bytes(2, "big") + m for m in messages)))
    model = replay(path, tmp_path / "model", "model")
    rtl = replay(path, tmp_path / "rtl", "rtl")
    assert model == rtl
    assert model["drops"] == {} and model["gaps"] == 0
    assert model["messages_by_type"] == Counter(chr(m[0]) for m in messages)
