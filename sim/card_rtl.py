"""The card (`hdl.card.Card`) in Verilator, driven the way a host drives it: register writes and
reads by name on its bus, market data on its RX pins, order frames taken off its TX pins.

`CardProgram` is a `sim.verilated.Stimulus` with bus accesses: a write or read of a word takes
one cycle (the bus has no wait states, `hdl.regs`); `read` returns a handle whose value
`CardResult.value` gives after the run. A bus read's data is recorded through a one-cycle
delayed copy of `r_stb` (`CardBench.rd_valid`), so reads and recorded words pair up in order.
"""

import functools
from dataclasses import dataclass
from pathlib import Path

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl.card import Card, event_fields
from hdl.formats import BookParams
from hdl.mac_rx import GmiiRx
from hdl.mac_tx import GmiiTx
from hdl.regs import BusSignature
from host.regmap import RegMap
from sim.core_rtl import wire_frames
from sim.verilated import Result, Stimulus, Verilated

__all__ = ["CardBench", "CardProgram", "CardResult", "CardRtl"]


class CardBench(wiring.Component):
    """Card, and `rd_valid`: high in the cycle `bus.r_data` holds a word read (what the
    Verilator harness records a stream by)."""

    def __init__(self, params: BookParams):
        self.card = Card(params)
        super().__init__({
            "bus": In(BusSignature(len(self.card.bus.addr))),
            "gmii": In(GmiiRx),
            "gmii_tx": Out(GmiiTx),
            "rd_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.card = card = self.card
        wiring.connect(m, wiring.flipped(self.bus), card.bus)
        wiring.connect(m, wiring.flipped(self.gmii), card.gmii)
        wiring.connect(m, card.gmii_tx, wiring.flipped(self.gmii_tx))
        m.d.sync += self.rd_valid.eq(self.bus.r_stb)
        return m


class CardProgram(Stimulus):
    """A stimulus program with register accesses by name (`host.regmap` names)."""

    def __init__(self, regmap: RegMap) -> None:
        super().__init__()
        self.regmap = regmap
        self.reads: list[tuple[str, int]] = []      # (name, words) per read, in order

    def write(self, name: str, value: int) -> "CardProgram":
        """Write a register, low word first (a "x.commit" or other strobe: any value)."""
        reg = self.regmap[name]
        if not 0 <= value < 1 << 32 * reg.words:
            raise ValueError(f"{name} takes a value of {reg.width} bits, not {value}")
        for k in range(reg.words):
            self.set("bus__addr", (reg.addr >> 2) + k).set("bus__w_data",
                                                           value >> 32 * k & 0xFFFF_FFFF)
            self.pulse("bus__w_stb")
        return self

    def read(self, name: str, *, live: bool = False, words: int | None = None) -> int:
        """Read a register (its live copy with `live`), low word first; `words`: only that
        many of its words. Returns a handle for `CardResult.value`."""
        reg = self.regmap[name]
        addr = reg.live_addr if live else reg.addr
        if addr is None:
            raise ValueError(f"{name} has no live copy")
        n = reg.words if words is None else words
        for k in range(n):
            self.set("bus__addr", (addr >> 2) + k).pulse("bus__r_stb")
        self.reads.append((name, n))
        return len(self.reads) - 1


@dataclass
class CardResult:
    result: Result
    values: list[int]               # per read, in program order
    frames: list[bytes]             # order (and host) frames off the TX pins, FCS included

    def value(self, handle: int) -> int:
        return self.values[handle]


class CardRtl:
    """Builds (cached on disk) and runs `CardBench` in Verilator."""

    @staticmethod
    @functools.cache
    def shared(params: BookParams | None = None) -> "CardRtl":
        return CardRtl(params)

    def __init__(self, params: BookParams | None = None,
                 build_dir: Path = Path("build/verilated")) -> None:
        self.params = p = params or BookParams()
        bench = CardBench(p)
        # This build's map, as firmware.regmap exports the card's (with the event layout).
        self.regmap = RegMap(bench.card.map.describe() | {"event": event_fields()})
        self.sim = Verilated(bench, name=f"card_w{p.slots}_s{p.sets}_k{p.ways}_l{p.levels}",
                             gmii=("gmii__rxd", "gmii__rx_dv", "gmii__rx_er"),
                             streams=(("rd", "rd_valid", "bus__r_data"),
                                      ("tx", "gmii_tx__tx_en", "gmii_tx__txd")),
                             build_dir=build_dir)

    def program(self) -> CardProgram:
        return CardProgram(self.regmap)

    def run(self, program: CardProgram, drain: int = 64) -> CardResult:
        r = self.sim.run(program, drain=drain)
        words = [w for _, w in r.events["rd"]]
        assert len(words) == sum(n for _, n in program.reads), "a read went unrecorded"
        values, at = [], 0
        for _, n in program.reads:
            values.append(sum(w << 32 * k for k, w in enumerate(words[at:at + n])))
            at += n
        return CardResult(r, values, wire_frames(r.events["tx"]))
