"""`hostctl replay --config`: the order path on a generated day. Every order is a rising edge of
its trigger in the book the same replay wrote (bbo.csv), at the touched price, and none breaks a
limit; refused edges are counted by reason; the gateware (`--engine rtl`) writes the same files;
bad combinations exit 2."""

import csv
import json
import statistics
from pathlib import Path

import pytest

from host.cli import main as hostctl
from host.model.orders import ORDERS_HEADER
from sim.market import market_stream
from sim.refbooks import binaryfile

SYMBOLS = ("AAPL", "MSFT")


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[list[int]]]]:
    """A generated day and its book (bbo rows per symbol: msg, bid, bid qty, ask, ask qty)."""
    tmp = tmp_path_factory.mktemp("day")
    capture = tmp / "day.bin"
    capture.write_bytes(binaryfile(market_stream(11, 20_000, SYMBOLS)))
    assert hostctl(["replay", str(capture), "--out", str(tmp / "book"), "--watch",
                    ",".join(SYMBOLS)]) == 0
    book: dict[str, list[list[int]]] = {s: [] for s in SYMBOLS}
    for r in list(csv.reader((tmp / "book" / "bbo.csv").read_text().splitlines()))[1:]:
        book[r[2]].append([int(r[0]), *map(int, r[3:])])
    return capture, book


def config_for(book: dict[str, list[list[int]]]) -> tuple[str, dict[str, dict[str, int]]]:
    """Triggers at each symbol's median quote, so both sides fire often; a collar narrow
    enough that some orders are refused, a position bound that binds."""
    insts: dict[str, dict[str, int]] = {}
    text = ("[limits]\nmax_order_qty = 400\nmax_order_notional = 100_000_000_000\n"
            "max_orders_per_second = 1000\n")
    for s, rows in book.items():
        bid = int(statistics.median(r[1] for r in rows if r[1]))
        ask = int(statistics.median(r[3] for r in rows if r[3]))
        insts[s] = {"buy_below": ask, "sell_above": bid, "min_qty": 100, "order_qty": 300,
                    "max_position": 1500, "reference_px": (bid + ask) // 2,
                    "collar": (ask - bid) * 2 + 1}
        text += f'[[instrument]]\nsymbol = "{s}"\n' + "".join(
            f"{k} = {v}\n" for k, v in insts[s].items())
    return text, insts


def edges(rows: list[list[int]], inst: dict[str, int]) -> list[tuple[int, str, int, int]]:
    """(msg, side, qty, price) of each rising edge of the two conditions over the quote rows."""
    out, was = [], [False, False]
    for msg, bid, bid_qty, ask, ask_qty in rows:
        now = [0 < ask <= inst["buy_below"] and ask_qty >= inst["min_qty"],
               0 < bid and bid >= inst["sell_above"] and bid_qty >= inst["min_qty"]]
        if now[0] and not was[0]:
            out.append((msg, "B", min(inst["order_qty"], ask_qty), ask))
        if now[1] and not was[1]:
            out.append((msg, "S", min(inst["order_qty"], bid_qty), bid))
        was = now
    return out


def test_orders_are_rising_edges_at_the_touch_within_every_limit(day, tmp_path):
    capture, book = day
    text, insts = config_for(book)
    cfg = tmp_path / "card.toml"
    cfg.write_text(text)
    out = tmp_path / "out"
    assert hostctl(["replay", str(capture), "--out", str(out), "--config", str(cfg)]) == 0
    lines = (out / "orders.csv").read_text().splitlines()
    assert lines[0] == ORDERS_HEADER
    orders = [(int(m), s, side, int(q), int(p), int(ref))
              for m, s, side, q, p, ref in csv.reader(lines[1:])]
    assert [o[5] for o in orders] == list(range(1, len(orders) + 1))    # UserRefNum 1, 2, ...
    counters = json.loads((out / "counters.json").read_text())
    assert counters["orders"] == len(orders) > 20
    assert set(counters["rejects"]) <= {"collar", "max_position", "max_qty"}
    assert counters["rejects"].get("max_position", 0) > 0      # no fills: open orders add up
    total_edges = 0
    for s, inst in insts.items():
        mine = [(m, side, q, p) for m, sym, side, q, p, _ in orders if sym == s]
        expected = edges(book[s], inst)
        total_edges += len(expected)
        assert set(mine) <= set(expected)                        # each order is an edge
        open_ = {"B": 0, "S": 0}
        for _, side, q, p in mine:
            open_[side] += q
            assert q <= 400 and abs(p - inst["reference_px"]) <= inst["collar"]
            assert open_[side] <= inst["max_position"]
    assert total_edges == len(orders) + sum(counters["rejects"].values())


def test_bad_combinations_exit_2(day, tmp_path, capsys):
    capture, book = day
    cfg = tmp_path / "card.toml"
    cfg.write_text(config_for(book)[0])
    out = str(tmp_path / "o")
    assert hostctl(["replay", str(capture), "--out", out, "--config", str(cfg),
                    "--watch", "AAPL"]) == 2
    assert "give one" in capsys.readouterr().err
    cfg.write_text("[limits]\nmax_order_qty = 0\n")
    assert hostctl(["replay", str(capture), "--out", out, "--config", str(cfg)]) == 2
    assert "limits.max_order_qty" in capsys.readouterr().err


def test_a_config_without_instruments_sends_nothing_and_says_so(day, tmp_path):
    capture, _ = day
    cfg = tmp_path / "card.toml"
    cfg.write_text("[limits]\nmax_order_qty = 1\nmax_order_notional = 1\n"
                   "max_orders_per_second = 1\n")
    out = tmp_path / "o"
    assert hostctl(["replay", str(capture), "--out", str(out), "--config", str(cfg)]) == 0
    assert (out / "orders.csv").read_text() == ORDERS_HEADER + "\n"
    counters = json.loads((out / "counters.json").read_text())
    assert (counters["orders"], counters["rejects"], counters["frames_ok"]) == (0, {}, 480)


def test_rtl_engine_writes_the_same_files(day, tmp_path):
    capture, book = day
    cfg = tmp_path / "card.toml"
    cfg.write_text(config_for(book)[0])
    outs = {}
    for engine in ("model", "rtl"):
        outs[engine] = tmp_path / engine
        assert hostctl(["replay", str(capture), "--out", str(outs[engine]), "--config",
                        str(cfg), "--engine", engine]) == 0
    for name in ("orders.csv", "bbo.csv", "counters.json"):
        assert (outs["rtl"] / name).read_text() == (outs["model"] / name).read_text(), name
    assert len((outs["rtl"] / "orders.csv").read_text().splitlines()) > 20


def test_fcs_safe_replay_of_good_frames_sends_the_same(day, tmp_path):
    capture, book = day
    cfg = tmp_path / "card.toml"
    cfg.write_text(config_for(book)[0])
    for mode in ([], ["--fcs-safe"]):
        assert hostctl(["replay", str(capture), "--out", str(tmp_path / str(len(mode))),
                        "--config", str(cfg), *mode]) == 0
    orders = [(tmp_path / str(n) / "orders.csv").read_text() for n in (0, 1)]
    assert orders[0] == orders[1] and orders[0].count("\n") > 20
    counters = json.loads((tmp_path / "1" / "counters.json").read_text())
    assert (counters["fcs_discarded"], counters["bad_frame_orders"]) == (0, 0)
