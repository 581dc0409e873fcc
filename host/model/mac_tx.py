"""The TX arbiter and MAC as a specification: which frame goes out when, and the exact GMII
bytes of each, cycle by cycle.

The tests drive the gateware with frame sources that behave as described in `TxFrame` and
compare its pins with `gmii_trace` here, so the model has to say precisely what a source does
and when the MAC takes a frame; it does so in terms of cycles, not events, because the latency
of an order is the whole point of the TX path. The frame bytes themselves (padding, FCS,
preamble) come from `host.model.pack`, the same builders the RX tests use.

Timing (the gateware's `MacTx.LATENCY`, `TxArbiter.LATENCY = 0`): a frame whose first byte the
MAC takes in cycle s has its first preamble byte on the wire in cycle s + 1 and one byte per
cycle after; the MAC takes the next frame's first byte ETH_IFG cycles after the last FCS byte
at the earliest, so the line stays idle exactly ETH_IFG cycles between back-to-back frames.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from hdl.formats import ETH_IFG, ETH_PREAMBLE_LEN
from host.model.pack import gmii, pad, with_fcs

__all__ = ["LATENCY", "ORDERS", "HOST", "Port", "TxFrame", "Sent", "transmit", "gmii_trace"]

# Cycles from the MAC taking a frame's first byte to the first preamble byte on the wire.
LATENCY = 1

Port = Literal["orders", "host"]
ORDERS: Port = "orders"
HOST: Port = "host"


@dataclass(frozen=True)
class TxFrame:
    """A frame as a source offers it to one arbiter input.

    `data` runs from the destination MAC to the end of the payload (no padding, no FCS). The
    source offers the first byte from cycle `at` on, or from the cycle after the previous
    frame on the same input was fully taken if that is later, and holds it until taken. After
    that it offers one byte per cycle, except that it leaves `holes[i]` cycles without a byte
    before byte i: an underrun, which a correct source never causes."""
    data: bytes
    at: int = 0
    holes: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("a frame must have at least 1 byte, not 0")
        if self.at < 0:
            raise ValueError(f"`at` must be a cycle >= 0, not {self.at}")
        for i, n in self.holes.items():
            if not 1 <= i < len(self.data) or n < 1:
                raise ValueError(f"holes must map a byte index 1..{len(self.data) - 1} to a "
                                 f"number of cycles >= 1, not {i}: {n}")


@dataclass(frozen=True)
class Sent:
    """A frame as the MAC sent it: from input `port` (its `index`-th frame there), first byte
    taken in cycle `start`; `wire` is every byte it put on GMII, preamble to FCS, the first in
    cycle start + LATENCY; TX_ER is raised from `wire[error_from]` to the end (None: never)."""
    port: Port
    index: int
    start: int
    wire: bytes
    error_from: int | None

    @property
    def end(self) -> int:
        """The cycle of the last FCS byte on the wire."""
        return self.start + LATENCY + len(self.wire) - 1


def _on_wire(frame: TxFrame) -> tuple[bytes, int | None]:
    """The frame's wire bytes, and the index of its first underrun byte (None if none)."""
    body = bytearray()
    error_from: int | None = None
    for i, byte in enumerate(frame.data):
        holes = frame.holes.get(i, 0)
        if holes and error_from is None:
            error_from = len(body)
        body += bytes(holes)          # a byte time without a byte goes out as 0x00 with TX_ER
        body.append(byte)
    wire = gmii(with_fcs(pad(bytes(body))))
    head = ETH_PREAMBLE_LEN + 1
    return wire, None if error_from is None else head + error_from


def transmit(orders: Sequence[TxFrame], host: Sequence[TxFrame] = ()) -> list[Sent]:
    """The frames in the order the MAC sends them. The MAC can take a first byte in cycle 0
    and then ETH_IFG cycles after each frame's last FCS byte. In each cycle it can, the waiting
    order frame goes first; a host frame goes only when no order frame is waiting. A frame,
    once started, is taken to its last byte before any other."""
    frames: dict[Port, Sequence[TxFrame]] = {ORDERS: orders, HOST: host}
    nxt: dict[Port, int] = {ORDERS: 0, HOST: 0}          # next frame's index on each input
    free_at: dict[Port, int] = {ORDERS: 0, HOST: 0}      # after the previous frame was taken
    line_free = 0                                        # the MAC's next chance to start
    sent: list[Sent] = []
    while True:
        offered = {p: max(frames[p][nxt[p]].at, free_at[p])
                   for p in (ORDERS, HOST) if nxt[p] < len(frames[p])}
        if not offered:
            return sent
        start = max(line_free, min(offered.values()))
        port = ORDERS if offered.get(ORDERS, start + 1) <= start else HOST
        frame = frames[port][nxt[port]]
        wire, error_from = _on_wire(frame)
        sent.append(Sent(port, nxt[port], start, wire, error_from))
        nxt[port] += 1
        # Every byte time from the first byte to the last, holes included, is one taken byte.
        free_at[port] = start + len(frame.data) + sum(frame.holes.values())
        line_free = sent[-1].end + ETH_IFG


def gmii_trace(sent: Sequence[Sent]) -> list[tuple[int, int, int]]:
    """(cycle, TXD, TX_ER) of every cycle TX_EN is high; TX_EN is low in every other cycle."""
    trace = []
    for s in sent:
        for i, byte in enumerate(s.wire):
            error = s.error_from is not None and i >= s.error_from
            trace.append((s.start + LATENCY + i, byte, int(error)))
    return trace
