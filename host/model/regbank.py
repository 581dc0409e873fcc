"""Reference model of the register bank (`hdl.regs.RegisterBank`): bus accesses in; read data,
register values and strobes out.

Built from the map the host reads (`host.regmap`, the JSON export), not from the gateware's
declarations, and it derives the block headers from the JSON's block descriptions itself, so a
test of the gateware against it also checks the export and the header layout. One call is one
bus cycle; `strobes` are those high in the cycle after it.
"""

from host.regmap import Reg, RegMap

__all__ = ["RegBankModel", "image"]

_WORD = 0xFFFF_FFFF


def _set_word(value: int, k: int, word: int, width: int) -> int:
    value = value & ~(_WORD << 32 * k) | (word & _WORD) << 32 * k
    return value & ((1 << width) - 1)


class RegBankModel:
    def __init__(self, regmap: RegMap) -> None:
        self.regmap = regmap
        self.live: dict[str, int] = {}       # rw element name -> the value on its port
        self.inputs: dict[str, int] = {}     # ro element name -> what its input port shows
        self.strobes: set[str] = set()       # wo element names, and "<ro name>_read"
        self._shadow: dict[str, int] = {}
        self._stage: dict[str, int] = {}
        self._snapshot: dict[str, int] = {}
        self._const: dict[int, int] = {}
        self._words: dict[int, tuple[str, Reg, int]] = {}    # addr -> (role, element, word)
        self._rows: dict[str, list[Reg]] = {}                # commit -> the row's staged

        blocks = [b for b in regmap.blocks.values() if b.id]
        for block, nxt in zip(blocks, [*blocks[1:], None], strict=True):
            self._const[block.base] = (block.id | block.shadow << 8 | block.row_count << 16
                                       | block.stride // 4 << 24)
            self._const[block.base + 4] = nxt.base if nxt else 0
        for e in regmap.elements():
            if e.info.value is not None:
                self._const[e.addr] = e.info.value
                continue
            for k in range(e.words):
                self._words[e.addr + 4 * k] = ("value", e, k)
                if e.live_addr is not None:
                    self._words[e.live_addr + 4 * k] = ("live", e, k)
            if e.access == "rw":
                self.live[e.name] = self._shadow[e.name] = e.info.init
                self._stage[e.name] = 0
            elif e.access == "ro":
                self.inputs[e.name] = self._snapshot[e.name] = 0
            if e.info.name == "commit":
                self._rows[e.name] = []
        for e in regmap.elements():
            if e.live_addr is not None:
                self._rows[e.name.rsplit(".", 1)[0] + ".commit"].append(e)

    def mapped(self) -> set[int]:
        """Every byte address that is not unmapped."""
        return set(self._words) | set(self._const)

    def read(self, addr: int) -> int:
        self.strobes = set()
        if addr in self._const:
            return self._const[addr]
        if addr not in self._words:
            return 0
        role, e, k = self._words[addr]
        if role == "live":
            return self.live[e.name] >> 32 * k & _WORD
        if e.access == "rw":
            return (self._shadow if e.live_addr is not None else self.live)[e.name] \
                >> 32 * k & _WORD
        if e.access == "wo":
            return 0
        if k:
            return self._snapshot[e.name] >> 32 * (k - 1) & _WORD
        value = self.inputs[e.name]
        self._snapshot[e.name] = value >> 32
        if e.info.read_strobe:
            self.strobes.add(e.name + "_read")
        return value & _WORD

    def write(self, addr: int, word: int) -> None:
        self.strobes = set()
        if addr not in self._words:
            return
        role, e, k = self._words[addr]
        if role == "live" or e.access == "ro":
            return
        if e.access == "wo":
            self.strobes.add(e.name)
            for staged in self._rows.get(e.name, []):
                self.live[staged.name] = self._shadow[staged.name]
        elif e.live_addr is not None:
            self._shadow[e.name] = _set_word(self._shadow[e.name], k, word, e.width)
        elif k < e.words - 1:
            self._stage[e.name] = _set_word(self._stage[e.name], k, word, 32 * (e.words - 1))
        else:
            self.live[e.name] = _set_word(self._stage[e.name], k, word, e.width)

    def idle(self) -> None:
        self.strobes = set()


def image(regmap: RegMap) -> bytes:
    """The register space of a card just out of reset, as the bytes of its BAR."""
    model = RegBankModel(regmap)
    return b"".join(model.read(a).to_bytes(4, "little") for a in range(0, regmap.size, 4))
