"""A block RAM registered on every side: `read_data` holds the entry at `read_addr` of four
cycles before, and a write lands a cycle after it is asked for: a read addressed the cycle after
the write was asked for, or later, sees it (one addressed in the write's own cycle may not).

Read: the address, a copy beside each block (cycle 1); the block's own address register (2);
the block's own output register (3); a register in the fabric (4).

Why the address copies: the order table's blocks fill the chip's block RAM rows, and the
address to the farthest of them was the longest routed path of every 16,384-entry table (10.0-10.7
ns, 8.6 ns of it wire; docs/book-timing.md, seventh session). Each block has its own copy of the
address (`hdl.copies`, which synthesis keeps apart), so nextpnr can place each copy between the
address's source and its block, and the wire is crossed in two cycles. The write port has the
same: the write enable of one way, decoded from the place, was the routed critical path of
2 x 2048 x 4 once the reads were registered (109.1-109.7 MHz, 6 ns of wire to the farthest
block's WEA; eleventh session).

Why the block's output register: without it an ECP5 block RAM's clock-to-out is 4.26 ns (with
it, 0.72; measured by nextpnr), and the order table's ways sit all over the chip's block RAM
rows. Yosys 0.70's `synth_ecp5` does not put a register after the memory into the DP16KD's own
output register (REGMODE=OUTREG): only a plugin (yosys_ecp5_infer_bram_outreg) does, and YoWASP
loads no plugins. So on ECP5 this instantiates DP16KD itself, with both output registers on:
512 x 36 (the pseudo dual-port mapping of Yosys' techlibs/lattice/brams_map_16kd.v: port A
writes with its four byte enables on ADA[3:0], port B reads, the 36 bits on DOA then DOB) for up
to 512 entries, 1,024 x 18 and 2,048 x 9 (true dual port: A writes, B reads; at 18 bits
ADA0-1 are byte enables that carry the write enable, as Yosys maps a 1,024 x 18 memory,
checked 2026-11-23) for up to 1,024 and 2,048.

Why the fabric register after it: at 2,048 x 9 a way's entry is 16 blocks spread over the block
RAM rows, and the wire from the farthest of them to the way's compare (3.8-5.0 ns) joined the
compare's six LUTs in one cycle (2 x 2048 x 4: 102.9 MHz; ninth session). A register between
them lets nextpnr cross that wire in a cycle of its own.

Anywhere else (simulation, Verilator), and on ECP5 for a deeper memory, it is the same
behaviour in plain Amaranth: the registers around a memory with a synchronous read port.
"""

from amaranth import Cat, ClockSignal, Const, Instance, Module, Signal, Value
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hdl.copies import copies, is_ecp5

__all__ = ["RegisteredRam"]

# DP16KD shapes used here: entries -> bits per entry (36 bits is its pseudo dual-port mode).
EBR_MODES = {512: 36, 1024: 18, 2048: 9}
EBR_WIDTH = EBR_MODES[512]


class RegisteredRam(wiring.Component):
    """`depth` entries of `shape`: a write port (a cycle to land), a read port (four cycles)."""
    LATENCY = 4

    def __init__(self, shape, depth: int):
        self._shape, self._depth = shape, depth
        super().__init__({
            "read_addr": In(range(depth)),
            "read_data": Out(shape),
            "write_addr": In(range(depth)),
            "write_data": In(shape),
            "write_en": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        width = len(Value.cast(self.write_data))
        abits = len(self.write_addr)
        rd_out = Signal(width)
        m.d.sync += self.read_data.eq(rd_out)             # the fabric register
        mode = next((d for d in sorted(EBR_MODES) if self._depth <= d), None)
        if is_ecp5(platform) and mode is not None:
            # Bit lists, one per pin. A block of `mode` entries of `bits_per` bits takes its
            # address on pins 13 down to 14 - log2(mode); the pins below are 0 or, at 36 and
            # 18 bits wide, port A's byte enables, which carry the write enable (at 36, WEA
            # stays 1). That is Yosys' own mapping (techlibs/lattice/brams_map_16kd.v; 2,048 x
            # 9 and 1,024 x 18 memories checked by synthesising them, 2026-11-23: at 9, ADx0-2
            # = 0, DIA0-8 in, DOB0-8 out; at 18, ADA0-1 = WEA = the enable, ADx2-3 = 0, DIA0-17
            # in, DOB0-17 out).
            bits_per = EBR_MODES[mode]
            low = 14 - ceil_log2(mode)

            def bits(value, n):
                v = Value.cast(value)
                return [v[i] for i in range(len(v))] + [Const(0, 1)] * (n - len(v))
            blocks = -(-width // bits_per)
            wdata = bits(self.write_data, blocks * bits_per)
            rdata = Signal(blocks * bits_per)
            wide = bits_per == EBR_WIDTH
            # The byte enables: 4 at 36 wide (all of `low` but one pin), 2 at 18, none at 9.
            enables = {36: 4, 18: 2}.get(bits_per, 0)
            for k, ra in enumerate(copies(m, platform, self.read_addr, blocks,
                                          "read_addr_copy")):
                # This block's write: its enable, the address and its own data bits.
                (wq,) = copies(m, platform, Cat(self.write_en, self.write_addr,
                                                *wdata[k * bits_per:(k + 1) * bits_per]),
                               1, f"write{k}_copy")
                we, di = wq[0], [wq[1 + abits + i] for i in range(bits_per)]
                waddr = ([we] * enables + [Const(0, 1)] * (low - enables)
                         + bits(wq[1:1 + abits], 14 - low))
                raddr = [Const(0, 1)] * low + bits(ra, 14 - low)
                do = rdata[k * bits_per:(k + 1) * bits_per]
                ports = {f"i_ADA{i}": waddr[i] for i in range(14)}
                ports |= {f"i_ADB{i}": raddr[i] for i in range(14)}
                if wide:    # pseudo dual port: 36 bits in on DIA and DIB, out on DOA and DOB
                    ports |= {f"i_DIA{i}": di[i] for i in range(18)}
                    ports |= {f"i_DIB{i}": di[18 + i] for i in range(18)}
                    ports |= {f"o_DOA{i}": do[i] for i in range(18)}
                    ports |= {f"o_DOB{i}": do[18 + i] for i in range(18)}
                else:       # true dual port: port A writes, port B reads (18 or 9 bits)
                    ports |= {f"i_DIA{i}": di[i] for i in range(bits_per)}
                    ports |= {f"o_DOB{i}": do[i] for i in range(bits_per)}
                ports |= {f"i_CS{p}{i}": 0 for p in "AB" for i in range(3)}
                m.submodules[f"ebr{k}"] = Instance(
                    "DP16KD",
                    p_DATA_WIDTH_A=bits_per, p_DATA_WIDTH_B=bits_per,
                    p_REGMODE_A="OUTREG", p_REGMODE_B="OUTREG",
                    p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC",
                    p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
                    p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL", p_GSR="DISABLED",
                    i_CLKA=ClockSignal(), i_CLKB=ClockSignal(),
                    i_WEA=1 if wide else we, i_CEA=1, i_OCEA=1, i_RSTA=0,
                    i_WEB=0, i_CEB=1, i_OCEB=1, i_RSTB=0,
                    **ports)
            m.d.comb += rd_out.eq(rdata[:width])
        else:
            mem = memory.Memory(shape=width, depth=self._depth, init=[])
            m.submodules.mem = mem
            rd, wr = mem.read_port(), mem.write_port()
            (read_addr,) = copies(m, platform, self.read_addr, 1, "read_addr_copy")
            (wq,) = copies(m, platform, Cat(self.write_en, self.write_addr, self.write_data), 1,
                           "write_copy")
            m.d.comb += [rd.addr.eq(read_addr), wr.en.eq(wq[0]), wr.addr.eq(wq[1:1 + abits]),
                         wr.data.eq(wq[1 + abits:])]
            m.d.sync += rd_out.eq(rd.data)
        return m
