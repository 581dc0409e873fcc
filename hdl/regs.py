"""Control registers: a declarative register map, and the register bank gateware that serves it.

A `Map` is a list of `Block`s of `Register`s. It is the one definition of the control plane:
the `RegisterBank` is built from it, `firmware.regmap` exports it (JSON and a C header), and the
host reads the JSON (`host.regmap`), so no address is ever written down twice.

Address space (32-bit words; the exports give byte addresses, word address x 4)
------------------------------------------------------------------------------

| word        | what                                                                        |
|-------------|-----------------------------------------------------------------------------|
| 0           | `id.magic`: "TKNC" in ASCII, as the bytes at offset 0..3 read (0x434E4B54)   |
| 1           | `id.version`: major [31:16], minor [15:0] of the map                        |
| 2           | `id.map_hash`: CRC-32 of the layout (names, addresses, widths, kinds)        |
| 3           | `id.blocks`: number of blocks after the ID block                            |
| 4           | `id.first`: byte address of the first block header                          |
| 5           | `id.scratch`: read/write, no effect (a bus check)                           |
| ALIGN x k   | a block: its 2-word header, then its rows                                   |

Every block after the ID block starts at a multiple of `ALIGN_WORDS` words with a header:

| word       | bits    | field                                                           |
|------------|---------|-----------------------------------------------------------------|
| base       | [7:0]   | block id: its position in the map, 1 for the first after `id`    |
|            | [8]     | 1 if the block is shadowed                                       |
|            | [15:9]  | 0                                                                |
|            | [23:16] | rows (1 for a block without `count`)                             |
|            | [31:24] | stride: words per row                                            |
| base + 1   | [31:0]  | byte address of the next block's header; 0 after the last block  |
| base + 2   |         | row 0; row r at base + 2 + r x stride                            |

So a host that knows nothing but address 0 can walk every block and check that the map it
loaded (hash and headers) is the one in the gateware.

A row holds its registers in declaration order, each `words` = ceil(width / 32) words wide
(an array register: `count` such elements back to back); a shadowed block's row then has its
`commit` word, then one read-only *live* word per staged word (see below).

Register kinds
--------------

| access | bank port (per row; array registers as `data.ArrayLayout`) | read      | write      |
|--------|-------------------------------------------------------------|-----------|------------|
| "rw"   | Out(width): the live value, from `init`                     | see below | see below  |
| "ro"   | In(width) (+ Out(1) `<name>_read` if `read_strobe`)         | the input | ignored    |
| "wo"   | Out(1): high for one cycle after each write                 | 0         | strobe     |

* Wide values (> 32 bits) are split over consecutive words, bits [31:0] first. Access them low
  word first: writing a wide rw register of an unshadowed block stages the lower words and
  applies the whole value when its top word is written (so a 48-bit MAC never goes live half
  changed); reading word 0 of a wide ro register snapshots its upper words, which the following
  reads of words 1.. return (so a 64-bit counter never tears).
* Shadowed blocks (`shadow=True`): writes to an rw register go to its shadow; writing the row's
  `commit` register (any value) copies every shadow of the row to the live values in one clock
  edge, so the card never runs on half a configuration. Reads of the register return the shadow
  (what the host staged, committed or not); the live value is readable at the register's
  `live` address. Registers marked `immediate=True` (kill switches) skip the shadow: written
  live at once, like in an unshadowed block.
* Strobes (`wo`, `commit`, `<name>_read`) are registered: high for exactly the one cycle after
  the bus cycle that caused them, the same cycle in which a commit's new live values appear.
* Unmapped addresses read 0; writes to them do nothing.

The bus (`BusSignature`, from the host side; the bank takes `In(BusSignature(...))`)
----------------------------------------------------------------------------------

| signal  | width      | dir    | meaning                                                  |
|---------|------------|--------|----------------------------------------------------------|
| addr    | addr_width | host > | word address (byte address >> 2)                         |
| w_data  | 32         | host > | the word to write                                        |
| w_stb   | 1          | host > | write `w_data` to `addr` in this cycle                   |
| r_stb   | 1          | host > | read `addr` in this cycle                                |
| r_data  | 32         | < bank | the word read, exactly 1 cycle after `r_stb`; 0 otherwise |

No handshake, no wait states: one access per cycle (a cycle with both strobes reads the value
from before the write). A read of a register with side effects (`read_strobe`, the wide-value
snapshot) acts once per `r_stb`.

    cycle     0    1    2    3    4
    addr      A1   A2   A3   -    -
    w_stb     1    0    0    0    0     A1 <= D1: a read of A1 from cycle 1 on returns D1
    w_data    D1   -    -    -    -
    r_stb     0    1    1    0    0
    r_data    0    0    Q2   Q3   0     the word read in cycle k is on r_data in cycle k + 1
"""

import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["Register", "Block", "Map", "PlacedBlock", "PlacedRegister", "BusSignature",
           "RegisterBank", "MAGIC", "ALIGN_WORDS", "HEADER_WORDS", "ID_BLOCK"]

MAGIC = int.from_bytes(b"TKNC", "little")   # little-endian PCIe: the BAR's bytes spell TKNC
ALIGN_WORDS = 16                            # block bases: 64-byte aligned
HEADER_WORDS = 2
ID_BLOCK = "id"
ACCESS = ("rw", "ro", "wo")
MAX_WIDTH = 256
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


def _words(width: int) -> int:
    return (width + 31) // 32


@dataclass(frozen=True)
class Register:
    """One register (or, with `count`, an array of identical ones). See the module docstring for
    what each `access` means. `labels` name the elements of an array (the host may index by
    them). `value`: a constant the bank serves itself, with no port (the ID block)."""
    name: str
    width: int = 32
    access: str = "rw"
    doc: str = ""
    init: int = 0
    count: int | None = None
    labels: tuple[str, ...] | None = None
    immediate: bool = False
    read_strobe: bool = False
    value: int | None = None

    def __post_init__(self) -> None:
        where = f"register {self.name!r}"
        if not _NAME.match(self.name):
            raise ValueError(f"{where}: a name is lower case letters, digits and _, starting "
                             f"with a letter")
        if self.access not in ACCESS:
            raise ValueError(f"{where}: access must be one of {', '.join(ACCESS)}, not "
                             f"{self.access!r}")
        width = 1 if self.access == "wo" else self.width
        if not 1 <= width <= MAX_WIDTH:
            raise ValueError(f"{where}: width must be between 1 and {MAX_WIDTH}, not "
                             f"{self.width}")
        object.__setattr__(self, "width", width)
        if not 0 <= self.init < 1 << width or (self.init and self.access != "rw"):
            raise ValueError(f"{where}: init must fit {width} bits and is only for rw "
                             f"registers, not {self.init}")
        if self.count is not None and self.count < 1:
            raise ValueError(f"{where}: count must be at least 1, not {self.count}")
        if self.labels is not None and len(self.labels) != (self.count or 0):
            raise ValueError(f"{where}: {len(self.labels)} labels for {self.count} elements")
        if self.immediate and self.access != "rw":
            raise ValueError(f"{where}: only rw registers can be immediate")
        if self.read_strobe and self.access != "ro":
            raise ValueError(f"{where}: only ro registers can have a read strobe")
        if self.value is not None and (self.access != "ro" or self.count is not None):
            raise ValueError(f"{where}: only a single ro register can be a constant")

    @property
    def words(self) -> int:
        """Words of one element."""
        return _words(self.width)

    @property
    def span(self) -> int:
        """Words of the whole register, every element."""
        return self.words * (self.count or 1)


@dataclass(frozen=True)
class Block:
    """Registers that belong together. `count`: that many identical rows (the subscription
    table, a trigger per slot); `shadow`: staged writes applied by each row's `commit`."""
    name: str
    registers: tuple[Register, ...]
    doc: str = ""
    count: int | None = None
    shadow: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "registers", tuple(self.registers))
        where = f"block {self.name!r}"
        if not _NAME.match(self.name):
            raise ValueError(f"{where}: a name is lower case letters, digits and _, starting "
                             f"with a letter")
        if self.count is not None and not 1 <= self.count <= 255:
            raise ValueError(f"{where}: count must be between 1 and 255, not {self.count}")
        if self.shadow:
            if not any(r.access == "rw" and not r.immediate for r in self.registers):
                raise ValueError(f"{where}: a shadowed block needs an rw register to stage")
        elif any(r.immediate for r in self.registers):
            raise ValueError(f"{where}: immediate registers only make sense in a shadowed block")
        ports = [p for r in self.all_registers for p in (
            [r.name, f"{r.name}_read"] if r.read_strobe else [r.name])]
        dupes = sorted({p for p in ports if ports.count(p) > 1})
        if dupes:
            raise ValueError(f"{where}: names used twice: {', '.join(dupes)} (`commit` is "
                             f"taken in a shadowed block, `X_read` by a read-strobed X)")

    @property
    def all_registers(self) -> tuple[Register, ...]:
        if not self.shadow:
            return self.registers
        return (*self.registers, Register(
            "commit", access="wo",
            doc="any write applies every staged (shadow) value of this row at once"))


@dataclass(frozen=True)
class PlacedRegister:
    reg: Register
    offset: int                 # words from the row's start to element 0, word 0
    live_offset: int | None     # staged rw registers: the same for the live copy

    @property
    def staged(self) -> bool:
        return self.live_offset is not None


@dataclass(frozen=True)
class PlacedBlock:
    block: Block
    id: int                     # 0 for the ID block
    base: int                   # word address of the header (the ID block: 0, no header)
    rows_at: int                # word address of row 0
    stride: int                 # words per row
    registers: tuple[PlacedRegister, ...]
    next: int                   # word address of the next block's header; 0 after the last

    @property
    def name(self) -> str:
        return self.block.name

    @property
    def rows(self) -> int:
        return self.block.count or 1

    @property
    def end(self) -> int:
        return self.rows_at + self.rows * self.stride

    @property
    def header(self) -> int:
        return self.id | self.block.shadow << 8 | self.rows << 16 | self.stride << 24


def _place(block: Block, id: int, base: int, header: bool) -> PlacedBlock:
    rows_at = base + (HEADER_WORDS if header else 0)
    placed, at = [], 0
    for reg in block.all_registers:
        placed.append([reg, at])
        at += reg.span
    out = []
    for reg, offset in placed:
        live = None
        if block.shadow and reg.access == "rw" and not reg.immediate:
            live, at = at, at + reg.span
        out.append(PlacedRegister(reg, offset, live))
    if at > 255:
        raise ValueError(f"block {block.name!r}: a row is {at} words, at most 255 fit the "
                         f"header's stride field")
    return PlacedBlock(block, id, base, rows_at, at, tuple(out), 0)


def _align(word: int) -> int:
    return -(-word // ALIGN_WORDS) * ALIGN_WORDS


class Map:
    """The blocks laid out: the ID block at 0, then each block at the next multiple of
    ALIGN_WORDS, in the order given."""

    def __init__(self, blocks: Sequence[Block], version: tuple[int, int]):
        major, minor = version
        if not (0 <= major < 1 << 16 and 0 <= minor < 1 << 16):
            raise ValueError(f"version must be two integers between 0 and 65535, not {version}")
        names = [b.name for b in blocks]
        if ID_BLOCK in names or len(set(names)) != len(names):
            raise ValueError(f"block names must be unique and not {ID_BLOCK!r}: {names}")
        if not 1 <= len(blocks) <= 255:
            raise ValueError(f"a map has between 1 and 255 blocks, not {len(blocks)}")
        self.version = (major, minor)

        id_regs = ("magic", "version", "map_hash", "blocks", "first")
        at = _align(len(id_regs) + 1)
        placed = []
        for i, block in enumerate(blocks, 1):
            pb = _place(block, i, at, header=True)
            placed.append(pb)
            at = _align(pb.end)
        placed = [replace(pb, next=nxt.base)
                  for pb, nxt in zip(placed[:-1], placed[1:], strict=True)] + placed[-1:]
        self.words = 1 << ceil_log2(at)

        # The hash covers the layout without the ID block's constants (it is one of them).
        def id_block(values: dict[str, int]) -> Block:
            docs = {
                "magic": "\"TKNC\" in ASCII, byte 0 first",
                "version": "map version: major [31:16] (incompatible), minor [15:0]",
                "map_hash": "CRC-32 of the layout; the host checks it against its JSON",
                "blocks": "number of blocks after this one",
                "first": "byte address of the first block header",
            }
            return Block(ID_BLOCK, (
                *(Register(n, access="ro", doc=docs[n], value=values.get(n, 0))
                  for n in id_regs),
                Register("scratch", doc="read/write, no effect: a bus check"),
            ), doc="identifies the card and its register map; always at address 0")

        self.blocks: tuple[PlacedBlock, ...] = (_place(id_block({}), 0, 0, False), *placed)
        self.hash = zlib.crc32(json.dumps(self.describe(layout_only=True),
                                          sort_keys=True).encode())
        ident = id_block({"magic": MAGIC, "version": major << 16 | minor, "map_hash": self.hash,
                          "blocks": len(placed), "first": 4 * placed[0].base})
        self.blocks = (_place(ident, 0, 0, False), *placed)

    def __getitem__(self, name: str) -> PlacedBlock:
        for pb in self.blocks:
            if pb.name == name:
                return pb
        raise KeyError(f"no block {name!r}; blocks: {', '.join(b.name for b in self.blocks)}")

    def constants(self) -> dict[int, int]:
        """Word address -> value of every word the bank serves as a constant."""
        out = {}
        for pb in self.blocks:
            if pb.id:
                out[pb.base] = pb.header
                out[pb.base + 1] = 4 * pb.next
            for p in pb.registers:
                if p.reg.value is not None:
                    out[pb.rows_at + p.offset] = p.reg.value
        return out

    def describe(self, layout_only: bool = False) -> dict:
        """The map as plain data, addresses in bytes: what `firmware.regmap` exports and
        `host.regmap` reads. `layout_only`: without docs and constants (what the hash covers).
        """
        def reg(pb: PlacedBlock, p: PlacedRegister) -> dict:
            r = p.reg
            out = {
                "name": r.name, "access": r.access, "width": r.width, "words": r.words,
                "count": r.count, "labels": list(r.labels) if r.labels else None,
                "addr": 4 * (pb.rows_at + p.offset),
                "live_addr": None if p.live_offset is None else 4 * (pb.rows_at + p.live_offset),
                "immediate": r.immediate, "read_strobe": r.read_strobe, "init": r.init,
            }
            if not layout_only:
                out.update(doc=r.doc, value=r.value)
            return out

        blocks = []
        for pb in self.blocks:
            b = {"name": pb.name, "id": pb.id, "base": 4 * pb.base, "rows": pb.block.count,
                 "stride": 4 * pb.stride, "shadow": pb.block.shadow,
                 "registers": [reg(pb, p) for p in pb.registers]}
            if not layout_only:
                b["doc"] = pb.block.doc
            blocks.append(b)
        out = {"magic": "TKNC", "version": list(self.version), "word_bytes": 4,
               "size": 4 * self.words, "header_words": HEADER_WORDS, "blocks": blocks}
        if not layout_only:
            out["hash"] = self.hash
        return out


class BusSignature(wiring.Signature):
    """The host-to-registers bus, seen from the host: see the module docstring."""

    def __init__(self, addr_width: int):
        self.addr_width = addr_width
        super().__init__({
            "addr": Out(addr_width),
            "w_data": Out(32),
            "w_stb": Out(1),
            "r_stb": Out(1),
            "r_data": In(32),
        })


def _shape(reg: Register):
    return reg.width if reg.count is None else data.ArrayLayout(reg.width, reg.count)


def block_signature(block: Block) -> wiring.Signature:
    """A row's ports, from the bank's side: rw and strobes out, ro in."""
    members = {}
    for r in block.all_registers:
        if r.value is not None:
            continue
        if r.access == "rw":
            init = r.init if r.count is None else [r.init] * r.count
            members[r.name] = Out(_shape(r), init=init)
        elif r.access == "ro":
            members[r.name] = In(_shape(r))
            if r.read_strobe:
                members[f"{r.name}_read"] = Out(1)
        else:
            members[r.name] = Out(1)
    return wiring.Signature(members)


class RegisterBank(wiring.Component):
    """Serves a `Map` on a `BusSignature` bus. Ports: `bus`, and one per block (not the ID
    block) named after it, holding the row's ports (`block_signature`); a block with `count`
    is an array of rows: `bank.watchlist[3].symbol`, `bank.limits.kill`, `bank.feed.gaps`."""

    def __init__(self, regmap: Map):
        self.map = regmap
        members = {"bus": In(BusSignature(ceil_log2(regmap.words)))}
        for pb in regmap.blocks[1:]:
            member = Out(block_signature(pb.block))
            members[pb.name] = member if pb.block.count is None else member.array(pb.rows)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        reads = {a: Const(v, 32) for a, v in self.map.constants().items()}
        writes = {}         # word address -> statements on a write there
        on_read = {}        # word address -> statements on a read there

        for pb in self.map.blocks:
            for row in range(pb.rows):
                if pb.id == 0:
                    ports = block_signature(pb.block).create(path=(pb.name,))
                elif pb.block.count is None:
                    ports = getattr(self, pb.name)
                else:
                    ports = getattr(self, pb.name)[row]
                at = pb.rows_at + row * pb.stride
                commit = []     # statements of this row's commit
                for p in pb.registers:
                    if p.reg.value is None:
                        self._register(m, ports, at, p, reads, writes, on_read, commit)
                if pb.block.shadow:
                    (commit_at,) = (at + p.offset for p in pb.registers
                                    if p.reg.name == "commit")
                    writes[commit_at].extend(commit)

        # Only r_data is a Switch: Amaranth copies a Switch's every case into the process of
        # each signal assigned under it, so per-register logic decodes its own address once.
        m.d.sync += bus.r_data.eq(0)
        with m.If(bus.r_stb):
            with m.Switch(bus.addr):
                for addr in sorted(reads):
                    with m.Case(addr):
                        m.d.sync += bus.r_data.eq(reads[addr])
        for stb, actions in ((bus.r_stb, on_read), (bus.w_stb, writes)):
            for addr in sorted(actions):
                if actions[addr]:
                    with m.If(stb & (bus.addr == addr)):
                        m.d.sync += actions[addr]
        return m

    def _register(self, m, ports, at, p, reads, writes, on_read, commit):
        """One register of one row: its storage, and what reading and writing its words do."""
        reg, w_data = p.reg, self.bus.w_data

        def word(value, k):
            return value[32 * k: min(32 * (k + 1), len(value))]

        port = getattr(ports, reg.name)
        for i in range(reg.count or 1):
            base = at + p.offset + i * reg.words
            value = port if reg.count is None else port[i]
            # An element of an ArrayLayout port is a View when the element shape is one.
            value = value.as_value() if isinstance(value, data.View) else value
            if reg.access == "wo":
                # Strobes are low unless written this cycle (the later statement wins).
                m.d.sync += value.eq(0)
                writes.setdefault(base, []).append(value.eq(1))
            elif reg.access == "ro":
                reads[base] = word(value, 0)
                on_read.setdefault(base, [])
                if reg.words > 1:
                    snapshot = Signal(reg.width - 32, name=f"{reg.name}_snapshot")
                    on_read[base].append(snapshot.eq(value[32:]))
                    for k in range(1, reg.words):
                        reads[base + k] = word(snapshot, k - 1)
                if reg.read_strobe:
                    strobe = getattr(ports, f"{reg.name}_read")
                    m.d.sync += strobe.eq(0)
                    on_read[base].append(strobe.eq(1))
            elif p.staged:
                shadow = Signal(reg.width, init=reg.init, name=f"{reg.name}_shadow")
                live_base = at + p.live_offset + i * reg.words
                for k in range(reg.words):
                    writes.setdefault(base + k, []).append(word(shadow, k).eq(w_data))
                    reads[base + k] = word(shadow, k)
                    reads[live_base + k] = word(value, k)
                commit.append(value.eq(shadow))
            else:
                # Lower words of a wide value wait in `stage` until the top word is written.
                stage = Signal(32 * (reg.words - 1), name=f"{reg.name}_stage")
                for k in range(reg.words):
                    reads[base + k] = word(value, k)
                    if k < reg.words - 1:
                        stmt = word(stage, k).eq(w_data)
                    else:
                        stmt = value.eq(Cat(stage, w_data))
                    writes.setdefault(base + k, []).append(stmt)
