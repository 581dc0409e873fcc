"""RegisterBank in Amaranth's simulator, against host.model.regbank (built from the JSON
description the host reads): every access kind, shadows and commit, wide values, strobes,
read latency, unmapped addresses, and the card map's ID block and header chain."""

import random

import pytest
from amaranth.sim import Simulator

from hdl.regmap import CARD_MAP
from hdl.regs import MAGIC, Block, Map, Register, RegisterBank
from host.device import Device
from host.model.regbank import RegBankModel
from host.regmap import Reg, RegMap

SMALL = Map([
    Block("ctl", (
        Register("mode", 3, init=5),
        Register("mac", 48, init=0x0123_4567_89AB),
        Register("go", access="wo"),
        Register("status", 7, access="ro"),
        Register("wide", 64, access="ro"),
        Register("fifo", 40, access="ro", read_strobe=True),
        Register("counts", 16, access="ro", count=3, labels=("a", "b", "c")),
        Register("table", 8, count=2, init=0x11),
    )),
    Block("cfg", (
        Register("lo", init=7),
        Register("seq", 80),
        Register("flag", 1),
        Register("kill", 1, immediate=True),
    ), count=2, shadow=True),
], version=(0, 1))


class Harness:
    """A bank, its model, and the port of every element, driven one bus cycle at a time."""

    def __init__(self, hmap: Map):
        self.bank = RegisterBank(hmap)
        self.map = RegMap(hmap.describe())
        self.model = RegBankModel(self.map)
        self.elements = list(self.map.elements())
        self.rw = {e.name: self.port(e) for e in self.elements if e.access == "rw"
                   and e.block != "id"}
        self.ro = {e.name: (e, self.port(e)) for e in self.elements
                   if e.access == "ro" and e.info.value is None}
        self.strobes = {e.name: self.port(e) for e in self.elements
                        if e.access == "wo"}
        self.strobes |= {f"{e.name}_read": self.port(e, "_read") for e in self.elements
                         if e.info.read_strobe}

    def port(self, e: Reg, suffix: str = ""):
        iface = getattr(self.bank, e.block)
        if e.row is not None:
            iface = iface[e.row]
        sig = getattr(iface, e.info.name + suffix)
        return sig if e.index is None or suffix else sig[e.index]

    def addr(self, name: str, word: int = 0, live: bool = False) -> int:
        e = self.map[name]
        return (e.live_addr if live else e.addr) + 4 * word

    async def cycle(self, ctx, read: int | None = None, write: tuple[int, int] | None = None):
        """One bus cycle; returns r_data in the cycle after (the read's result, or 0)."""
        bus = self.bank.bus
        ctx.set(bus.r_stb, read is not None)
        ctx.set(bus.w_stb, write is not None)
        if read is not None:
            ctx.set(bus.addr, read // 4)
        if write is not None:
            ctx.set(bus.addr, write[0] // 4)
            ctx.set(bus.w_data, write[1])
        await ctx.tick()
        ctx.set(bus.r_stb, 0)
        ctx.set(bus.w_stb, 0)
        return ctx.get(bus.r_data)

    async def read(self, ctx, name: str, live: bool = False) -> int:
        e = self.map[name]
        value = 0
        for k in range(e.words):
            value |= await self.cycle(ctx, read=self.addr(name, k, live)) << 32 * k
        return value

    async def write(self, ctx, name: str, value: int) -> None:
        for k in range(self.map[name].words):
            await self.cycle(ctx, write=(self.addr(name, k), value >> 32 * k & 0xFFFF_FFFF))

    def check_ports(self, ctx, when: str) -> None:
        for name, sig in self.rw.items():
            assert ctx.get(sig) == self.model.live[name], f"{name} {when}"
        high = {name for name, sig in self.strobes.items() if ctx.get(sig)}
        assert high == self.model.strobes, when

    def run(self, testbench) -> None:
        sim = Simulator(self.bank)
        sim.add_clock(8e-9)
        sim.add_testbench(testbench)
        sim.run()


def test_reset_values_and_every_word() -> None:
    h = Harness(SMALL)

    async def tb(ctx):
        h.check_ports(ctx, "after reset")
        for addr in range(0, h.map.size, 4):
            assert await h.cycle(ctx, read=addr) == h.model.read(addr), hex(addr)
        assert ctx.get(h.port(h.map["ctl.mac"])) == 0x0123_4567_89AB
        assert ctx.get(h.port(h.map["cfg[1].lo"])) == 7
        assert await h.read(ctx, "ctl.table[1]") == 0x11
    h.run(tb)


def test_read_latency_is_one_cycle() -> None:
    h = Harness(SMALL)
    mode = h.addr("ctl.mode")

    async def tb(ctx):
        bus = h.bank.bus
        ctx.set(bus.addr, mode // 4)
        ctx.set(bus.r_stb, 1)
        assert ctx.get(bus.r_data) == 0            # not in the r_stb cycle itself
        await ctx.tick()
        ctx.set(bus.r_stb, 0)
        assert ctx.get(bus.r_data) == 5            # the cycle after
        await ctx.tick()
        assert ctx.get(bus.r_data) == 0            # and only then
    h.run(tb)


def test_rw_wo_ro_kinds() -> None:
    h = Harness(SMALL)

    async def tb(ctx):
        await h.write(ctx, "ctl.mode", 0xFFFF_FFFA)    # truncated to its 3 bits
        assert ctx.get(h.port(h.map["ctl.mode"])) == 2
        assert await h.read(ctx, "ctl.mode") == 2
        await h.write(ctx, "ctl.table[1]", 0x99)
        assert await h.read(ctx, "ctl.table[0]") == 0x11
        assert await h.read(ctx, "ctl.table[1]") == 0x99

        # wo: a one-cycle strobe per write, reads 0
        go = h.port(h.map["ctl.go"])
        await h.cycle(ctx, write=(h.addr("ctl.go"), 0))
        assert ctx.get(go) == 1
        await h.cycle(ctx)
        assert ctx.get(go) == 0
        assert await h.read(ctx, "ctl.go") == 0

        # ro: the input, whatever is written
        ctx.set(h.port(h.map["ctl.status"]), 0x55)
        ctx.set(h.port(h.map["ctl.counts[2]"]), 0xBEEF)
        await h.write(ctx, "ctl.status", 0)
        assert await h.read(ctx, "ctl.status") == 0x55
        assert await h.read(ctx, "ctl.counts[2]") == 0xBEEF
        assert await h.read(ctx, "ctl.counts[c]") == 0xBEEF
    h.run(tb)


def test_wide_values_go_live_whole() -> None:
    h = Harness(SMALL)
    mac, wide, fifo = (h.port(h.map[n]) for n in ("ctl.mac", "ctl.wide", "ctl.fifo"))
    fifo_read = h.port(h.map["ctl.fifo"], "_read")

    async def tb(ctx):
        # rw: the low word waits for the top word
        await h.cycle(ctx, write=(h.addr("ctl.mac"), 0xDDCC_BBAA))
        assert ctx.get(mac) == 0x0123_4567_89AB
        assert await h.read(ctx, "ctl.mac") == 0x0123_4567_89AB
        await h.cycle(ctx, write=(h.addr("ctl.mac", 1), 0xFFFF_1122))
        assert ctx.get(mac) == 0x1122_DDCC_BBAA

        # ro: reading the low word snapshots the rest, so the value never tears
        ctx.set(wide, 0x1111_1111_FFFF_FFFF)
        assert await h.cycle(ctx, read=h.addr("ctl.wide")) == 0xFFFF_FFFF
        ctx.set(wide, 0x1111_1112_0000_0000)
        assert await h.cycle(ctx, read=h.addr("ctl.wide", 1)) == 0x1111_1111

        # a read strobe pulses once, on the low word only
        ctx.set(fifo, 0xAB_1234_5678)
        assert await h.cycle(ctx, read=h.addr("ctl.fifo")) == 0x1234_5678
        assert ctx.get(fifo_read) == 1
        assert await h.cycle(ctx, read=h.addr("ctl.fifo", 1)) == 0xAB
        assert ctx.get(fifo_read) == 0
    h.run(tb)


def test_shadow_commit_is_atomic() -> None:
    h = Harness(SMALL)
    row = {n: h.port(h.map[f"cfg[1].{n}"]) for n in ("lo", "seq", "flag", "kill")}
    other = h.port(h.map["cfg[0].lo"])
    commit = h.port(h.map["cfg[1].commit"])
    new = {"lo": 0xCAFE_F00D, "seq": 0xABCD_0123_4567_89AB_CDEF, "flag": 1}

    async def tb(ctx):
        for name, value in new.items():
            for k in range(h.map[f"cfg[1].{name}"].words):
                await h.cycle(ctx, write=(h.addr(f"cfg[1].{name}", k),
                                          value >> 32 * k & 0xFFFF_FFFF))
                assert (ctx.get(row["lo"]), ctx.get(row["seq"]), ctx.get(row["flag"])) == \
                    (7, 0, 0), "a staged write went live"
        for name, value in new.items():
            assert await h.read(ctx, f"cfg[1].{name}") == value         # what was staged
            assert await h.read(ctx, f"cfg[1].{name}", live=True) == \
                (7 if name == "lo" else 0)                              # what is in force
        # immediate: live at once, no commit
        await h.write(ctx, "cfg[1].kill", 1)
        assert ctx.get(row["kill"]) == 1
        assert ctx.get(commit) == 0

        await h.cycle(ctx, write=(h.addr("cfg[1].commit"), 0))
        assert ctx.get(commit) == 1
        assert {n: ctx.get(row[n]) for n in new} == new, "all in the one cycle after commit"
        assert ctx.get(other) == 7, "another row's commit"
        await h.cycle(ctx)
        assert ctx.get(commit) == 0
        assert await h.read(ctx, "cfg[1].seq", live=True) == new["seq"]
    h.run(tb)


def test_unmapped_reads_zero_and_ignores_writes() -> None:
    h = Harness(SMALL)
    unmapped = sorted(set(range(0, h.map.size, 4)) - h.model.mapped())
    assert len(unmapped) > 10

    async def tb(ctx):
        rng = random.Random(1)
        for addr in unmapped:
            await h.cycle(ctx, write=(addr, rng.getrandbits(32)))
            h.check_ports(ctx, f"after a write to unmapped 0x{addr:x}")
        for addr in range(0, h.map.size, 4):
            assert await h.cycle(ctx, read=addr) == h.model.read(addr), hex(addr)
    h.run(tb)


def lockstep(hmap: Map, seed: int, ops: int) -> None:
    """Random bus cycles (writes, reads, idle cycles, changing inputs), each checked against
    the model: read data, every rw port, every strobe."""
    h = Harness(hmap)
    rng = random.Random(seed)
    mapped = sorted(h.model.mapped())
    commits = [h.addr(n) for n in h.strobes if n.endswith("commit")]
    ro = list(h.ro.values())

    def address() -> int:
        pick = rng.random()
        if pick < 0.1 and commits:
            return rng.choice(commits)
        if pick < 0.15:
            return rng.randrange(0, hmap.words) * 4
        return rng.choice(mapped)

    async def tb(ctx):
        for i in range(ops):
            kind = rng.choice(["read", "read", "write", "write", "idle", "input"])
            if kind == "input":
                e, sig = rng.choice(ro)
                value = rng.getrandbits(e.width)
                ctx.set(sig, value)
                h.model.inputs[e.name] = value
                kind = "idle"
            if kind == "read":
                addr = address()
                expected = h.model.read(addr)
                assert await h.cycle(ctx, read=addr) == expected, f"op {i}: read 0x{addr:x}"
            elif kind == "write":
                addr, value = address(), rng.choice([0, 0xFFFF_FFFF, rng.getrandbits(32)])
                h.model.write(addr, value)
                assert await h.cycle(ctx, write=(addr, value)) == 0
            else:
                h.model.idle()
                assert await h.cycle(ctx) == 0
            h.check_ports(ctx, f"after op {i} ({kind})")
    h.run(tb)


@pytest.mark.parametrize("seed", range(3))
def test_random_against_model(seed: int) -> None:
    lockstep(SMALL, seed, 1500)


def test_card_map_random_against_model() -> None:
    lockstep(CARD_MAP, 7, 400)


class Words:
    """A transport over a dump of the bank's words."""

    def __init__(self, words: dict[int, int]):
        self.words = words

    def read32(self, addr: int) -> int:
        return self.words[addr]

    def write32(self, addr: int, value: int) -> None:
        raise AssertionError("read only")

    def close(self) -> None:
        pass


def test_card_map_id_and_header_walk() -> None:
    h = Harness(CARD_MAP)
    words: dict[int, int] = {}

    async def tb(ctx):
        for addr in range(0, h.map.size, 4):
            words[addr] = await h.cycle(ctx, read=addr)
    h.run(tb)

    assert words[0] == MAGIC and words[0].to_bytes(4, "little") == b"TKNC"
    assert words[4] == CARD_MAP.version[0] << 16 | CARD_MAP.version[1]
    assert words[8] == CARD_MAP.hash == h.map.hash
    assert words == {a: h.model.read(a) for a in words}
    dev = Device(Words(words), h.map)
    dev.check()     # magic, version, hash, and every header where the JSON says
    found = [hd.id for hd in dev.headers()]
    assert found == [b.id for b in h.map.blocks.values() if b.id] == list(range(1, len(CARD_MAP.blocks)))
    assert [hd.addr for hd in dev.headers()] == [b.base for b in h.map.blocks.values() if b.id]
