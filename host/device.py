"""The card as the host drives it: registers read and written by name, over a transport.

    with open_device("pcie:///sys/bus/pci/devices/0000:01:00.0/resource0") as dev:
        dev.write("limits.max_order_qty", 800)
        dev.write("limits.max_order_notional", 1_200_000_000)   # 64 bits: two words
        dev.commit("limits")                                    # both go live together
        dev.read("feed.frames_ok")

A `Transport` moves 32-bit words to and from byte addresses of the register space; `Device`
turns names into addresses through `host.regmap` (the gateware's export), splits wide values
into words low word first (the order the register bank expects; `hdl.regs`), and can check that
the card is a ticknic card with the same map. Transports:

| URL              | transport                                                              |
|------------------|------------------------------------------------------------------------|
| `pcie://PATH`    | `PcieTransport`: mmap of PATH, a PCI sysfs `resourceN` file (the BAR)  |
|                  | or, in tests, an ordinary file                                         |
| `sim://HOST:PORT`| `host.transport_sim.SimTransport`: ZeroMQ to the co-simulation server |
|                  | (`sim.cosim`) at tcp://HOST:PORT                                       |
"""

import mmap
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from host.regmap import Reg, RegMap, RegMapError

__all__ = ["DeviceError", "Transport", "PcieTransport", "Device", "BlockHeader",
           "open_device", "URL_FORMS"]

URL_FORMS = "sim://HOST:PORT or pcie://PATH"


class DeviceError(Exception):
    """The device cannot be reached or is not what the map says; the message is one line."""


class Transport(Protocol):
    def read32(self, addr: int) -> int:
        """The 32-bit word at byte address `addr` (a multiple of 4)."""
        ...

    def write32(self, addr: int, value: int) -> None:
        ...

    def close(self) -> None:
        ...


class PcieTransport:
    """32-bit little-endian word accesses to a memory-mapped file: on a card, the PCI sysfs
    `resourceN` file of the BAR the register bank sits behind."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            fd = os.open(self.path, os.O_RDWR | getattr(os, "O_SYNC", 0))
        except OSError as e:
            raise DeviceError(f"cannot open {self.path}: {e.strerror}") from None
        try:
            self._mm = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except (OSError, ValueError) as e:
            raise DeviceError(f"cannot map {self.path}: {e}") from None
        finally:
            os.close(fd)        # the mapping keeps its own reference
        self.size = len(self._mm)
        # Word-sized indexing, not slicing: a slice is copied with memcpy, which may touch a
        # BAR byte by byte; a native "I" element is one 32-bit load or store.
        self._words = memoryview(self._mm).cast("I")
        assert self._words.itemsize == 4

    def _index(self, addr: int) -> int:
        if addr % 4 or not 0 <= addr < self.size - self.size % 4:
            raise DeviceError(f"address 0x{addr:x} must be a multiple of 4 below 0x{self.size:x} "
                              f"(the size of {self.path})")
        return addr // 4

    def read32(self, addr: int) -> int:
        value = int(self._words[self._index(addr)])
        return value if sys.byteorder == "little" else int.from_bytes(value.to_bytes(4, "big"),
                                                                       "little")

    def write32(self, addr: int, value: int) -> None:
        if sys.byteorder != "little":
            value = int.from_bytes(value.to_bytes(4, "little"), "big")
        self._words[self._index(addr)] = value

    def close(self) -> None:
        if not self._mm.closed:
            self._words.release()   # mmap refuses to close while a view is exported
            self._mm.close()


@dataclass(frozen=True)
class BlockHeader:
    """A block header as the card serves it (`hdl.regs`)."""
    addr: int                 # byte address
    id: int
    shadow: bool
    rows: int
    stride: int               # bytes per row
    next: int                 # byte address of the next header; 0 after the last


class Device:
    def __init__(self, transport: Transport, regmap: RegMap | None = None,
                 where: str = "the device") -> None:
        self.transport = transport
        self.regmap = regmap or RegMap.load()
        self.where = where

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()

    def reg(self, name: str) -> Reg:
        return self.regmap[name]

    def read(self, name: str, *, live: bool = False) -> int:
        """The register's value, words read low first. `live`: in a shadowed block, the value in
        force rather than the staged one."""
        reg = self.reg(name)
        addr = reg.addr
        if reg.access == "wo":
            raise RegMapError(f"{reg.name} is write-only (an action): nothing to read")
        if live:
            if reg.live_addr is None:
                raise RegMapError(f"{reg.name} has no live copy: only the staged rw registers "
                                  f"of a shadowed block have one")
            addr = reg.live_addr
        value = 0
        for k in range(reg.words):
            value |= self.transport.read32(addr + 4 * k) << 32 * k
        return value

    def write(self, name: str, value: int) -> None:
        """Write the register, words low first (a wide value goes live with its top word, or
        with the block's commit in a shadowed block). A `wo` register takes any value."""
        reg = self.reg(name)
        if reg.access == "ro":
            raise RegMapError(f"{reg.name} is read-only")
        if isinstance(value, bool) or not isinstance(value, int) \
                or not 0 <= value < 1 << reg.width:
            raise ValueError(f"{reg.name} takes an integer between 0 and "
                             f"{(1 << reg.width) - 1}, not {value!r}")
        for k in range(reg.words):
            self.transport.write32(reg.addr + 4 * k, value >> 32 * k & 0xFFFF_FFFF)

    def commit(self, row: str) -> None:
        """Apply what was staged in a shadowed block's row: "limits", "triggers[3]"."""
        block = self.regmap.blocks.get(row.split("[")[0])
        if block is not None and not block.shadow:
            shadowed = [b.name for b in self.regmap.blocks.values() if b.shadow]
            raise RegMapError(f"block {block.name} is not shadowed: its writes act at once "
                              f"(shadowed: {', '.join(shadowed)})")
        self.write(f"{row}.commit", 1)

    def identify(self) -> tuple[int, tuple[int, int], int]:
        """(magic, (major, minor), map hash) as the card reports them."""
        version = self.read("id.version")
        return self.read("id.magic"), (version >> 16, version & 0xFFFF), self.read("id.map_hash")

    def headers(self) -> list[BlockHeader]:
        """Walk the card's block headers from `id.first`."""
        count, at = self.read("id.blocks"), self.read("id.first")
        out: list[BlockHeader] = []
        while at:
            if len(out) == count or at % 4 or at >= self.regmap.size:
                raise DeviceError(f"{self.where}: broken block header chain at 0x{at:x} after "
                                  f"{len(out)} of {count} blocks")
            word = self.transport.read32(at)
            out.append(BlockHeader(at, word & 0xFF, bool(word >> 8 & 1), word >> 16 & 0xFF,
                                   4 * (word >> 24), self.transport.read32(at + 4)))
            at = out[-1].next
        if len(out) != count:
            raise DeviceError(f"{self.where}: the header chain has {len(out)} blocks, "
                              f"id.blocks says {count}")
        return out

    def check(self) -> None:
        """DeviceError unless the card is a ticknic card serving exactly this map."""
        magic, version, hash_ = self.identify()
        want = self.regmap.blocks["id"].registers["magic"].value
        if magic != want:
            raise DeviceError(f"no ticknic card at {self.where}: word 0 is 0x{magic:08x}, a "
                              f"card has 0x{want:08x} (\"TKNC\")")
        if version != self.regmap.version or hash_ != self.regmap.hash:
            major, minor = self.regmap.version
            raise DeviceError(
                f"{self.where} serves register map {version[0]}.{version[1]} (hash "
                f"0x{hash_:08x}), this host's firmware/regmap.json is {major}.{minor} (hash "
                f"0x{self.regmap.hash:08x}): use the export built with the card's bitstream")
        expect = [BlockHeader(b.base, b.id, b.shadow, b.row_count, b.stride, 0)
                  for b in self.regmap.blocks.values() if b.id]
        found = [BlockHeader(h.addr, h.id, h.shadow, h.rows, h.stride, 0) for h in self.headers()]
        if found != expect:
            raise DeviceError(f"{self.where}: block headers differ from the map: "
                              f"{found} != {expect}")


_SIM = re.compile(r"sim://([^:/]+):(\d+)\Z")


def open_device(url: str, *, regmap: RegMap | None = None, check: bool = True) -> Device:
    """A Device for `url` (see the module docstring); `check`: verify the card's ID and map."""
    if url.startswith("pcie://") and len(url) > len("pcie://"):
        dev = Device(PcieTransport(url[len("pcie://"):]), regmap, where=url)
    elif url.startswith("sim://"):
        m = _SIM.match(url)
        if not m or not 1 <= int(m[2]) <= 65535:
            raise DeviceError(f"a sim device URL is sim://HOST:PORT with a port between 1 and "
                              f"65535, not {url!r}")
        # Imported here: pyzmq is needed only by sim:// devices (and transport_sim imports us).
        from host.transport_sim import SimTransport
        dev = Device(SimTransport(f"tcp://{m[1]}:{m[2]}"), regmap, where=url)
    else:
        raise DeviceError(f"a device URL is {URL_FORMS}, not {url!r}")
    if check:
        try:
            dev.check()
        except BaseException:
            dev.close()
            raise
    return dev
