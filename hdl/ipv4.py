"""IPv4 receiver: version and IHL (options skipped), header checksum, no fragments, protocol UDP,
total length consistent with the frame.

The checks on the fixed 20 bytes are made when the last header byte (options included)
arrives, the checksum's one cycle later from the registered sum (off the byte path); they
rank in the order of `Drop`. So no payload passes a bad header, except possibly the first UDP
header byte before the checksum verdict, which is harmless: UDP decides nothing before its 8th.
Whether the frame really held `total length` bytes is known only at its end; the verdict then
says so.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hdl.beats import Beat, IpBeat, be_layout, beats, forward_end
from hdl.copies import window
from hdl.formats import ETH_MAX_FRAME, FCS_LEN, IP_PROTO_UDP, Drop

__all__ = ["Ipv4Rx", "IPV4_HEADER"]

IPV4_HEADER = be_layout((
    ("version_ihl", 1), ("tos", 1), ("total_length", 2), ("ident", 2), ("flags_fragment", 2),
    ("ttl", 1), ("protocol", 1), ("checksum", 2), ("src", 4), ("dst", 4),
))
"""| bytes | field |
|---|---|
| 0 | version (high nibble), IHL in 32-bit words (low nibble) |
| 1 | DSCP/ECN |
| 2-3 | total length, header included |
| 4-5 | identification |
| 6-7 | flags (bit 13: MF), fragment offset (bits 12-0) |
| 8 | TTL |
| 9 | protocol (17 = UDP) |
| 10-11 | header checksum |
| 12-15 | source address |
| 16-19 | destination address |
| 20- | options, IHL*4 - 20 bytes |"""


class Ipv4Rx(wiring.Component):
    sink: In(beats(Beat))
    source: Out(beats(IpBeat))
    # This block passes its sink's data beats on now (`hdl.feed` ANDs every block's): from
    # registers only, and 0 while its end beat is out (reset by the end that sends it).
    passing: Out(1)

    def elaborate(self, platform):
        m = Module()
        beat = self.sink.payload
        count = Signal(range(ETH_MAX_FRAME + 1))    # bytes seen, padding and FCS included
        # The last 19 bytes (the first 19 at byte 19), shifted every cycle (`hdl.copies.window`)
        header = window(m, platform, beat.data, 19, "header")
        view = data.View(IPV4_HEADER, Cat(beat.data, header))   # valid at byte 19
        ihl = Signal(4)
        hlen = Signal(range(61))
        total = Signal(16)
        dst = Signal(32)
        early = Signal(Drop)        # the checks on the fixed header, made at byte 19
        # Ones'-complement sum of the header as 16-bit words, folded at the end.
        acc = Signal(21)
        inside = Signal()           # the next byte is payload: one register on the byte path
        reason = Signal(Drop)
        done = Signal()             # header complete

        checking = Signal()         # the cycle after the header: is the checksum right?
        add = Mux(count[0], beat.data, beat.data << 8)
        # The header is good when its ones'-complement sum is 0xFFFF. After one fold of the
        # 21-bit sum (at most 0x1001E), that is fold == 0xFFFF, or 0x1FFFE (0xFFFE + carry).
        fold = acc[:16] + acc[16:]
        sum_ok = (fold == 0xFFFF) | (fold == 0x1FFFE)

        # The checks on the fixed 20 bytes, in the order of `Drop`; meaningful at byte 19.
        fixed = Signal(Drop)
        with m.If((view.version_ihl[4:] != 4) | (ihl < 5)):
            m.d.comb += fixed.eq(Drop.IP_VERSION)
        with m.Elif(view.total_length < hlen + 8):
            m.d.comb += fixed.eq(Drop.IP_LENGTH)
        with m.Elif(view.flags_fragment[:14] != 0):        # MF or a fragment offset
            m.d.comb += fixed.eq(Drop.IP_FRAGMENT)
        with m.Elif(view.protocol != IP_PROTO_UDP):
            m.d.comb += fixed.eq(Drop.IP_PROTO)

        # The fields load at byte 19 whether or not a byte is there (one is, unless the frame
        # was cut there, and then they are not read): a frame's bytes are consecutive, and the
        # cut-through valid chain (`hdl.feed`) then reaches no wide enable.
        with m.If(count == 19):
            m.d.sync += [total.eq(view.total_length), dst.eq(view.dst)]
        with m.If(self.sink.valid & ~beat.end):
            m.d.sync += count.eq(count + 1)
            with m.If(count == 0):
                m.d.sync += [ihl.eq(beat.data[:4]),
                             hlen.eq(Mux(beat.data[:4] < 5, 20, beat.data[:4] * 4))]
            with m.If(~done):
                m.d.sync += acc.eq(acc + add)
            with m.If(count == 19):
                m.d.sync += early.eq(fixed)
            with m.If(~done & (count == hlen - 1)):
                m.d.sync += done.eq(1)
                first = Mux(count == 19, fixed, early)    # no options: the header ends now
                with m.If(first != Drop.NONE):
                    m.d.sync += reason.eq(first)
                with m.Else():
                    m.d.sync += [inside.eq(1), checking.eq(1)]  # total >= hlen + 8
            with m.If(inside & (count == total - 1)):
                m.d.sync += inside.eq(0)
            m.d.comb += self.source.valid.eq(inside)
        m.d.comb += [self.source.payload.data.eq(beat.data),     # ungated (`hdl.beats`)
                     self.passing.eq(inside)]
        m.d.comb += [
            self.source.payload.dst_addr.eq(dst),
            self.source.payload.payload_len.eq(total - hlen),
        ]
        # The checksum's adds and folds start from the complete sum in a register, one cycle
        # after the last header byte, instead of lengthening that byte's path. The first UDP
        # header byte may have gone on by then: harmless, UDP decides nothing before its 8th.
        with m.If(checking):
            m.d.sync += checking.eq(0)
            with m.If(~sum_ok):
                m.d.sync += [inside.eq(0), reason.eq(Drop.IP_CHECKSUM)]

        short = ~done | (count < total + FCS_LEN)
        with m.If(forward_end(m, self.sink, self.source,
                              Mux((reason == Drop.NONE) & short, Drop.IP_LENGTH, reason))):
            m.d.sync += [count.eq(0), inside.eq(0), reason.eq(Drop.NONE), early.eq(Drop.NONE),
                         done.eq(0), acc.eq(0)]
        return m
