"""A block RAM whose read address is registered beside the block and whose read data is registered
inside it: `read_data` holds the entry at `read_addr` of three cycles before (as the memory was
after that cycle's write).

Why the address register: the order table's blocks fill the chip's block RAM rows, and the
address to the farthest of them was the longest routed path of every 16,384-entry table (10.0-10.7
ns, 8.6 ns of it wire; docs/book-timing.md, seventh session). Each block has its own copy of the
address (`hdl.copies`, which synthesis keeps apart), so nextpnr can place each copy between the
address's source and its block, and the wire is crossed in two cycles.

Why the data register: an ECP5 block RAM's clock-to-out without its output register is a large
part of a 125 MHz cycle (tools/depth.py models it as 3.5 ns), and the order table's 32 ways sit
all over the chip's block RAM rows, so their entries reached the logic that compares them late.
A register after the memory in the fabric does not help: nextpnr places it where its loads pull
it, half a chip from its block RAM (measured 2026-11-22). Yosys 0.70's `synth_ecp5` does not put
such a register into the DP16KD's own output register (REGMODE=OUTREG): only a plugin
(yosys_ecp5_infer_bram_outreg) does, and YoWASP loads no plugins. So on ECP5 this instantiates
DP16KD itself, 36 bits wide (the pseudo dual-port mapping of Yosys'
techlibs/lattice/brams_map_16kd.v: port A writes with its four byte enables on ADA[3:0], port B
reads, the 36 bits on DOA then DOB), with both output registers on. Anywhere else (simulation,
Verilator), and on ECP5 for a memory deeper than one block's 512 entries, it is the same
behaviour in plain Amaranth: an address register, a memory with a synchronous read port, and a
register after it.

Why not the output register at 2,048 deep too (DP16KD as 2,048 x 9, tried 2026-11-23,
docs/book-timing.md "Ninth session"): there a way's entry is 16 blocks spread over the block
RAM rows, and its compare sits among them. With the block's own register, the wire from the
farthest block to the compare (3.8-5.0 ns) joined the compare's six LUTs in one cycle and led
2 x 2048 x 4: 102.9 MHz at seed 1, against 108.9 with the fabric register, which nextpnr can
place on the way. At seed 2, 52,000 arcs were still unrouted after 2,256 s, where the fabric
register's run had finished in 1,491 s.
"""

from amaranth import ClockSignal, Const, Instance, Module, Signal, Value
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from hdl.copies import copies, is_ecp5

__all__ = ["RegisteredRam"]

EBR_DEPTH, EBR_WIDTH = 512, 36      # DP16KD as 512 x 36


class RegisteredRam(wiring.Component):
    """`depth` entries of `shape`: one write port, one read port with three cycles of latency."""
    LATENCY = 3

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
        rd_out = Signal(width)
        m.d.comb += self.read_data.eq(rd_out)
        if is_ecp5(platform) and self._depth <= EBR_DEPTH:
            # Bit lists, one per pin. Address bits 5-13 of a 512 x 36 block carry the set; port
            # A's bits 0-3 are its byte enables and carry the write enable (WEA stays 1), as
            # Yosys maps it.
            def bits(value, n):
                v = Value.cast(value)
                return [v[i] for i in range(len(v))] + [Const(0, 1)] * (n - len(v))
            waddr = [self.write_en] * 4 + [Const(0, 1)] + bits(self.write_addr, 9)
            wdata = bits(self.write_data, width + -width % EBR_WIDTH)
            rdata = Signal(len(wdata))
            blocks = len(wdata) // EBR_WIDTH
            for k, ra in zip(range(0, width, EBR_WIDTH),
                             copies(m, platform, self.read_addr, blocks, "read_addr_copy"),
                             strict=True):
                raddr = [Const(0, 1)] * 5 + bits(ra, 9)
                di, do = wdata[k:k + EBR_WIDTH], rdata[k:k + EBR_WIDTH]
                ports = {f"i_ADA{i}": waddr[i] for i in range(14)}
                ports |= {f"i_ADB{i}": raddr[i] for i in range(14)}
                ports |= {f"i_DIA{i}": di[i] for i in range(18)}
                ports |= {f"i_DIB{i}": di[18 + i] for i in range(18)}
                ports |= {f"o_DOA{i}": do[i] for i in range(18)}
                ports |= {f"o_DOB{i}": do[18 + i] for i in range(18)}
                ports |= {f"i_CS{p}{i}": 0 for p in "AB" for i in range(3)}
                m.submodules[f"ebr{k // EBR_WIDTH}"] = Instance(
                    "DP16KD",
                    p_DATA_WIDTH_A=EBR_WIDTH, p_DATA_WIDTH_B=EBR_WIDTH,
                    p_REGMODE_A="OUTREG", p_REGMODE_B="OUTREG",
                    p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC",
                    p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
                    p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL", p_GSR="DISABLED",
                    i_CLKA=ClockSignal(), i_CLKB=ClockSignal(),
                    i_WEA=1, i_CEA=1, i_OCEA=1, i_RSTA=0,
                    i_WEB=0, i_CEB=1, i_OCEB=1, i_RSTB=0,
                    **ports)
            m.d.comb += rd_out.eq(rdata[:width])
        else:
            mem = memory.Memory(shape=width, depth=self._depth, init=[])
            m.submodules.mem = mem
            rd, wr = mem.read_port(), mem.write_port()
            (read_addr,) = copies(m, platform, self.read_addr, 1, "read_addr_copy")
            m.d.comb += [rd.addr.eq(read_addr), wr.addr.eq(self.write_addr),
                         wr.data.eq(self.write_data), wr.en.eq(self.write_en)]
            m.d.sync += rd_out.eq(rd.data)
        return m
