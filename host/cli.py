"""`hostctl`: the operator's command line for the ticknic card.

Exit codes (DESIGN.md §4): 0 success, 2 bad input (one line naming what was wrong and what is
allowed), 1 the device (here: the simulator) failed.
"""

import argparse
import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

from hdl.formats import N_SUBSCRIPTIONS, SESSION_LEN, BookParams
from host.model.book import symbol_code

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse already exits 2; keep its message to the one line DESIGN.md §4 asks for.
        self.exit(2, f"hostctl: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hostctl", description="Drive a ticknic card, real or simulated.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser("replay", help="replay a capture through the model or the gateware",
                       description="Replay a pcap, pcapng or Nasdaq BinaryFILE (.gz allowed) "
                                   "and write DIR/counters.json.")
    r.add_argument("capture", type=Path)
    r.add_argument("--out", type=Path, required=True, metavar="DIR")
    r.add_argument("--engine", choices=("model", "rtl"), default="model",
                   help="model: the Python reference models; rtl: the gateware in Verilator")
    r.add_argument("--feed", action="append", type=_feed, metavar="GROUP:PORT[:SESSION]",
                   help="subscribe to this MoldUDP64 feed (repeatable, at most "
                        f"{N_SUBSCRIPTIONS}); default: every multicast feed in the capture")
    r.add_argument("--watch", type=_watch, metavar="SYM,SYM",
                   help="keep the order book of these symbols (at most "
                        f"{BookParams().slots}) and write DIR/bbo.csv")
    r.add_argument("--config", type=Path, metavar="FILE",
                   help="a strategy and limits file: watch its instruments, run the order "
                        "path and write DIR/orders.csv")
    r.add_argument("--fcs-safe", action="store_true",
                   help="with --config: orders wait for their frame's good FCS (default: "
                        "cut-through, counting orders sent from frames then dropped)")
    r.add_argument("--json", action="store_true", help="print counters.json to stdout")
    c = sub.add_parser("config", help="check a strategy and limits file",
                       description="Validate a strategy and limits file (TOML) and print what "
                                   "it configures; a bad one gives one line and exit code 2.")
    c.add_argument("file", type=Path)
    c.add_argument("--json", action="store_true", help="print the parsed file as JSON")
    _add_control_commands(sub)
    _sim_parser(sub)
    return p


def _add_control_commands(sub: Any) -> None:
    """The commands that talk to the controller daemon (`host.cli_control`)."""
    from host.cli_control import add_commands
    add_commands(sub)


def _feed(text: str) -> tuple[int, int, bytes | None]:
    """GROUP:PORT[:SESSION] -> (group, port, session or None)."""
    parts = text.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        group = int(ipaddress.IPv4Address(parts[0]))
        port = int(parts[1])
        if not 0 <= port <= 0xFFFF:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--feed must be GROUP:PORT[:SESSION] with an IPv4 group and a port 0-65535, "
            f"not {text!r}") from None
    session = parts[2].encode("ascii", "replace") if len(parts) == 3 else None
    if session is not None and len(session) > SESSION_LEN:
        raise argparse.ArgumentTypeError(
            f"--feed session must be at most {SESSION_LEN} characters, not {parts[2]!r}")
    return group, port, None if session is None else session.ljust(SESSION_LEN)


def _watch(text: str) -> list[str]:
    symbols = [s.strip() for s in text.split(",") if s.strip()]
    if not symbols:
        raise argparse.ArgumentTypeError("--watch must name at least one symbol, e.g. AAPL,MSFT")
    if len(symbols) > BookParams().slots:
        raise argparse.ArgumentTypeError(
            f"--watch takes at most {BookParams().slots} symbols, not {len(symbols)}")
    if len(set(symbols)) != len(symbols):
        raise argparse.ArgumentTypeError(f"--watch names a symbol twice: {text!r}")
    for symbol in symbols:
        try:
            symbol_code(symbol)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"--watch: {e}") from None
    return symbols


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "replay":
        return _replay(args)
    if args.command == "config":
        return _config(args)
    if args.command in _control_commands():
        return _control(args)
    if args.command == "sim":
        return _sim(args)
    raise AssertionError(args.command)


def _control_commands() -> tuple[str, ...]:
    from host.cli_control import COMMANDS
    return COMMANDS


def _control(args: argparse.Namespace) -> int:
    from host.cli_control import run
    return run(args)


def _config(args: argparse.Namespace) -> int:
    from host.config import ConfigError, load_config
    try:
        cfg = load_config(args.file)
    except ConfigError as e:
        print(f"hostctl: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(cfg.as_dict(), indent=2))
        return 0
    lim = cfg.limits
    print(f"{args.file}: limits: order qty <= {lim.max_order_qty}, notional <= "
          f"{lim.max_order_notional}, <= {lim.max_orders_per_second} orders/s")
    for i in cfg.instruments:
        sides = [f"buy at ask <= {i.buy_below}" if i.buy_below is not None else "",
                 f"sell at bid >= {i.sell_above}" if i.sell_above is not None else ""]
        print(f"  {i.symbol}: {', '.join(s for s in sides if s) or 'no trigger'}; min qty "
              f"{i.min_qty}, order qty {i.order_qty}, |position| <= {i.max_position}, "
              f"price {i.reference_px} +/- {i.collar}")
    for f in cfg.as_dict().get("feed", []):
        print(f"  feed: {f['group']}:{f['port']} session {f['session']}")
    if cfg.template is not None:
        t = cfg.as_dict()["order"]
        print(f"  orders: {ipaddress.IPv4Address(t['src_ip'])}:{t['src_port']} -> "
              f"{ipaddress.IPv4Address(t['dst_ip'])}:{t['dst_port']}, next hop "
              f"{t['dst_mac']:012x}, TIF {t['time_in_force']}, display {t['display']}, "
              f"capacity {t['capacity']}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    if not args.capture.is_file():
        print(f"hostctl: capture {str(args.capture)!r} is not a file", file=sys.stderr)
        return 2
    # Imported here: the simulation stack is only needed by the commands that use it.
    from sim.replay import replay
    if args.feed and len(args.feed) > N_SUBSCRIPTIONS:
        print(f"hostctl: --feed may be given at most {N_SUBSCRIPTIONS} times, not "
              f"{len(args.feed)}", file=sys.stderr)
        return 2
    config = None
    if args.config is not None:
        from host.config import ConfigError, load_config
        try:
            config = load_config(args.config)
        except ConfigError as e:
            print(f"hostctl: {e}", file=sys.stderr)
            return 2
    try:
        replay(args.capture, args.out, args.engine, args.feed, args.watch, config,
               args.fcs_safe)
    except ValueError as e:      # read_capture's errors name the file and what was expected
        print(f"hostctl: {e}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as e:
        print(f"hostctl: the {args.engine} engine failed: {e}", file=sys.stderr)
        return 1
    if args.json:
        print((args.out / "counters.json").read_text(), end="")
    else:
        c = json.loads((args.out / "counters.json").read_text())
        book = ""
        if "book" in c:
            book = f", {c['book']['updates']} book updates"
        if "orders" in c:
            book += f", {c['orders']} orders, {sum(c['rejects'].values())} refused"
        print(f"{args.capture.name}: {c['frames_ok']} frames ok, "
              f"{sum(c['messages_by_type'].values())} messages, "
              f"{sum(c['drops'].values())} dropped, {c['gaps']} gaps{book} -> {args.out}")
    return 0


def _sim_parser(sub: "argparse._SubParsersAction[_Parser]") -> None:
    """`hostctl sim start|stop`: the co-simulation server in the background (host.simctl)."""
    s = sub.add_parser("sim", help="start or stop the co-simulation server",
                       description="Run the card's gateware in Verilator behind ZeroMQ "
                                   "(sim.cosim), as a background process.")
    ss = s.add_subparsers(dest="sim_command", required=True, parser_class=_Parser)
    start = ss.add_parser("start", help="start a server and wait until it answers")
    stop = ss.add_parser("stop", help="stop the server started at the endpoint")
    for c in (start, stop):
        c.add_argument("--endpoint", default="tcp://127.0.0.1:5555",
                       help="ZeroMQ REP endpoint: tcp://HOST:PORT on loopback, or ipc://PATH")
        c.add_argument("--json", action="store_true", help="print the result as JSON")
    start.add_argument("--listen", action="append", default=[], metavar="GROUP:PORT",
                       help="take market data from this multicast feed on loopback "
                            "(repeatable)")
    start.add_argument("--pcap", action="append", default=[], type=Path, metavar="FILE",
                       help="play this capture into the card's RX pins at start")
    start.add_argument("--design", help=argparse.SUPPRESS)      # tests: MODULE:FACTORY
    start.add_argument("--book", metavar="slots=N,sets=N,ways=N,levels=N",
                       help="build the card with a smaller order book")
    start.add_argument("--allow-remote", action="store_true",
                       help="allow a non-loopback endpoint and order destinations")
    start.add_argument("--no-events", action="store_true",
                       help="leave the event FIFO to the host (no PUB stream)")


def _sim(args: argparse.Namespace) -> int:
    from host.simctl import SimCtlError, StartOptions, start, stop
    try:
        if args.sim_command == "start":
            info = start(StartOptions(args.endpoint, tuple(args.listen), tuple(args.pcap),
                                      args.design, args.book, args.allow_remote,
                                      args.no_events))
            print(json.dumps(info) if args.json else
                  f"co-simulation server (pid {info['pid']}) at {info['url'] or args.endpoint},"
                  f" events on {info['events']}")
        else:
            pid = stop(args.endpoint)
            print(json.dumps({"pid": pid, "stopped": True}) if args.json else
                  f"stopped the co-simulation server (pid {pid}) at {args.endpoint}")
    except SimCtlError as e:
        print(f"hostctl: {e}", file=sys.stderr)
        return e.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
