"""The card's register map as the host sees it: register names to addresses, from the export.

`firmware/regmap.json` is written by `python -m firmware.regmap` from the gateware's one
definition (`hdl.regmap`); nothing here knows an address. Names:

    limits.max_order_qty            a register of a single block
    watchlist[3].symbol             row 3 of an array block
    feed.drops[5], feed.drops[mac_fcs], feed.messages_by_type[A]
                                    element of an array register, by number or by label

Addresses are byte offsets in the register space; a value spans `words` 32-bit words from
`addr`, low word first. See `hdl.regs` for what each access kind does.

`RegMap.event` is the layout of an `events.data` value (`hdl.card.Event`), and
`RegMap.decode_event` splits a value read there into its fields by name.
"""

import difflib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_PATH", "RegMapError", "RegisterInfo", "BlockInfo", "Reg", "EventField",
           "RegMap"]

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "firmware" / "regmap.json"

_PART = re.compile(r"([a-z][a-z0-9_]*)(?:\[([A-Za-z0-9_]+)\])?\Z")
_FORMS = "BLOCK.REG, BLOCK[ROW].REG, BLOCK.REG[INDEX] or BLOCK[ROW].REG[INDEX]"


class RegMapError(LookupError):
    """A register name that is not in the map; the message is one line."""

    def __str__(self) -> str:
        # LookupError would print the repr of the message, quotes and all.
        return str(self.args[0])


@dataclass(frozen=True)
class RegisterInfo:
    """One declared register, as the export describes it (row 0, element 0)."""
    name: str
    access: str               # "rw", "ro" or "wo"
    width: int
    words: int                # of one element
    count: int | None         # elements of an array register
    labels: tuple[str, ...] | None
    addr: int
    live_addr: int | None     # staged rw registers: where the value in force reads
    immediate: bool
    read_strobe: bool
    init: int
    value: int | None         # constants of the ID block
    doc: str


@dataclass(frozen=True)
class BlockInfo:
    name: str
    id: int
    base: int                 # byte address of its header (the ID block: 0, no header)
    rows: int | None          # None: a single block, named without [ROW]
    stride: int               # bytes per row
    shadow: bool
    doc: str
    registers: dict[str, RegisterInfo]

    @property
    def row_count(self) -> int:
        return self.rows or 1


@dataclass(frozen=True)
class Reg:
    """One register element of one row: what a name resolves to."""
    name: str                 # canonical: labels resolved to numbers
    block: str
    row: int | None
    index: int | None
    info: RegisterInfo
    addr: int                 # byte address of word 0
    live_addr: int | None

    @property
    def width(self) -> int:
        return self.info.width

    @property
    def words(self) -> int:
        return self.info.words

    @property
    def access(self) -> str:
        return self.info.access


@dataclass(frozen=True)
class EventField:
    """One field of an event (`hdl.card.Event`): bits [offset, offset + width)."""
    name: str
    offset: int
    width: int
    values: tuple[str | None, ...] | None     # enumerated fields: the name of each value

    def extract(self, value: int) -> int:
        return value >> self.offset & ((1 << self.width) - 1)

    def name_of(self, v: int) -> str:
        """The name of value `v` of an enumerated field (its number if it has none)."""
        if self.values and v < len(self.values) and self.values[v] is not None:
            return str(self.values[v])
        return str(v)


def _close(word: str, options: list[str]) -> str:
    near = difflib.get_close_matches(word, options, n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(near)}?" if near else ""


class RegMap:
    def __init__(self, desc: dict[str, Any]) -> None:
        self.version: tuple[int, int] = (desc["version"][0], desc["version"][1])
        self.hash: int = desc["hash"]
        self.size: int = desc["size"]
        self.header_words: int = desc["header_words"]
        self.blocks: dict[str, BlockInfo] = {}
        for b in desc["blocks"]:
            regs = {r["name"]: RegisterInfo(
                name=r["name"], access=r["access"], width=r["width"], words=r["words"],
                count=r["count"], labels=tuple(r["labels"]) if r["labels"] else None,
                addr=r["addr"], live_addr=r["live_addr"], immediate=r["immediate"],
                read_strobe=r["read_strobe"], init=r["init"], value=r["value"], doc=r["doc"])
                for r in b["registers"]}
            self.blocks[b["name"]] = BlockInfo(b["name"], b["id"], b["base"], b["rows"],
                                               b["stride"], b["shadow"], b["doc"], regs)
        self.event: dict[str, EventField] = {
            f["name"]: EventField(f["name"], f["offset"], f["width"],
                                  tuple(f["values"]) if f.get("values") else None)
            for f in desc.get("event", [])}

    def decode_event(self, value: int) -> dict[str, int]:
        """An `events.data` value as {field: integer}; kind 0 (NONE): the FIFO was empty."""
        return {name: f.extract(value) for name, f in self.event.items()}

    @classmethod
    def load(cls, path: Path | None = None) -> "RegMap":
        path = path or DEFAULT_PATH
        try:
            return cls(json.loads(path.read_text()))
        except FileNotFoundError:
            raise RegMapError(f"no register map at {path}: run `python -m firmware.regmap`")\
                from None

    def __getitem__(self, name: str) -> Reg:
        parts = name.split(".")
        matches = [_PART.match(p) for p in parts]
        if len(parts) != 2 or not all(matches):
            raise RegMapError(f"a register name looks like {_FORMS}, not {name!r}")
        (block_name, row_text), (reg_name, index_text) = (m.groups() for m in matches if m)
        block = self.blocks.get(block_name)
        if block is None:
            raise RegMapError(f"no block {block_name!r}{_close(block_name, list(self.blocks))} "
                              f"(blocks: {', '.join(self.blocks)})")
        info = block.registers.get(reg_name)
        if info is None:
            full = [f"{block_name}.{r}" for r in block.registers]
            raise RegMapError(f"no register {reg_name!r} in block {block_name}"
                              f"{_close(f'{block_name}.{reg_name}', full)} "
                              f"(registers: {', '.join(block.registers)})")
        row = self._row(block, row_text, reg_name)
        index = self._index(block_name, info, index_text)
        return self._element(block, info, row, index)

    def _row(self, block: BlockInfo, text: str | None, reg: str) -> int | None:
        if block.rows is None:
            if text is not None:
                raise RegMapError(f"block {block.name} has no rows: write {block.name}.{reg}")
            return None
        if text is None:
            raise RegMapError(f"block {block.name} has {block.rows} rows: name one, as in "
                              f"{block.name}[0].{reg}")
        if not text.isdigit() or int(text) >= block.rows:
            raise RegMapError(f"{block.name} row must be between 0 and {block.rows - 1}, "
                              f"not {text}")
        return int(text)

    def _index(self, block: str, info: RegisterInfo, text: str | None) -> int | None:
        where = f"{block}.{info.name}"
        if info.count is None:
            if text is not None:
                raise RegMapError(f"{where} is not an array: write {where}")
            return None
        if text is None:
            raise RegMapError(f"{where} has {info.count} elements: name one, as in {where}[0]")
        if text.isdigit() and int(text) < info.count:
            return int(text)
        labels = list(info.labels or ())
        if text in labels:
            return labels.index(text)
        allowed = f"0 to {info.count - 1}" + (f" or a label ({', '.join(labels)})"
                                              if labels else "")
        raise RegMapError(f"{where} index must be {allowed}, not {text}{_close(text, labels)}")

    def _element(self, block: BlockInfo, info: RegisterInfo, row: int | None,
                 index: int | None) -> Reg:
        shift = (row or 0) * block.stride + (index or 0) * info.words * 4
        name = (f"{block.name}{'' if row is None else f'[{row}]'}.{info.name}"
                f"{'' if index is None else f'[{index}]'}")
        live = None if info.live_addr is None else info.live_addr + shift
        return Reg(name, block.name, row, index, info, info.addr + shift, live)

    def elements(self) -> Iterator[Reg]:
        """Every register element: block by block, row by row, in declaration order."""
        for block in self.blocks.values():
            for row in range(block.row_count):
                for info in block.registers.values():
                    for index in range(info.count or 1):
                        yield self._element(block, info, None if block.rows is None else row,
                                            None if info.count is None else index)
