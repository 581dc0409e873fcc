"""The feed handler gateware in Verilator, behind the same interface as the model.

`Schedule` is the wire-side program both engines run: the subscription table, then GMII bursts
with the idle cycles before each. It knows the cycle each burst starts on, so the model can
stamp `rx_cycle` exactly as the gateware does and the two outputs compare field for field.
"""

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amaranth.lib import data

from hdl.feed import FeedHandler, SubscriptionWrite
from hdl.formats import ITCH_TYPES, N_SUBSCRIPTIONS, Drop
from hdl.itch import ItchHead, ItchMessage, Verdict
from hdl.moldudp64 import GapReport
from host.model import pack
from host.model.feed import FeedModel, Gap, Subscription
from sim.verilated import Stimulus, Verilated

__all__ = ["Burst", "Schedule", "Outcome", "run_model", "FeedRtl", "stimulus", "unpack",
           "decode_message", "decode_counters"]

IFG = 12            # minimum inter-frame gap, in byte times
PREAMBLE = 7


Row = tuple[int, Subscription | None]     # a subscription table write: index, row (None: off)


@dataclass
class Burst:
    data: bytes                     # GMII bytes: preamble, SFD, frame, FCS
    idle_before: int = IFG
    error_at: int | None = None
    # Table writes just before it (after the idle gap), a cycle each: the previous frame's
    # verdict has passed through every block by then, as on a real card where the host writes
    # between packets.
    writes: list[Row] = field(default_factory=list)


@dataclass
class Schedule:
    own_mac: int = 0x02_00_00_00_00_01
    subscriptions: list[Subscription | None] = field(
        default_factory=lambda: [None] * N_SUBSCRIPTIONS)
    bursts: list[Burst] = field(default_factory=list)
    # The order book's watchlist (symbol or None per slot), written before the subscriptions,
    # one cycle each; engines without a book idle through them.
    watch: list[str | None] = field(default_factory=list)
    _writes: list[Row] = field(default_factory=list)

    def subscribe(self, index: int, sub: Subscription | None) -> None:
        """Rewrite a table row at run time, between the frames added before and after."""
        self._writes.append((index, sub))

    def add_frame(self, frame: bytes, *, idle_before: int = IFG, fcs: bool = True,
                  preamble: int = PREAMBLE, error_at: int | None = None) -> None:
        """Add an Ethernet frame without FCS (appended unless `fcs=False`)."""
        body = pack.with_fcs(frame) if fcs else frame
        self.bursts.append(Burst(pack.gmii(body, preamble), idle_before, error_at,
                                 self._writes))
        self._writes = []

    def start_cycles(self) -> list[int]:
        """The cycle each burst's first byte is on the pins (the initial table comes first)."""
        cycle, out = len(self.watch) + N_SUBSCRIPTIONS, []
        for b in self.bursts:
            cycle += b.idle_before + len(b.writes)
            out.append(cycle)
            cycle += len(b.data)
        return out


@dataclass
class Outcome:
    messages: list[dict[str, Any]]
    verdicts: list[Drop]
    gaps: list[Gap]
    counters: dict[str, Any]
    cycles: int = 0
    seconds: float = 0.0
    emitted_at: list[int] = field(default_factory=list)   # cycle each message was valid (rtl)
    verdict_at: list[int] = field(default_factory=list)   # cycle each verdict was valid (rtl)
    heads: list[tuple[int, dict[str, Any]]] = field(default_factory=list)   # (cycle, ItchHead)


def run_model(schedule: Schedule) -> Outcome:
    model = FeedModel(schedule.own_mac, [
        Subscription(s.group, s.port, s.session, s.next_seq) if s else None
        for s in schedule.subscriptions])
    messages, verdicts, gaps = [], [], []
    for burst, start in zip(schedule.bursts, schedule.start_cycles(), strict=True):
        for index, sub in burst.writes:
            model.subscribe(index, None if sub is None else Subscription(
                sub.group, sub.port, sub.session, sub.next_seq))
        r = model.receive(burst.data, burst.error_at, start)
        messages += r.messages
        verdicts.append(r.drop)
        if r.gap:
            gaps.append(r.gap)
    return Outcome(messages, verdicts, gaps, model.counters())


def unpack(layout: Any, value: int) -> dict[str, Any]:
    """A struct value as {field: int}; nested structs become nested dicts (unions stay ints)."""
    out: dict[str, Any] = {}
    for name, offset, mask, inner in _fields(layout):
        v = (value >> offset) & mask
        out[name] = v if inner is None else unpack(inner, v)
    return out


@functools.cache
def _fields(layout: Any) -> tuple[tuple[str, int, int, Any], ...]:
    # Walking an Amaranth layout costs far more than the shifts; a replay decodes millions.
    return tuple((name, f.offset, (1 << f.width) - 1,
                  f.shape if isinstance(f.shape, data.StructLayout) else None)
                 for name, f in data.Layout.cast(layout))


class FeedRtl:
    """Builds (once, cached on disk) and runs the FeedHandler in Verilator. `FeedRtl.shared()`
    also skips the Amaranth conversion after the first use in a process."""

    @staticmethod
    @functools.cache
    def shared() -> "FeedRtl":
        return FeedRtl()

    def __init__(self, build_dir: Path = Path("build/verilated")) -> None:
        self.sim = Verilated(FeedHandler(), name="feed_handler",
                             gmii=("gmii__rxd", "gmii__rx_dv", "gmii__rx_er"),
                             streams=("message", "head", "verdict", "gap"),
                             build_dir=build_dir)

    def run(self, schedule: Schedule) -> Outcome:
        st = stimulus(schedule)
        r = self.sim.run(st, drain=64)

        messages, emitted = [], []
        for cycle, value in r.events["message"]:
            messages.append(decode_message(value))
            emitted.append(cycle)
        verdicts = [Drop(unpack(_VERDICT, v)["drop"]) for _, v in r.events["verdict"]]
        gaps = [Gap(**unpack(GapReport, v)) for _, v in r.events["gap"]]
        heads = [(cycle, unpack(ItchHead, v)) for cycle, v in r.events["head"]]
        return Outcome(messages, verdicts, gaps, decode_counters(r.final), r.cycles, r.seconds,
                       emitted, [cycle for cycle, _ in r.events["verdict"]], heads)


def stimulus(schedule: Schedule,
             watch: Callable[[Stimulus, int, str | None], None] | None = None,
             at: Sequence[tuple[int, str, int]] = ()) -> Stimulus:
    """The schedule as a Verilator input program: the watchlist (through `watch`, or idle
    cycles for a component without a book), the subscription table, then every burst. `at`
    sets input ports at given cycles, (cycle, port, value), in or between the bursts (a burst
    is split around it without a gap)."""
    st = Stimulus().set("own_mac", schedule.own_mac)
    pending = sorted(at)

    def until(end: int) -> int:
        """Apply the sets due by cycle `end` at the latest: returns the cycle of the next one
        due before `end` (which the caller must reach first), or `end`."""
        while pending and pending[0][0] <= st.cycles:
            _, port, value = pending.pop(0)
            st.set(port, value)
        return min(end, pending[0][0]) if pending else end

    for slot, symbol in enumerate(schedule.watch):
        if watch is None:
            st.idle(1)
        else:
            watch(st, slot, symbol)

    def write(index: int, sub: Subscription | None) -> None:
        row = {} if sub is None else {
            "valid": 1, "group": sub.group, "port": sub.port,
            "session": int.from_bytes(sub.session, "big"), "next_seq": sub.next_seq,
        }
        value = SubscriptionWrite.const({"index": index, "row": row}).as_value().value
        st.set("sub_write__payload", value).pulse("sub_write__valid")

    for index, sub in enumerate(schedule.subscriptions):
        write(index, sub)
    for b in schedule.bursts:
        end = st.cycles + b.idle_before
        while st.cycles < end:
            st.idle(until(end) - st.cycles)
        for index, sub in b.writes:
            write(index, sub)
        start, end = st.cycles, st.cycles + len(b.data)
        while st.cycles < end:
            a, z = st.cycles - start, until(end) - start
            err = b.error_at - a if b.error_at is not None and a <= b.error_at < z else None
            st.gmii(b.data[a:z], error_at=err)
    while pending:                          # after the last burst
        st.idle(max(pending[0][0] - st.cycles, 0) or 1)
        until(st.cycles)
    return st


def decode_message(value: int) -> dict[str, Any]:
    """An `ItchMessage` payload value as the model's message dict: `type` as its letter, the
    body fields of that type, then seq, sub and rx_cycle."""
    fields = unpack(ItchMessage, value)
    kind = chr(fields.pop("type"))
    one_hot = fields.pop("kind")
    if one_hot != {t: int(t == kind) for t in one_hot}:
        raise AssertionError(f"message of type {kind!r} with the one-hot kind {one_hot}")
    del fields["body"]
    return {"type": kind, **unpack(_BODIES[kind], value >> _BODY_OFFSET), **fields}


_BODY = data.Layout.cast(ItchMessage)["body"]
_BODY_OFFSET = _BODY.offset
_BODIES = {name: f.shape for name, f in _BODY.shape}
_VERDICT = data.Layout.cast(Verdict)


def decode_counters(final: dict[str, int]) -> dict[str, Any]:
    """The `counters__*` output port values (by Verilog port name) as `FeedModel.counters()`
    gives them."""
    def array(name: str, n: int) -> list[int]:
        v = final[name]
        return [(v >> (32 * i)) & 0xFFFFFFFF for i in range(n)]
    drops = array("counters__drops", len(Drop))
    by_type = array("counters__messages_by_type", len(ITCH_TYPES))
    return {
        "frames_ok": final["counters__frames_ok"],
        "messages_by_type": {t: n for t, n in zip(ITCH_TYPES, by_type, strict=True) if n},
        "drops": {r.name.lower(): drops[r] for r in Drop if r is not Drop.NONE and drops[r]},
        "gaps": final["counters__gaps"],
    }

