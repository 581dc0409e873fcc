"""`hostctl`'s control commands: each one a request to the controller daemon (`host.daemon`).

    hostctl daemon start --device URL [--endpoint E] [--state F] [--regmap F]
    hostctl daemon stop | run (foreground)
    hostctl status | limits | latency
    hostctl load FILE.toml [--check]
    hostctl arm SYMBOL|--all       hostctl disarm SYMBOL|--all
    hostctl kill [SYMBOL]          hostctl unkill [SYMBOL]
    hostctl book SYMBOL            hostctl events [--follow]
    hostctl fill SYMBOL B|S QTY PRICE      hostctl release SYMBOL B|S QTY

Every command takes `--json` (machine-readable output) and `--daemon ENDPOINT` (default: the
daemon's default endpoint), except `daemon start|run`, which serve `--endpoint`. Exit codes as
DESIGN.md §4: 0 done, 2 bad input (one line naming the field), 1 the card failed or no daemon
answers (one line saying how to start one). Kept apart from `host.cli` so the command families
merge without touching each other.
"""

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from host.process import alive

__all__ = ["COMMANDS", "add_commands", "run"]

COMMANDS = ("daemon", "status", "load", "limits", "arm", "disarm", "kill", "unkill", "book",
            "events", "latency", "fill", "release")
PRICE_SCALE = 10_000        # ITCH prices: 1/10000 dollar


def add_commands(sub: Any) -> None:
    from host.daemon import add_daemon_options, default_endpoint, default_pid_file
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="machine-readable output")
    common = argparse.ArgumentParser(add_help=False, parents=[as_json])
    common.add_argument("--daemon", metavar="ENDPOINT", default=None,
                        help=f"the daemon's endpoint (default {default_endpoint()})")

    def command(parent: Any, name: str, text: str, base: argparse.ArgumentParser = common,
                ) -> argparse.ArgumentParser:
        # description as well as help: `hostctl NAME --help` says what NAME does.
        p: argparse.ArgumentParser = parent.add_parser(name, help=text, parents=[base],
                                                       description=f"{text[0].upper()}{text[1:]}.")
        return p

    def symbol(p: argparse.ArgumentParser, optional: str | None = None) -> None:
        p.add_argument("symbol", metavar="SYMBOL", nargs="?" if optional else None,
                       help="an instrument of the loaded config" + (optional or ""))

    pid_help = f"the pid file (default {default_pid_file()})"
    d = sub.add_parser("daemon", help="start or stop the controller daemon that owns the card",
                       description="The controller daemon: the one process that owns the "
                                   "card; every other command asks it.")
    dsub = d.add_subparsers(dest="action", required=True, parser_class=type(d))
    for action, text in (("start", "start the daemon in the background (pid file, log beside it)"),
                         ("run", "run the daemon in the foreground (until Ctrl-C or "
                                 "`hostctl daemon stop`)")):
        # The endpoint it serves is --endpoint (add_daemon_options), so no --daemon here.
        a = command(dsub, action, text, as_json)
        add_daemon_options(a)
        a.add_argument("--pid-file", type=Path, default=None, metavar="FILE", help=pid_help)
    st = command(dsub, "stop", "stop the daemon (a shutdown request; SIGTERM to the pid "
                               "in its pid file if it does not answer)")
    st.add_argument("--pid-file", type=Path, default=None, metavar="FILE", help=pid_help)

    command(sub, "status", "card ID/version, link, counters, kill switches, PnL")
    ld = command(sub, "load", "load a strategy and limits file into the card (atomically; "
                              "triggers disarmed)")
    ld.add_argument("file", type=Path, metavar="FILE.toml",
                    help="strategy and limits (format: examples/card.toml)")
    ld.add_argument("--check", action="store_true", help="validate only; write nothing")
    command(sub, "limits", "the card's limits and triggers read back, positions and PnL")
    for name, text in (("arm", "let a symbol's trigger fire"),
                       ("disarm", "stop a symbol's trigger firing")):
        a = command(sub, name, text)
        symbol(a, " (or --all)")
        a.add_argument("--all", action="store_true", help="every configured symbol")
    for name, text in (("kill", "set a kill switch (no SYMBOL: the whole card's)"),
                       ("unkill", "clear a kill switch (no SYMBOL: the whole card's)")):
        symbol(command(sub, name, text), "; none: the whole card's switch")
    symbol(command(sub, "book", "top of book as the card holds it"))
    ev = command(sub, "events", "the card's events (orders sent and refused, gaps, "
                                "uncertainty), decoded")
    ev.add_argument("--follow", action="store_true", help="keep printing new events")
    command(sub, "latency", "the tick-to-trade latency histograms (add, removal)")
    f = command(sub, "fill", "report a fill: to the card (host_op) and to the PnL")
    r = command(sub, "release", "report open quantity gone unfilled (cancelled, expired)")
    for p in (f, r):
        symbol(p)
        p.add_argument("side", choices=("B", "S", "buy", "sell"), metavar="SIDE",
                       help="B or buy, S or sell")
        p.add_argument("qty", type=int, metavar="QTY", help="shares")
    f.add_argument("price", type=int, metavar="PRICE", help="ITCH integer price (1/10000 dollar)")


def run(args: argparse.Namespace) -> int:
    from host.daemon import default_endpoint
    args.endpoint_ = getattr(args, "daemon", None) or default_endpoint()
    if args.command == "daemon":
        return _daemon(args)
    request: dict[str, Any] = {"cmd": args.command}
    if args.command == "load":
        try:
            text = args.file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            return _fail(f"{args.file}: cannot read: {e}", 2)
        request |= {"text": text, "name": str(args.file), "check": args.check}
    elif args.command in ("arm", "disarm"):
        request |= {"symbol": args.symbol, "all": args.all}
    elif args.command in ("kill", "unkill", "book"):
        request["symbol"] = args.symbol
    elif args.command in ("fill", "release"):
        request |= {"symbol": args.symbol, "side": args.side[0].upper(), "qty": args.qty}
        if args.command == "fill":
            request["price"] = args.price
    if args.command == "events":
        return _events(args)
    reply = _call(args.endpoint_, request)
    if not reply.get("ok"):
        return _fail(reply.get("error", "the daemon failed"), int(reply.get("code", 1)))
    result = reply["result"]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _PRINT[args.command](args, result)
    if args.command == "status" and not result["link"]["up"]:
        return 1
    return 0


def _fail(message: str, code: int) -> int:
    print(f"hostctl: {message}", file=sys.stderr)
    return code


def _call(endpoint: str, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    from host.daemon import DaemonUnavailable, call
    try:
        return call(endpoint, request, timeout)
    except DaemonUnavailable as e:
        return {"ok": False, "code": 1, "error": str(e)}


def _events(args: argparse.Namespace) -> int:
    since = 0
    try:
        while True:
            reply = _call(args.endpoint_, {"cmd": "events", "since": since})
            if not reply.get("ok"):
                return _fail(reply.get("error", "the daemon failed"), int(reply.get("code", 1)))
            result = reply["result"]
            since = result["next"]
            if args.json and not args.follow:
                print(json.dumps(result, indent=2))
            for e in [] if args.json and not args.follow else result["events"]:
                print(json.dumps(e) if args.json else
                      " ".join(f"{k}={v}" for k, v in e.items()), flush=True)
            if not args.follow:
                if not args.json and not result["events"]:
                    print(f"no events (overflow {result['overflow']})")
                return 0
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0


# -- the daemon's process -------------------------------------------------------------------

def _pid(pid_file: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().strip())
        return pid if alive(pid) else None
    return None


def _daemon(args: argparse.Namespace) -> int:
    from host.daemon import check_endpoint, default_pid_file, runtime_dir
    pid_file = args.pid_file or default_pid_file()
    endpoint = getattr(args, "endpoint", None) or args.endpoint_
    if args.action == "stop":
        return _daemon_stop(endpoint, pid_file, args.json)
    try:
        check_endpoint(endpoint, args.allow_remote)
    except ValueError as e:
        return _fail(str(e), 2)
    if not args.device.startswith(("pcie://", "sim://")):
        return _fail(f"--device must be sim://HOST:PORT or pcie://PATH, not {args.device!r}", 2)
    argv = ["--device", args.device, "--endpoint", endpoint, "--pid-file", str(pid_file)]
    for opt in ("state", "regmap"):
        if getattr(args, opt) is not None:
            argv += [f"--{opt}", str(Path(getattr(args, opt)).resolve())]
    if args.allow_remote:
        argv.append("--allow-remote")
    if args.action == "run":
        from host.daemon import main as daemon_main
        return daemon_main(argv)
    pid = _pid(pid_file)
    if pid is not None:
        return _fail(f"a daemon is already running (pid {pid}, {pid_file}); "
                     f"`hostctl daemon stop` first", 1)
    log = pid_file.with_suffix(".log") if args.pid_file else runtime_dir() / "ticknic.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])]))
    with open(log, "ab") as out:
        # A session of its own: the daemon outlives the shell and is not hit by its Ctrl-C.
        proc = subprocess.Popen([sys.executable, "-m", "host.daemon", *argv],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            lines = log.read_text(errors="replace").strip().splitlines()
            return _fail(f"the daemon exited: {lines[-1] if lines else code} (log: {log})",
                         2 if code == 2 else 1)
        reply = _call(endpoint, {"cmd": "status"}, timeout=0.2)
        if reply.get("ok"):
            info = {"pid": proc.pid, "endpoint": endpoint, "device": args.device,
                    "log": str(log), "pid_file": str(pid_file)}
            print(json.dumps(info) if args.json else
                  f"daemon {proc.pid} serves {args.device} at {endpoint} (log: {log})")
            return 0
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    return _fail(f"the daemon did not answer within 30 s (log: {log})", 1)


def _daemon_stop(endpoint: str, pid_file: Path, as_json: bool) -> int:
    pid = _pid(pid_file)
    reply = _call(endpoint, {"cmd": "shutdown"}, timeout=5.0)
    if reply.get("ok"):
        pid = int(reply["result"]["stopping"])
    elif pid is None:
        return _fail(reply.get("error", f"no daemon at {endpoint}"), 1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while alive(pid):
        if time.monotonic() > deadline:
            return _fail(f"daemon {pid} did not stop within 10 s", 1)
        time.sleep(0.05)
    print(json.dumps({"stopped": pid}) if as_json else f"daemon {pid} stopped")
    return 0


# -- human output ---------------------------------------------------------------------------

def _dollars(units: float, places: int = 2) -> str:
    return f"${units / PRICE_SCALE:,.{places}f}"


def _pnl(pnl: dict[str, Any]) -> None:
    for symbol, p in pnl["positions"].items():
        print(f"  {symbol}: {p['qty']:+d} @ {_dollars(p['avg_cost'], 4)}, realised "
              f"{_dollars(p['realised'])}")
    print(f"  today ({pnl['day']}): PnL {_dollars(pnl['daily_pnl'])}, loss "
          f"{_dollars(pnl['daily_loss'])}")


def _flat(value: Any) -> Any:
    return sum(value.values()) if isinstance(value, dict) else value


def _print_status(args: argparse.Namespace, r: dict[str, Any]) -> None:
    i = r["id"]
    link = "up" if r["link"]["up"] else f"DOWN ({r['link']['error']})"
    print(f"card {i['magic']} map {i['version']} (hash {i['map_hash']}) at {r['device']}: "
          f"link {link}; daemon pid {r['pid']}")
    print(f"config: {r['config'] or 'none loaded'}; armed: {' '.join(r['armed']) or '-'}; "
          f"kill: card {'ON' if r['kill_card'] else 'off'}, symbols "
          f"{' '.join(r['killed']) or '-'}")
    ref = r["user_ref"]
    print(f"orders: next UserRefNum {ref['next']} (highest used {ref['date']}: "
          f"{ref['highest_today'] or 'none'})")
    for block, counters in r["counters"].items():
        print(f"{block}: " + ", ".join(f"{k} {_flat(v)}" for k, v in counters.items()))
    _pnl(r["pnl"])


def _print_load(args: argparse.Namespace, r: dict[str, Any]) -> None:
    symbols = " ".join(i["symbol"] for i in r["instrument"]) or "no instruments"
    if r["checked_only"]:
        print(f"{r['name']}: valid ({symbols}); nothing written")
    else:
        print(f"{r['name']}: loaded {symbols}; triggers disarmed (`hostctl arm`)")


def _print_limits(args: argparse.Namespace, r: dict[str, Any]) -> None:
    lim = r["limits"]
    print(f"card: order qty <= {lim['max_order_qty']}, notional <= "
          f"{lim['max_order_notional']}, <= {lim['max_orders_per_second']} orders/s, "
          f"reduce only {lim['reduce_only']}, kill {lim['kill']}")
    for symbol, t in r["instruments"].items():
        buy = f"<= {t['buy_below']}" if t["buy_enable"] else "-"
        sell = f">= {t['sell_above']}" if t["sell_enable"] else "-"
        print(f"  [{t['slot']}] {symbol}: buy {buy}, sell {sell}, order qty "
              f"{t['order_qty']}, |position| <= {t['max_position']}, armed {t['armed']}, kill "
              f"{t['kill']}, card position {t['card_position']:+d} (open {t['open_buy']} "
              f"buy / {t['open_sell']} sell)")
    _pnl(r["pnl"])


def _print_arm(args: argparse.Namespace, r: dict[str, Any]) -> None:
    print(f"{args.command}ed {' '.join(r['changed']) or 'nothing'}; armed now: "
          f"{' '.join(r['armed']) or '-'}")


def _print_kill(args: argparse.Namespace, r: dict[str, Any]) -> None:
    print(f"kill: card {'ON' if r['kill_card'] else 'off'}, symbols "
          f"{' '.join(r['killed']) or '-'}")


def _print_book(args: argparse.Namespace, r: dict[str, Any]) -> None:
    flags = [f for f in ("uncertain", "halted") if r[f]]
    print(f"{r['symbol']} [{r['slot']}]: bid {r['bid_px']} x {r['bid_qty']} / ask "
          f"{r['ask_px']} x {r['ask_qty']}; state {r['state'] or '-'}, locate {r['locate']}"
          f"{'; ' + ', '.join(flags) if flags else ''}")


def _print_latency(args: argparse.Namespace, r: dict[str, Any]) -> None:
    for kind, h in r["kinds"].items():
        if not h["count"]:
            print(f"{kind}: no samples")      # min reads 0xFFFF before the first one
            continue
        bins = ", ".join(f"{c}: {n}" for c, n in enumerate(h["bins"]) if n)
        print(f"{kind}: {h['count']} samples, min {h['min']}, max {h['max']}, last "
              f"{h['last']} cycles; by cycles {{{bins}}}")


def _print_fill(args: argparse.Namespace, r: dict[str, Any]) -> None:
    print(f"{r['symbol']}: fill applied, realised {_dollars(r['realised'])}")
    _pnl(r)


def _print_release(args: argparse.Namespace, r: dict[str, Any]) -> None:
    print(f"{r['symbol']}: released {r['released']} {r['side']}")


_PRINT = {"status": _print_status, "load": _print_load, "limits": _print_limits,
          "arm": _print_arm, "disarm": _print_arm, "kill": _print_kill, "unkill": _print_kill,
          "book": _print_book, "latency": _print_latency, "fill": _print_fill,
          "release": _print_release}
