"""`make demo`: the real Nasdaq captures through the gateware (feed handler + order book), in
Verilator.

    python tools/demo.py ../shared/data/nasdaq/Nasdaq.Equities.TotalView.Itch.v5.0 --out build/demo

For each capture: the same job as `hostctl replay CAPTURE --out OUT/<name> --engine rtl`, then
every decoded message as the gateware emitted it (sequence number, the cycle its last byte was
on the GMII pins, type and fields) and the card's counters; then, if the capture carries
orders, the replay again with `--watch` on the symbols it names (up to the book's 16 slots):
the bbo.csv the order book gateware produced. Exits non-zero if a replay fails.
"""

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # works without the editable install too

from hdl.formats import ITCH_BODIES, BookParams  # noqa: E402
from host.model.itch import text  # noqa: E402
from sim.replay import replay  # noqa: E402

_TEXT = {"stock"}
_CHAR = {"side", "event_code", "trading_state", "printable", "market_category"}


def show(message: dict) -> str:
    kind = message["type"]
    fields = []
    for name, _ in ITCH_BODIES[kind]:
        v = message[name]
        fields.append(f"{name}={text(v)!r}" if name in _TEXT else
                      f"{name}={chr(v)!r}" if name in _CHAR else f"{name}={v}")
    return (f"  seq {message['seq']:>9} cycle {message['rx_cycle']:>6}  {kind} "
            f"locate={message['locate']} " + " ".join(fields))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("captures", type=Path, help="folder of captures, or one capture")
    p.add_argument("--out", type=Path, default=REPO / "build" / "demo")
    p.add_argument("--engine", choices=["model", "rtl"], default="rtl")
    args = p.parse_args(argv)

    captures = sorted(args.captures.glob("*.pcap*")) if args.captures.is_dir() \
        else [args.captures]
    if not captures:
        print(f"no captures in {args.captures}", file=sys.stderr)
        return 2
    for cap in captures:
        out = args.out / cap.name.split(".")[0]
        outcome = replay(cap, out, args.engine)
        print(f"== {cap.name}: {len(outcome.messages)} decoded messages "
              f"({args.engine}, {outcome.cycles} cycles) -> {out}/counters.json")
        for message in outcome.messages:
            print(show(message))
        print("  counters: " + json.dumps(outcome.counters, sort_keys=True))
        symbols = list(dict.fromkeys(
            text(m["stock"]) for m in outcome.messages if m["type"] in "RHAF"))
        if any(m["type"] in "AF" for m in outcome.messages):
            watch = symbols[:BookParams().slots]
            book_out = out / "book"
            replay(cap, book_out, args.engine, watch=watch)
            print(f"  order book, watching {','.join(watch)} -> {book_out}/bbo.csv:")
            for line in (book_out / "bbo.csv").read_text().splitlines():
                print("    " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
