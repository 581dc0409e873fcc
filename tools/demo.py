"""`make demo`: replay the sample ITCH captures through the gateware and print its counters.

    python tools/demo.py ../shared/data/nasdaq/Nasdaq.Equities.TotalView.Itch.v5.0 --out build/demo

For each capture, runs `hostctl replay CAPTURE --out OUT/<name> --engine rtl` (in-process, via
host.cli.main) and prints the counters.json it wrote. Exits non-zero if any replay fails.
"""

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("captures", type=Path, help="folder of .pcap/.pcapng files, or one capture")
    p.add_argument("--out", type=Path, default=REPO / "build" / "demo")
    p.add_argument("--engine", choices=["model", "rtl"], default="rtl")
    args = p.parse_args(argv)

    sys.path.insert(0, str(REPO))  # works without the editable install too
    from host.cli import main as hostctl  # imported late: host/ is being written alongside

    if args.captures.is_dir():
        captures = sorted(
            c for c in args.captures.iterdir() if c.suffix in (".pcap", ".pcapng", ".gz")
        )
    else:
        captures = [args.captures]
    if not captures:
        print(f"no .pcap/.pcapng/.gz captures in {args.captures}", file=sys.stderr)
        return 2

    failed = 0
    for cap in captures:
        out = args.out / cap.name.split(".")[0]
        print(f"== {cap.name} -> {out}", flush=True)
        rc = hostctl(["replay", str(cap), "--out", str(out), "--engine", args.engine])
        if rc:
            print(f"   hostctl replay exited {rc}", file=sys.stderr)
            failed += 1
            continue
        counters = json.loads((out / "counters.json").read_text())
        print(json.dumps(counters, indent=2, sort_keys=True))
    print(f"{len(captures) - failed} of {len(captures)} captures replayed; outputs in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
