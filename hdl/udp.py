"""UDP receive filter: passes the payload of datagrams to a subscribed group and port.

The subscription table is matched on (IPv4 destination, UDP destination port) when the 8-byte
header has arrived; the lowest matching row wins. The UDP length must equal the IPv4 payload
length. The checksum is not checked: Nasdaq sends 0 (none), and the Ethernet FCS covers the
payload.
"""

from amaranth import Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hdl.beats import IpBeat, Subscription, UdpBeat, be_layout, beats, forward_end
from hdl.copies import window
from hdl.formats import N_SUBSCRIPTIONS, Drop

__all__ = ["UdpFilter", "UDP_HEADER"]

UDP_HEADER = be_layout((("src_port", 2), ("dst_port", 2), ("length", 2), ("checksum", 2)))
"""| bytes | field |
|---|---|
| 0-1 | source port |
| 2-3 | destination port |
| 4-5 | length, header included |
| 6-7 | checksum (0 = none) |"""


class UdpFilter(wiring.Component):
    subs: In(data.ArrayLayout(Subscription, N_SUBSCRIPTIONS))
    sink: In(beats(IpBeat))
    source: Out(beats(UdpBeat))
    # This block passes its sink's data beats on now (`hdl.feed` ANDs every block's): from
    # registers only, and 0 while its end beat is out (reset by the end that sends it).
    passing: Out(1)

    def elaborate(self, platform):
        m = Module()
        beat = self.sink.payload
        index = Signal(range(9))                    # header byte index, saturating at 8
        # Shifts every cycle (`hdl.copies.window`): a frame's bytes are consecutive (`hdl.eth`).
        header = window(m, platform, beat.data, 7, "header")
        view = data.View(UDP_HEADER, Cat(beat.data, header))      # valid at byte 7
        sub = Signal(range(N_SUBSCRIPTIONS))
        passing = Signal()
        reason = Signal(Drop)

        hits = Cat(s.valid & (s.group == beat.dst_addr) & (s.port == view.dst_port)
                   for s in self.subs)
        with m.If(self.sink.valid & ~beat.end):
            with m.If(index != 8):
                m.d.sync += index.eq(index + 1)
            with m.If(index == 7):
                with m.If(hits == 0):
                    m.d.sync += reason.eq(Drop.UDP_NO_SUB)
                with m.Elif(view.length != beat.payload_len):
                    m.d.sync += reason.eq(Drop.UDP_LENGTH)
                with m.Else():
                    m.d.sync += passing.eq(1)
                for i in reversed(range(N_SUBSCRIPTIONS)):      # the lowest row wins
                    with m.If(hits[i]):
                        m.d.sync += sub.eq(i)
            m.d.comb += self.source.valid.eq(passing)
        m.d.comb += [self.source.payload.data.eq(beat.data), self.source.payload.sub.eq(sub),
                     self.passing.eq(passing)]
        with m.If(forward_end(m, self.sink, self.source, reason)):
            m.d.sync += [index.eq(0), passing.eq(0), reason.eq(Drop.NONE)]
        return m
