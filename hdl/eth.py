"""Ethernet receive filter: destination MAC, zero or one 802.1Q tag, EtherType IPv4.

Passes the Ethernet payload of frames addressed to our unicast MAC or to the multicast MAC of a
subscribed group. The payload starts at byte 14, or 18 after a VLAN tag (any VLAN id).
"""

from amaranth import Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hdl.beats import Beat, Subscription, be_layout, beats, forward_end
from hdl.copies import window
from hdl.formats import ETHERTYPE_IPV4, ETHERTYPE_VLAN, N_SUBSCRIPTIONS, Drop, multicast_mac

__all__ = ["EthFilter", "ETH_HEADER", "VLAN_HEADER"]

ETH_HEADER = be_layout((("dst", 6), ("src", 6), ("ethertype", 2)))
"""| bytes | field |
|---|---|
| 0-5 | destination MAC |
| 6-11 | source MAC |
| 12-13 | EtherType (0x8100: an 802.1Q tag follows) |"""

VLAN_HEADER = be_layout((("dst", 6), ("src", 6), ("tpid", 2), ("tci", 2), ("ethertype", 2)))
"""| bytes | field |
|---|---|
| 0-11 | destination and source MAC |
| 12-13 | TPID 0x8100 |
| 14-15 | TCI (priority, VLAN id) |
| 16-17 | EtherType |"""


class EthFilter(wiring.Component):
    own_mac: In(48)
    subs: In(data.ArrayLayout(Subscription, N_SUBSCRIPTIONS))
    sink: In(beats(Beat))
    source: Out(beats(Beat))
    # This block passes its sink's data beats on now (`hdl.feed` ANDs every block's): from
    # registers only, and 0 while its end beat is out (reset by the end that sends it).
    passing: Out(1)

    def elaborate(self, platform):
        m = Module()
        beat = self.sink.payload
        index = Signal(range(19))                   # header byte index, saturating at 18
        # The bytes before the current one. The header shifts every cycle, not only on a byte
        # (`hdl.copies.window`): a frame's bytes come on consecutive cycles, so at each `index`
        # it holds the frame's bytes before it, and the cut-through valid chain (`hdl.feed`)
        # does not reach its 136 enables.
        header = window(m, platform, beat.data, 17, "header")
        view = data.View(VLAN_HEADER, Cat(beat.data, header))  # complete at byte 17
        short = data.View(ETH_HEADER, Cat(beat.data, header)[:8 * 14])  # at byte 13
        dst_ok = Signal()
        passing = Signal()
        reason = Signal(Drop)

        def accept(ethertype):
            with m.If(~dst_ok):
                m.d.sync += reason.eq(Drop.ETH_DST)
            with m.Elif(ethertype != ETHERTYPE_IPV4):
                m.d.sync += reason.eq(Drop.ETH_TYPE)
            with m.Else():
                m.d.sync += passing.eq(1)

        with m.If(self.sink.valid & ~beat.end):
            with m.If(index != 18):
                m.d.sync += index.eq(index + 1)
            # The destination is complete after byte 5; compare once, off the byte path.
            with m.If(index == 6):
                dst = header[:48]
                m.d.sync += dst_ok.eq((dst == self.own_mac) | Cat(
                    self.subs[i].valid & (dst == (multicast_mac(0) | self.subs[i].group[:23]))
                    for i in range(N_SUBSCRIPTIONS)).any())
            with m.If(index == 13):
                with m.If(short.ethertype != ETHERTYPE_VLAN):
                    accept(short.ethertype)
            with m.If(index == 17):
                with m.If(view.tpid == ETHERTYPE_VLAN):
                    accept(view.ethertype)
            m.d.comb += self.source.valid.eq(passing)
        m.d.comb += [self.source.payload.data.eq(beat.data),     # ungated (`hdl.beats`)
                     self.passing.eq(passing)]
        with m.If(forward_end(m, self.sink, self.source, reason)):
            m.d.sync += [index.eq(0), passing.eq(0), reason.eq(Drop.NONE)]
        return m
