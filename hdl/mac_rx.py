"""MAC receiver: GMII in, frame beats out.

Strips the preamble and SFD, checks the FCS (CRC-32) with `amaranth.lib.crc`, and detects runt
and oversize frames and the PHY's RX_ER. Every byte after the SFD, the FCS included, goes out
one cycle after it was on the pins (the input register), because the MAC cannot know which four
bytes are the FCS until RX_DV falls: the layers above find their ends from their own length
fields. When RX_DV falls the MAC sends the end beat carrying its verdict.
"""

from amaranth import Module, Signal
from amaranth.lib import crc, enum, wiring
from amaranth.lib.wiring import In, Out

from hdl.beats import Beat, beats
from hdl.formats import ETH_MAX_FRAME, ETH_MIN_FRAME, ETH_PREAMBLE, ETH_SFD, Drop

__all__ = ["GmiiRx", "MacRx"]

GmiiRx = wiring.Signature({"rxd": Out(8), "rx_dv": Out(1), "rx_er": Out(1)})


class MacRx(wiring.Component):
    """A byte on `gmii` in cycle k is on `source` in cycle k + LATENCY."""

    LATENCY = 1

    gmii: In(GmiiRx)
    source: Out(beats(Beat))
    # A data beat is on `source` now; a register (`hdl.feed` ANDs every block's).
    passing: Out(1)

    def elaborate(self, platform):
        m = Module()

        # The one register stage of the RX path: GMII inputs are registered at the pins.
        rxd, dv, er = Signal(8), Signal(), Signal()
        m.d.sync += [rxd.eq(self.gmii.rxd), dv.eq(self.gmii.rx_dv), er.eq(self.gmii.rx_er)]

        class State(enum.Enum, shape=2):
            IDLE = 0        # RX_DV low
            PREAMBLE = 1
            DATA = 2
            BAD = 3         # no SFD after the preamble: ignored until RX_DV falls

        state = Signal(State)
        length = Signal(range(ETH_MAX_FRAME + 2))   # saturates at ETH_MAX_FRAME + 1
        room = Signal()             # length < ETH_MAX_FRAME, kept as a register for the byte path
        phy_error = Signal()
        end, drop = Signal(), Signal(Drop)          # the end beat, registered
        # `passing` is what `dv & (state == DATA) & room` will be in the next cycle, so that it
        # is one flip-flop: as a function of those four registers it took two LUTs at the head
        # of the feed's byte valid, the small-table core's critical path at seed 2 (15516b9).
        # A byte follows the SFD, or a byte of the frame with room after it, and RX_DV stays up.
        # (Amaranth 0.5's EnumView has no `matches`: it is the Value's.)
        sfd_next = state.as_value().matches(State.IDLE, State.PREAMBLE) & (rxd == ETH_SFD)
        room_next = (state == State.DATA) & room & (length != ETH_MAX_FRAME - 1)
        m.d.sync += self.passing.eq(self.gmii.rx_dv & dv & (sfd_next | room_next))

        m.submodules.fcs = fcs = crc.catalog.CRC32_ETHERNET(data_width=8).create()
        # The byte goes out ungated (`hdl.beats`): the valid alone says when it is one.
        m.d.comb += [fcs.data.eq(rxd), self.source.payload.data.eq(rxd)]

        m.d.sync += end.eq(0)
        with m.If(dv):
            m.d.sync += phy_error.eq(phy_error | er)
            with m.Switch(state):
                with m.Case(State.IDLE, State.PREAMBLE):
                    with m.If(rxd == ETH_SFD):
                        m.d.sync += [state.eq(State.DATA), length.eq(0), room.eq(1)]
                        m.d.comb += fcs.start.eq(1)
                    with m.Elif(rxd == ETH_PREAMBLE):
                        m.d.sync += state.eq(State.PREAMBLE)
                    with m.Else():
                        m.d.sync += state.eq(State.BAD)
                with m.Case(State.DATA):
                    with m.If(length != ETH_MAX_FRAME + 1):
                        m.d.sync += length.eq(length + 1)
                    with m.If(length == ETH_MAX_FRAME - 1):
                        m.d.sync += room.eq(0)
                    # Beyond the longest legal frame nothing more is passed on.
                    with m.If(room):
                        m.d.comb += fcs.valid.eq(1)
        with m.Elif(state != State.IDLE):
            m.d.sync += [end.eq(1), state.eq(State.IDLE), phy_error.eq(0)]
            with m.If(phy_error):
                m.d.sync += drop.eq(Drop.MAC_PHY_ERROR)
            with m.Elif(state != State.DATA):
                m.d.sync += drop.eq(Drop.MAC_PREAMBLE)
            with m.Elif(length > ETH_MAX_FRAME):
                m.d.sync += drop.eq(Drop.MAC_OVERSIZE)
            with m.Elif(length < ETH_MIN_FRAME):
                m.d.sync += drop.eq(Drop.MAC_RUNT)
            with m.Elif(~fcs.match_detected):
                m.d.sync += drop.eq(Drop.MAC_FCS)
            with m.Else():
                m.d.sync += drop.eq(Drop.NONE)
        m.d.comb += self.source.valid.eq(self.passing)
        with m.If(end):
            m.d.comb += [self.source.valid.eq(1), self.source.payload.end.eq(1),
                         self.source.payload.drop.eq(drop)]

        return m
