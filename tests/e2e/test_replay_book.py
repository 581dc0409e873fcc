"""`hostctl replay --watch`: both engines write the same bbo.csv, and it is itch-book's book."""

import csv
import json
from pathlib import Path

import pytest

from host.capture import read_capture
from host.cli import main as hostctl
from host.model.book import BBO_HEADER
from host.model.pack import mold_unpack, payload_of
from sim.market import MARKET_SYMBOLS, market_stream
from sim.refbooks import binaryfile, itchbook_bbo

NASDAQ = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nasdaq"
MULTIPLE = NASDAQ / "Nasdaq.Equities.TotalView.Itch.v5.0" / "Multiple.Packets.pcap"


def replay(capture: Path, out: Path, engine: str, watch: str) -> list[tuple[int, ...]]:
    assert hostctl(["replay", str(capture), "--out", str(out), "--engine", engine,
                    "--watch", watch]) == 0
    text = (out / "bbo.csv").read_text()
    rows = list(csv.reader(text.splitlines()))
    assert ",".join(rows[0]) == BBO_HEADER
    return [tuple(int(v) if i != 2 else v for i, v in enumerate(r)) for r in rows[1:]]


def without_symbol(rows):
    return [(r[0], r[1], *r[3:]) for r in rows]


def test_multiple_packets_is_itchbooks_book(tmp_path):
    rows = {e: replay(MULTIPLE, tmp_path / e, e, "META,AAPL") for e in ("model", "rtl")}
    assert (tmp_path / "model" / "bbo.csv").read_bytes() == \
        (tmp_path / "rtl" / "bbo.csv").read_bytes()
    assert (tmp_path / "model" / "counters.json").read_bytes() == \
        (tmp_path / "rtl" / "counters.json").read_bytes()
    messages = [m for f in read_capture(MULTIPLE).as_frames()
                for m in mold_unpack(payload_of(f))[3]]
    meta = {r[1] for r in rows["model"]}
    assert len(meta) == 1 and all(r[2] == "META" for r in rows["model"])
    assert without_symbol(rows["model"]) == itchbook_bbo(messages, meta)
    assert rows["model"], "the capture has META orders: the book must show them"


def test_generated_day_both_engines_and_itchbook(tmp_path):
    messages = market_stream(7, 20_000)
    capture = tmp_path / "day.bin"
    capture.write_bytes(binaryfile(messages))
    watch = ",".join(MARKET_SYMBOLS)
    rows = {e: replay(capture, tmp_path / e, e, watch) for e in ("model", "rtl")}
    assert rows["model"] == rows["rtl"]
    counters = json.loads((tmp_path / "rtl" / "counters.json").read_text())
    assert counters["book"]["updates"] > 1000
    locates = {r[1] for r in rows["model"]}
    assert len(locates) == len(MARKET_SYMBOLS)
    assert without_symbol(rows["model"]) == itchbook_bbo(messages, locates)


@pytest.mark.parametrize("watch, complaint", [
    (",".join(f"S{i}" for i in range(17)), "at most 16 symbols"),
    ("AAPL,TOOLONGSYM", "1 to 8 printable"),
    ("AAPL,AAPL", "twice"),
    (",", "at least one symbol"),
])
def test_bad_watchlist_exits_2_naming_it(tmp_path, capsys, watch, complaint):
    with pytest.raises(SystemExit) as e:
        hostctl(["replay", str(MULTIPLE), "--out", str(tmp_path), "--watch", watch])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--watch" in err and complaint in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bbo.csv").exists()
