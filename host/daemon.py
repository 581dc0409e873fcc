"""The controller daemon: the one process that owns the card, serving `hostctl` over ZeroMQ.

    python -m host.daemon --device pcie://PATH [--endpoint E] [--state FILE] [--regmap FILE]
    hostctl daemon start --device URL ...     # the same, in the background, with a pid file

Requests and replies are JSON objects on a REP socket (default `ipc://RUNTIME/ticknic.sock`,
RUNTIME = $TICKNIC_RUNTIME_DIR, else $XDG_RUNTIME_DIR/ticknic, else /tmp/ticknic-UID). A TCP
endpoint must be loopback unless the daemon is started with `--allow-remote`: anyone who can
reach the socket can trade.

    request  {"cmd": NAME, ...arguments}
    reply    {"ok": true, "result": {...}}  or  {"ok": false, "code": 2|1, "error": ONE LINE}

`code` is `hostctl`'s exit code (DESIGN.md §4): 2 the request was wrong (a bad config file, a
symbol not on the card), 1 the card failed. Commands:

| cmd      | arguments                          | does                                        |
|----------|------------------------------------|---------------------------------------------|
| status   |                                    | ID/version, link, counters, switches, the   |
|          |                                    | next UserRefNum and the day's highest used  |
| load     | text, name, check                  | validate; unless `check`, write + commit    |
| limits   |                                    | the card's limits and triggers, read back   |
| arm      | symbol or all                      | triggers[slot].armed = 1, commit            |
| disarm   | symbol or all                      | triggers[slot].armed = 0, commit            |
| kill     | symbol (absent: the whole card)    | the immediate kill switch = 1               |
| unkill   | symbol (absent: the whole card)    | the immediate kill switch = 0               |
| book     | symbol                             | tops[slot], the card's top of book          |
| latency  |                                    | the latency rows                            |
| events   | since (a sequence number)          | events after it, from the ring buffer       |
| fill     | symbol, side, qty, price           | host_op fill; position and PnL              |
| release  | symbol, side, qty                  | host_op release (open qty gone unfilled)    |
| shutdown |                                    | reply, then exit                            |

A config is validated completely (`host.config`, then every register name and value against
the map) before the first write, then written with every row staged before the commits
(`host.card_config.registers`: watchlist rows, limits, triggers rows), so a bad file changes
nothing on the card and a good one never goes live half written. A loaded trigger starts
disarmed. The watchlist is written only when the config's symbols differ from the card's: its
commit restarts a slot's book (uncertain until the next clear), so a reload of limits leaves
the books running.

State that must outlive the daemon is in a JSON file (kill switches, positions with average
cost and realised PnL, the day's PnL and its date, the last config loaded, the highest OUCH
UserRefNum used today and its date), written to a temporary file and renamed over the old one
on every change, so a crash leaves the old or the new file, never half of one. On start the
daemon reads it back and writes it to the card: the kill switches, and every slot's position
(host_op kind 2, load position). A card that lost its configuration (its watchlist differs from
the last config loaded) gets that config reloaded, disarmed, first.

UserRefNum: OUCH rejects an order whose UserRefNum is not above every one the account used that
day, and a card counts from 1 again after a reset. The card shows the number its next order
takes (`order.user_ref_next`); every number below it counts as used today, noted at each event
poll, status and start. On start and on every config load, a card whose next number is not
above the day's highest (a card reset since) gets `order.next_user_ref` = highest + 1, staged
and committed with the config when one is written (nothing goes live half written). A state
file of another day starts the day's count afresh: the card may then number from 1.

The event FIFO is drained between requests (read `events.level`, then pop `events.data`, low
word first) into a ring buffer; `hostctl events --follow` polls it by sequence number. Events
are decoded by the layout the register map's JSON carries under "event" (`hdl.card.Event`,
through `RegMap.decode_event`): kind and reason by name, the other fields as integers.
"""

import argparse
import contextlib
import inspect
import json
import os
import signal
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from datetime import date as Date
from pathlib import Path
from typing import Any

import zmq

from hdl.formats import CARD_CLOCK_HZ, LATENCY_KINDS, HostOpKind
from host.card_config import registers
from host.config import CardConfig, ConfigError, parse_config
from host.device import Device, DeviceError, open_device
from host.positions import SIDES, Positions
from host.regmap import DEFAULT_PATH, RegMap, RegMapError

__all__ = ["Controller", "ControlError", "runtime_dir",
           "default_endpoint", "default_state_path", "check_endpoint", "serve", "call",
           "DaemonUnavailable", "main"]

STATE_VERSION = 1
RING = 10_000               # events kept for `events --follow`
DRAIN_MAX = 256             # events popped per pass, so requests are not starved


class ControlError(Exception):
    """A request that fails; `code` is hostctl's exit code (2 bad input, 1 the card)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class DaemonUnavailable(Exception):
    """No daemon answered at the endpoint; the message says how to start one."""


def runtime_dir() -> Path:
    env = os.environ.get("TICKNIC_RUNTIME_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return Path(xdg) / "ticknic" if xdg else Path(tempfile.gettempdir()) / f"ticknic-{os.getuid()}"


def default_endpoint() -> str:
    return f"ipc://{runtime_dir() / 'ticknic.sock'}"


def default_state_path() -> Path:
    env = os.environ.get("TICKNIC_STATE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ticknic" / "state.json"


def default_pid_file() -> Path:
    return runtime_dir() / "ticknic.pid"


_LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")


def check_endpoint(endpoint: str, allow_remote: bool = False) -> str:
    """The endpoint if the daemon may bind it; ValueError (one line) if not."""
    if endpoint.startswith("ipc://") and len(endpoint) > len("ipc://"):
        return endpoint
    if endpoint.startswith("tcp://"):
        host, _, port = endpoint[len("tcp://"):].rpartition(":")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"a tcp endpoint is tcp://127.0.0.1:PORT with PORT 1-65535, "
                             f"not {endpoint!r}")
        if host not in _LOOPBACK and not allow_remote:
            raise ValueError(f"endpoint {endpoint!r} is not loopback: whoever reaches it can "
                             f"trade; use tcp://127.0.0.1:PORT or ipc://PATH, or "
                             f"--allow-remote")
        return endpoint
    raise ValueError(f"an endpoint is ipc://PATH or tcp://127.0.0.1:PORT, not {endpoint!r}")


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) & 1 else value


def _symbol(code: int) -> str:
    return code.to_bytes(8, "big").decode("ascii", "replace").rstrip()


def _user_ref_state(value: Any) -> tuple[Date, int]:
    """The state file's "user_ref": {"date": ISO date, "highest": UserRefNum}."""
    if not isinstance(value, dict):
        raise ValueError(f'user_ref must be {{"date": YYYY-MM-DD, "highest": N}}, not {value!r}')
    day = Date.fromisoformat(value["date"])
    high = value["highest"]
    if isinstance(high, bool) or not isinstance(high, int) or not 0 <= high < 1 << 32:
        raise ValueError(f"user_ref.highest must be an integer 0..4294967295, not {high!r}")
    return day, high


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Controller:
    """Owns a `Device`; `handle(request)` answers one request (see the module docstring)."""

    def __init__(self, device: Device, state_path: Path,
                 today: Callable[[], Date] = Date.today) -> None:
        self.dev = device
        self.state_path = state_path
        self.today = today
        self.event = device.regmap.event
        if "kind" not in self.event:
            raise ControlError("the register map has no event layout (its JSON's \"event\"): "
                               "use an export of `python -m firmware.regmap`", 2)
        self.slots = device.regmap.blocks["watchlist"].row_count
        self.kill_card = False
        self.killed: set[str] = set()
        self.positions = Positions()
        self.config: dict[str, str] | None = None       # {"name", "text"} of the last load
        self.events: deque[dict[str, Any]] = deque(maxlen=RING)
        self.seq = 0
        self.slot_of: dict[str, int] = {}
        # The highest UserRefNum the card has used on `user_ref_day` (0: none yet).
        self.user_ref_day = today()
        self.user_ref_high = 0
        if "user_ref_next" not in device.regmap.blocks["order"].registers:
            raise ControlError("the register map has no order.user_ref_next (map 3.0 on): use "
                               "an export of `python -m firmware.regmap` for this card", 2)

    # -- start, persistence ---------------------------------------------------------------

    def start(self) -> None:
        """Restore the state file (if any) and write it to the card."""
        if self.state_path.exists():
            try:
                state = json.loads(self.state_path.read_text(encoding="utf-8"))
                self.kill_card = bool(state["kill_card"])
                self.killed = set(state["killed"])
                self.positions = Positions.from_json(state["positions"])
                self.config = state.get("config")
                if "user_ref" in state:         # absent from files of before map 3.0
                    self.user_ref_day, self.user_ref_high = _user_ref_state(state["user_ref"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise ControlError(f"state file {self.state_path} is unreadable ({e}); move "
                                   f"it away to start from nothing", 2) from None
        self.positions.roll(self.today())
        self._refresh_slots()
        next_ref = self._user_ref_to_set()
        if self.config is not None:
            cfg = parse_config(self.config["text"], self.slots)
            if [i.symbol for i in cfg.instruments] != self._configured():
                self._write_config(cfg, next_user_ref=next_ref)
                next_ref = None
        if next_ref is not None:
            self._set_user_ref(next_ref)
        self._write_switches_and_positions()
        self._save()

    def _save(self) -> None:
        state = {"version": STATE_VERSION, "kill_card": self.kill_card,
                 "killed": sorted(self.killed), "positions": self.positions.as_json(),
                 "config": self.config,
                 "user_ref": {"date": self.user_ref_day.isoformat(),
                              "highest": self.user_ref_high}}
        _atomic_write(self.state_path, json.dumps(state, indent=1) + "\n")

    # -- UserRefNum -------------------------------------------------------------------------

    def _card_user_ref(self) -> int:
        """The UserRefNum the card's next order takes; every one below it is noted as used
        today (a new day forgets the last day's)."""
        next_ref = self.dev.read("order.user_ref_next")
        today = self.today()
        if self.user_ref_day != today:
            self.user_ref_day, self.user_ref_high = today, 0
        self.user_ref_high = max(self.user_ref_high, next_ref - 1)
        return next_ref

    def _track_user_ref(self) -> int:
        """`_card_user_ref`, saving the state when the day's highest moved."""
        before = (self.user_ref_day, self.user_ref_high)
        next_ref = self._card_user_ref()
        if (self.user_ref_day, self.user_ref_high) != before:
            self._save()
        return next_ref

    def _user_ref_to_set(self) -> int | None:
        """The `order.next_user_ref` that puts the card's next order above every UserRefNum used
        today, or None if the card's is already above them.

        The card must not send between this read and the commit that sets the number: true
        where it is called (a reset card has no armed trigger until the daemon arms one)."""
        if self._card_user_ref() > self.user_ref_high or not self.user_ref_high:
            return None
        return self.user_ref_high + 1

    def _set_user_ref(self, value: int) -> None:
        width = self.dev.reg("order.next_user_ref").width
        if not 0 < value < 1 << width:
            raise ControlError(f"order.next_user_ref cannot hold {value} ({width} bits): the "
                               f"day's UserRefNums are used up", 1)
        self.dev.write("order.next_user_ref", value)
        self.dev.commit("order")

    def _refresh_slots(self) -> None:
        self.slot_of = {}
        for slot in range(self.slots):
            if self.dev.read(f"watchlist[{slot}].enable"):
                self.slot_of[_symbol(self.dev.read(f"watchlist[{slot}].symbol"))] = slot

    def _write_switches_and_positions(self) -> None:
        self.dev.write("limits.kill", int(self.kill_card))
        for symbol, slot in self.slot_of.items():
            self.dev.write(f"triggers[{slot}].kill", int(symbol in self.killed))
        symbols = {k: s for s, k in self.slot_of.items()}
        for slot in range(self.slots):
            held = self.positions.by_symbol.get(symbols.get(slot, ""))
            qty = held.qty if held is not None else 0
            # host_op.qty carries a loaded position as two's complement.
            self._host_op(HostOpKind.POSITION, slot, 0, qty % (1 << self._qty_bits()))

    def _qty_bits(self) -> int:
        return self.dev.reg("host_op.qty").width

    def _host_op(self, kind: int, slot: int, side: int, qty: int) -> None:
        self.dev.write("host_op.kind", kind)
        self.dev.write("host_op.slot", slot)
        self.dev.write("host_op.side", side)
        self.dev.write("host_op.qty", qty)
        self.dev.write("host_op.apply", 1)

    def _configured(self) -> list[str]:
        """The card's watchlist symbols in slot order (what `_refresh_slots` found)."""
        return [s for s, _ in sorted(self.slot_of.items(), key=lambda x: x[1])]

    def _write_config(self, cfg: CardConfig, next_user_ref: int | None = None) -> None:
        # Triggers load disarmed (`hostctl arm` arms them). The watchlist is written only when
        # its symbols change: a watchlist commit restarts the slot's book, which then refuses
        # orders until the next clear, so a reload of limits must not touch it. A config's
        # instrument i goes to slot i, so the same symbols in the same slots are the same
        # watchlist: the card's, read again (a card reset under the daemon has none).
        self._refresh_slots()
        symbols = [i.symbol for i in cfg.instruments]
        try:
            writes = registers(cfg, cfg.template, watchlist=symbols != self._configured(),
                               armed=False, next_user_ref=next_user_ref,
                               regmap=self.dev.regmap)
        except ValueError as e:
            raise ControlError(str(e), 2) from None
        # Every name and value is checked before the first write (`registers` has checked the
        # names against this map): a register too narrow must not leave half a configuration
        # behind. `registers` stages every row, then commits the rows (watchlist, limits,
        # triggers), so the card never runs on half a row.
        for name, value in writes:
            reg = self.dev.reg(name)
            if not 0 <= value < 1 << reg.width:
                raise ControlError(f"{name} cannot hold {value} ({reg.width} bits)", 2)
        for name, value in writes:
            if name.endswith(".commit"):
                self.dev.commit(name[:-len(".commit")])
            else:
                self.dev.write(name, value)
        self._refresh_slots()

    # -- requests ---------------------------------------------------------------------------

    def handle(self, request: Any) -> dict[str, Any]:
        try:
            if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                raise ControlError('a request is a JSON object {"cmd": NAME, ...}')
            cmd = request["cmd"]
            handler = getattr(self, f"cmd_{cmd}", None)
            if handler is None or cmd == "shutdown":
                if cmd == "shutdown":
                    return {"ok": True, "result": {"stopping": os.getpid()}}
                raise ControlError(f"unknown command {cmd!r}; allowed: {', '.join(COMMANDS)}")
            args = {k: v for k, v in request.items() if k != "cmd"}
            try:
                inspect.signature(handler).bind(**args)
            except TypeError as e:
                raise ControlError(f"{cmd}: {e}") from None
            result = handler(**args)
            return {"ok": True, "result": result}
        except ControlError as e:
            return {"ok": False, "code": e.code, "error": str(e)}
        except (DeviceError, RegMapError, OSError) as e:
            return {"ok": False, "code": 1, "error": f"the card failed: {e}"}

    def _slot(self, symbol: Any) -> int:
        if not isinstance(symbol, str) or symbol not in self.slot_of:
            on = ", ".join(sorted(self.slot_of)) or "none: load a config first"
            raise ControlError(f"symbol {symbol!r} is not on the card's watchlist "
                               f"(configured: {on})")
        return self.slot_of[symbol]

    def _targets(self, symbol: Any, all: bool) -> list[str]:
        if all:
            if symbol is not None:
                raise ControlError("give a symbol or --all, not both")
            return sorted(self.slot_of, key=self.slot_of.__getitem__)
        if symbol is None:
            raise ControlError("give a symbol or --all")
        self._slot(symbol)
        return [symbol]

    def cmd_status(self) -> dict[str, Any]:
        magic, version, hash_ = self.dev.identify()
        try:
            self.dev.check()
            link: dict[str, Any] = {"up": True}
        except DeviceError as e:
            link = {"up": False, "error": str(e)}
        counters: dict[str, Any] = {}
        for block in ("feed", "book", "risk"):
            info = self.dev.regmap.blocks.get(block)
            if info is None:
                continue
            counters[block] = {}
            for reg in info.registers.values():
                if reg.access != "ro" or reg.read_strobe:
                    continue
                if reg.count is None:
                    counters[block][reg.name] = self.dev.read(f"{block}.{reg.name}")
                else:
                    labels = reg.labels or tuple(str(i) for i in range(reg.count))
                    counters[block][reg.name] = {
                        label: self.dev.read(f"{block}.{reg.name}[{i}]")
                        for i, label in enumerate(labels)}
        counters["events"] = {"level": self.dev.read("events.level"),
                              "overflow": self.dev.read("events.overflow")}
        next_ref = self._track_user_ref()
        return {"id": {"magic": f"0x{magic:08x}", "version": f"{version[0]}.{version[1]}",
                       "map_hash": f"0x{hash_:08x}"},
                "device": self.dev.where, "link": link, "pid": os.getpid(),
                "config": None if self.config is None else self.config["name"],
                "kill_card": self.kill_card, "killed": sorted(self.killed),
                "armed": self._armed(), "counters": counters,
                "user_ref": {"next": next_ref, "highest_today": self.user_ref_high,
                             "date": self.user_ref_day.isoformat()},
                "pnl": self.positions.report()}

    def _armed(self) -> list[str]:
        return [s for s, k in sorted(self.slot_of.items(), key=lambda x: x[1])
                if self.dev.read(f"triggers[{k}].armed")]

    def cmd_load(self, text: str, name: str = "config", check: bool = False) -> dict[str, Any]:
        if not isinstance(text, str):
            raise ControlError("load: text must be the file's text")
        try:
            cfg = parse_config(text, self.slots)
        except ConfigError as e:
            raise ControlError(f"{name}: {e}") from None
        summary = {"name": name, "checked_only": check, **cfg.as_dict()}
        if check:
            return summary
        self._write_config(cfg, next_user_ref=self._user_ref_to_set())
        self.config = {"name": name, "text": text}
        self._write_switches_and_positions()
        self._save()
        return summary

    def cmd_limits(self) -> dict[str, Any]:
        d = self.dev
        period = d.read("limits.rate_period")
        card = {"max_order_qty": d.read("limits.max_order_qty"),
                "max_order_notional": d.read("limits.max_order_notional"),
                "rate_period": period, "rate_cap": d.read("limits.rate_cap"),
                "max_orders_per_second": CARD_CLOCK_HZ // period if period else 0,
                "reduce_only": d.read("limits.reduce_only"), "kill": d.read("limits.kill")}
        rows = {}
        for symbol, slot in sorted(self.slot_of.items(), key=lambda x: x[1]):
            t = f"triggers[{slot}]"
            row: dict[str, Any] = {"slot": slot}
            for reg in d.regmap.blocks["triggers"].registers:
                if reg != "commit":
                    row[reg] = d.read(f"{t}.{reg}")
            p = f"positions[{slot}]"
            row["card_position"] = _signed(d.read(f"{p}.position"), d.reg(f"{p}.position").width)
            row["open_buy"], row["open_sell"] = d.read(f"{p}.open_buy"), d.read(f"{p}.open_sell")
            rows[symbol] = row
        return {"limits": card, "instruments": rows, "pnl": self.positions.report()}

    def _arm(self, symbol: Any, all: bool, armed: int) -> dict[str, Any]:
        targets = self._targets(symbol, all)
        for s in targets:
            slot = self.slot_of[s]
            self.dev.write(f"triggers[{slot}].armed", armed)
            self.dev.commit(f"triggers[{slot}]")
        return {"changed": targets, "armed": self._armed()}

    def cmd_arm(self, symbol: str | None = None, all: bool = False) -> dict[str, Any]:
        return self._arm(symbol, all, 1)

    def cmd_disarm(self, symbol: str | None = None, all: bool = False) -> dict[str, Any]:
        return self._arm(symbol, all, 0)

    def _kill(self, symbol: Any, on: bool) -> dict[str, Any]:
        if symbol is None:
            self.dev.write("limits.kill", int(on))
            self.kill_card = on
        else:
            slot = self._slot(symbol)
            self.dev.write(f"triggers[{slot}].kill", int(on))
            (self.killed.add if on else self.killed.discard)(symbol)
        self._save()
        return {"kill_card": self.kill_card, "killed": sorted(self.killed)}

    def cmd_kill(self, symbol: str | None = None) -> dict[str, Any]:
        return self._kill(symbol, True)

    def cmd_unkill(self, symbol: str | None = None) -> dict[str, Any]:
        return self._kill(symbol, False)

    def cmd_book(self, symbol: str) -> dict[str, Any]:
        slot = self._slot(symbol)
        t = f"tops[{slot}]"
        out: dict[str, Any] = {"symbol": symbol, "slot": slot}
        for name in ("bid_px", "bid_qty", "ask_px", "ask_qty", "uncertain", "halted",
                     "locate"):
            out[name] = self.dev.read(f"{t}.{name}")
        state = self.dev.read(f"{t}.state")
        out["state"] = chr(state) if 32 < state < 127 else ""
        return out

    def cmd_latency(self) -> dict[str, Any]:
        rows = self.dev.regmap.blocks["latency"].row_count
        out: dict[str, dict[str, Any]] = {}
        for row in range(rows):
            kind = LATENCY_KINDS[row] if row < len(LATENCY_KINDS) else str(row)
            lat = f"latency[{row}]"
            bins = self.dev.regmap.blocks["latency"].registers["bins"].count or 0
            out[kind] = {n: self.dev.read(f"{lat}.{n}") for n in ("count", "last", "min", "max")}
            out[kind]["bins"] = [self.dev.read(f"{lat}.bins[{i}]") for i in range(bins)]
        return {"clock_hz": CARD_CLOCK_HZ, "kinds": out}

    def cmd_events(self, since: int = 0) -> dict[str, Any]:
        self.poll_events()
        if not isinstance(since, int):
            raise ControlError("events: since must be an integer")
        return {"events": [e for e in self.events if e["seq"] > since], "next": self.seq,
                "overflow": self.dev.read("events.overflow")}

    def poll_events(self) -> int:
        """Move what the card's event FIFO holds into the ring buffer; how many."""
        moved = 0
        for _ in range(min(self.dev.read("events.level"), DRAIN_MAX)):
            fields = self.dev.regmap.decode_event(self.dev.read("events.data"))
            if not fields["kind"]:
                break               # the FIFO ran dry under us: an empty FIFO reads kind 0
            self.seq += 1
            event: dict[str, Any] = {"seq": self.seq}
            for name, value in fields.items():
                # Enumerated fields (kind, reason) by name, as hdl.card.Event's enums spell them.
                event[name] = self.event[name].name_of(value) if self.event[name].values \
                    else value
            self.events.append(event)
            moved += 1
        self._track_user_ref()      # an order's frame may start after its event: every pass
        return moved

    def _side_qty(self, side: Any, qty: Any) -> tuple[int, int]:
        sides = {"B": 0, "BUY": 0, "S": 1, "SELL": 1}
        if not isinstance(side, str) or side.upper() not in sides:
            raise ControlError(f"side must be B (buy) or S (sell), not {side!r}")
        hi = (1 << self._qty_bits()) - 1
        if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= hi:
            raise ControlError(f"qty must be an integer between 1 and {hi}, not {qty!r}")
        return sides[side.upper()], qty

    def cmd_fill(self, symbol: str, side: str, qty: int, price: int) -> dict[str, Any]:
        slot = self._slot(symbol)
        s, qty = self._side_qty(side, qty)
        if isinstance(price, bool) or not isinstance(price, int) or not 1 <= price < 1 << 32:
            raise ControlError(f"price must be an ITCH integer price between 1 and "
                               f"{(1 << 32) - 1}, not {price!r}")
        self._host_op(HostOpKind.FILL, slot, s, qty)
        realised = self.positions.fill(symbol, SIDES[s], qty, price, self.today())
        self._save()
        return {"symbol": symbol, "realised": float(realised), **self.positions.report()}

    def cmd_release(self, symbol: str, side: str, qty: int) -> dict[str, Any]:
        slot = self._slot(symbol)
        s, qty = self._side_qty(side, qty)
        self._host_op(HostOpKind.RELEASE, slot, s, qty)
        return {"symbol": symbol, "side": SIDES[s], "released": qty}


COMMANDS = tuple(n[len("cmd_"):] for n in dir(Controller) if n.startswith("cmd_")) \
    + ("shutdown",)


# -- the server and its client -------------------------------------------------------------

def serve(controller: Controller, endpoint: str, poll_ms: int = 100,
          ready: Callable[[], None] | None = None) -> None:
    """Answer requests until a shutdown request (or SIGTERM, via SystemExit)."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 0)
    if endpoint.startswith("ipc://"):
        Path(endpoint[len("ipc://"):]).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        sock.bind(endpoint)
        if ready is not None:
            ready()
        while True:
            if sock.poll(poll_ms):
                raw = sock.recv()
                try:
                    request = json.loads(raw)
                except ValueError:
                    request = None
                reply = controller.handle(request)
                sock.send(json.dumps(reply).encode())
                if isinstance(request, dict) and request.get("cmd") == "shutdown":
                    return
            with contextlib.suppress(DeviceError, RegMapError, OSError):
                controller.poll_events()
    finally:
        sock.close()


def call(endpoint: str, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """One request to the daemon; DaemonUnavailable if nothing answers within `timeout`."""
    how = f"no daemon answers at {endpoint}: start one with `hostctl daemon start --device URL`"
    if endpoint.startswith("ipc://") and not Path(endpoint[len("ipc://"):]).exists():
        raise DaemonUnavailable(how)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send(json.dumps(request).encode())
        if not sock.poll(int(timeout * 1000)):
            raise DaemonUnavailable(how)
        reply = json.loads(sock.recv())
    except zmq.ZMQError as e:
        raise DaemonUnavailable(f"{how} ({e})") from None
    finally:
        sock.close()
    if not isinstance(reply, dict):
        raise DaemonUnavailable(f"{endpoint} answered something that is not a daemon's reply")
    return reply


def load_regmap(path: Path | None) -> RegMap:
    path = path or DEFAULT_PATH
    try:
        return RegMap(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ControlError(f"cannot read the register map {path}: {e}", 2) from None


@contextlib.contextmanager
def _pid_file(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if path.read_text().strip() == str(os.getpid()):
                path.unlink()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m host.daemon",
                                description="The ticknic controller daemon (foreground).")
    add_daemon_options(p)
    p.add_argument("--pid-file", type=Path, metavar="FILE",
                   help="write the pid here while running")
    return p


def add_daemon_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", required=True, metavar="URL",
                   help="the card: pcie://PATH (its BAR's sysfs resource file) or "
                        "sim://HOST:PORT (`hostctl sim start`)")
    p.add_argument("--endpoint", default=None, metavar="ENDPOINT",
                   help="where it serves hostctl: ipc://PATH or tcp://127.0.0.1:PORT "
                        f"(default {default_endpoint()})")
    p.add_argument("--state", type=Path, default=None, metavar="FILE",
                   help=f"the state file (default {default_state_path()})")
    p.add_argument("--regmap", type=Path, default=None, metavar="FILE",
                   help="the card's register map JSON (default firmware/regmap.json)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback tcp endpoint")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    endpoint = args.endpoint or default_endpoint()
    try:
        check_endpoint(endpoint, args.allow_remote)
        regmap = load_regmap(args.regmap)
    except (ValueError, ControlError) as e:
        print(f"ticknic daemon: {e}", file=sys.stderr)
        return 2
    # An answer at the endpoint means another daemon owns it (zmq would take the ipc path
    # over silently, leaving two daemons writing one card).
    with contextlib.suppress(DaemonUnavailable):
        call(endpoint, {"cmd": "status"}, timeout=0.3)
        print(f"ticknic daemon: another daemon already answers at {endpoint}", file=sys.stderr)
        return 1
    try:
        device = open_device(args.device, regmap=regmap)
    except DeviceError as e:
        print(f"ticknic daemon: {e}", file=sys.stderr)
        return 1
    try:
        controller = Controller(device, args.state or default_state_path())
    except ControlError as e:
        device.close()
        print(f"ticknic daemon: {e}", file=sys.stderr)
        return e.code

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    try:
        controller.start()
        with _pid_file(args.pid_file):
            serve(controller, endpoint, ready=lambda: print(
                f"ticknic daemon {os.getpid()}: {args.device} at {endpoint}", flush=True))
    except ControlError as e:
        print(f"ticknic daemon: {e}", file=sys.stderr)
        return e.code
    except (DeviceError, RegMapError, OSError) as e:
        print(f"ticknic daemon: the card failed: {e}", file=sys.stderr)
        return 1
    except zmq.ZMQError as e:
        print(f"ticknic daemon: cannot serve {endpoint}: {e}", file=sys.stderr)
        return 1
    finally:
        device.close()
        if endpoint.startswith("ipc://"):
            with contextlib.suppress(OSError):
                os.unlink(endpoint[len("ipc://"):])
    return 0


if __name__ == "__main__":
    sys.exit(main())
