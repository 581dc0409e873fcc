"""MAC transmitter: frame beats in, GMII out.

Wraps a frame in preamble and SFD, pads it to the minimum size, appends the FCS (CRC-32, the
same `amaranth.lib.crc` catalog entry MacRx checks) and keeps the inter-frame gap.

Latency is what this block is for: an order frame must reach the wire as early as possible. So
the MAC takes a frame's first beat in the very cycle it is offered when the line is idle, and
puts the first preamble byte on the pins the next cycle (`LATENCY`). The frame's own bytes
cannot go out before the 8 bytes of preamble and SFD, and asking the source to hold its first
beat for 8 cycles would only push the wait upstream; instead the MAC keeps taking one beat per
cycle and delays the bytes through an 8-stage shift register (`DATA_LATENCY`). That makes the
source contract simple and strict: once the first beat of a frame is taken, the source offers
one beat every cycle until `last`. `ready` stays high until then and falls after `last` until
the gap is over.

A cycle without a beat inside a frame is an *underrun*: the wire cannot wait. The MAC sends
0x00 with TX_ER in that byte time and keeps TX_ER up to the end of the frame (FCS included), so
the link partner's PHY reports the frame as errored and its MAC drops it (MacRx: MAC_PHY_ERROR);
it keeps taking the source's later beats until `last` so that the source and the MAC stay in
step, and counts the frame once in `underruns`. A byte time lost to an underrun still counts
towards the frame's length and FCS, exactly as if it were a byte of 0x00.

The MAC does not check the maximum frame length: the order builder's frames are short, and the
host's injected frames are the host driver's to bound.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import crc, data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.beats import TxBeat
from hdl.formats import ETH_IFG, ETH_MIN_FRAME, ETH_PREAMBLE, ETH_PREAMBLE_LEN, ETH_SFD, FCS_LEN

__all__ = ["GmiiTx", "MacTx"]

GmiiTx = wiring.Signature({"txd": Out(8), "tx_en": Out(1), "tx_er": Out(1)})

_HEAD = ETH_PREAMBLE_LEN + 1            # preamble and SFD, in byte times
_MIN_DATA = ETH_MIN_FRAME - FCS_LEN     # bytes before the FCS, padding included


class _Slot(data.Struct):
    """One stage of the delay line: a beat, or the byte time of an underrun (full=0)."""
    data: 8
    last: 1
    full: 1


class MacTx(wiring.Component):
    """The first beat of a frame, taken from `sink` in cycle k (the line idle: `sink.ready` was
    high), puts the first preamble byte on `gmii` in cycle k + LATENCY and the beat's own byte
    in cycle k + DATA_LATENCY; every later byte follows one cycle after the one before. After
    the last FCS byte the line stays idle ETH_IFG cycles, and `sink.ready` rises again in the
    last of them, so that back-to-back frames are exactly ETH_IFG idle cycles apart.

    `frames` counts the frames sent (underrun ones included) and `underruns` the frames spoiled
    by an underrun; both count when the frame's last FCS byte is sent and wrap at 2**32."""

    LATENCY = 1
    DATA_LATENCY = LATENCY + _HEAD

    sink: In(stream.Signature(TxBeat))
    gmii: Out(GmiiTx)
    frames: Out(32)
    underruns: Out(32)

    def elaborate(self, platform):
        m = Module()

        class State(enum.Enum, shape=3):
            IDLE = 0        # the gap is over: a frame may start
            PREAMBLE = 1    # preamble and SFD
            DATA = 2
            PAD = 3
            FCS = 4
            GAP = 5

        # The FSM decides in each cycle what the pins show in the next: the outputs are
        # registers, so nothing after them adds to the PHY's input timing.
        state = Signal(State)
        count = Signal(range(max(_HEAD, FCS_LEN, ETH_IFG)))    # byte times within a state
        short = Signal(range(_MIN_DATA + 1))    # bytes still needed to reach the minimum size
        spoiled = Signal()                      # an underrun in this frame: TX_ER to the end
        taking = Signal()                       # first beat taken, `last` not yet

        starting = Signal()
        m.d.comb += [
            self.sink.ready.eq(taking | (state == State.IDLE)),
            starting.eq((state == State.IDLE) & self.sink.valid),
        ]
        with m.If(self.sink.valid & self.sink.ready):
            m.d.sync += taking.eq(~self.sink.payload.last)

        # The delay line shifts every cycle; a stage is full only for a beat taken.
        line = [Signal(_Slot, name=f"line{i}") for i in range(_HEAD)]
        m.d.sync += [line[0].data.eq(self.sink.payload.data),
                     line[0].last.eq(self.sink.payload.last),
                     line[0].full.eq(self.sink.valid & self.sink.ready)]
        m.d.sync += [after.eq(before) for before, after in zip(line, line[1:], strict=False)]
        head = line[-1]

        m.submodules.fcs = fcs = crc.catalog.CRC32_ETHERNET(data_width=8).create()

        txd, tx_en, tx_er = self.gmii.txd, self.gmii.tx_en, self.gmii.tx_er
        with m.Switch(state):
            with m.Case(State.IDLE):
                m.d.sync += [tx_en.eq(0), tx_er.eq(0)]
                with m.If(starting):
                    m.d.sync += [state.eq(State.PREAMBLE), count.eq(1), tx_en.eq(1),
                                 txd.eq(ETH_PREAMBLE), spoiled.eq(0), short.eq(_MIN_DATA)]
            with m.Case(State.PREAMBLE):
                m.d.comb += fcs.start.eq(1)
                m.d.sync += [count.eq(count + 1), txd.eq(ETH_PREAMBLE)]
                with m.If(count == _HEAD - 1):
                    m.d.sync += [state.eq(State.DATA), txd.eq(ETH_SFD)]
            with m.Case(State.DATA):
                # `head` is the beat taken DATA_LATENCY - 1 cycles ago, or an underrun.
                byte, error = Signal(8), Signal()
                m.d.comb += [byte.eq(Mux(head.full, head.data, 0)), error.eq(spoiled | ~head.full),
                             fcs.valid.eq(1), fcs.data.eq(byte)]
                m.d.sync += [txd.eq(byte), tx_er.eq(error), spoiled.eq(error)]
                with m.If(short != 0):
                    m.d.sync += short.eq(short - 1)
                with m.If(head.full & head.last):
                    m.d.sync += count.eq(0)
                    m.d.sync += state.eq(Mux(short > 1, State.PAD, State.FCS))
            with m.Case(State.PAD):
                m.d.comb += [fcs.valid.eq(1), fcs.data.eq(0)]
                m.d.sync += [txd.eq(0), short.eq(short - 1)]
                with m.If(short == 1):
                    m.d.sync += state.eq(State.FCS)
            with m.Case(State.FCS):
                # The CRC register holds every byte sent since the SFD; Ethernet sends it least
                # significant byte first, which is the catalog's (reflected) output order.
                m.d.sync += [txd.eq(fcs.crc.word_select(count[:2], 8)), count.eq(count + 1)]
                with m.If(count == FCS_LEN - 1):
                    m.d.sync += [state.eq(State.GAP), count.eq(0),
                                 self.frames.eq(self.frames + 1),
                                 self.underruns.eq(self.underruns + spoiled)]
            with m.Case(State.GAP):
                m.d.sync += [tx_en.eq(0), tx_er.eq(0), count.eq(count + 1)]
                with m.If(count == ETH_IFG - 1):
                    m.d.sync += state.eq(State.IDLE)

        return m
