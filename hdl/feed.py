"""The feed handler: GMII in, decoded ITCH 5.0 messages out, one byte per cycle, never stalling.

    gmii -> MacRx -> EthFilter -> Ipv4Rx -> UdpFilter -> MoldUdp64Rx -> ItchDecoder -> message
                                                              |-> gap        |-> verdict, head

Each block passes payload bytes through combinationally, so the whole path has the MAC's
input register and the decoder's output register: a message's struct is valid 2 cycles after
its last byte was on the pins. A byte is valid where every block before it passes it on
(`passing`, registers), and end beats go one block a cycle (`hdl.beats.forward_end`).
The host writes the subscription table (at run time) and our MAC; every drop reason, every
message type, good frames and gaps have a counter.
"""

from amaranth import Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hdl.beats import Subscription, beats
from hdl.eth import EthFilter
from hdl.formats import ITCH_TYPES, N_SUBSCRIPTIONS, Drop
from hdl.ipv4 import Ipv4Rx
from hdl.itch import ItchDecoder, ItchHead, ItchMessage, Verdict
from hdl.mac_rx import GmiiRx, MacRx
from hdl.moldudp64 import GapReport, MoldUdp64Rx
from hdl.udp import UdpFilter

__all__ = ["FeedHandler", "SubscriptionWrite", "Counters"]


class SubscriptionWrite(data.Struct):
    index: range(N_SUBSCRIPTIONS)
    row: Subscription


Counters = wiring.Signature({
    "frames_ok": Out(32),
    "drops": Out(data.ArrayLayout(32, len(Drop))),     # indexed by Drop; [0] unused
    "messages_by_type": Out(data.ArrayLayout(32, len(ITCH_TYPES))),   # in ITCH_TYPES order
    "gaps": Out(32),
})


class FeedHandler(wiring.Component):
    LATENCY = ItchDecoder.LATENCY

    gmii: In(GmiiRx)
    own_mac: In(48)
    sub_write: In(beats(SubscriptionWrite))
    message: Out(beats(ItchMessage))
    head: Out(beats(ItchHead))
    early_price: Out(32)        # see ItchDecoder.early_price
    early_ref: Out(64)          # see ItchDecoder.early_ref
    early_d: Out(1)
    early_af: Out(1)
    early_stock: Out(64)        # see ItchDecoder.early_stock
    verdict: Out(beats(Verdict))
    gap: Out(beats(GapReport))
    counters: Out(Counters)
    cycle: Out(48)              # free-running; a message's rx_cycle is on this clock

    def elaborate(self, platform):
        m = Module()
        m.submodules.mac = mac = MacRx()
        m.submodules.eth = eth = EthFilter()
        m.submodules.ipv4 = ipv4 = Ipv4Rx()
        m.submodules.udp = udp = UdpFilter()
        m.submodules.mold = mold = MoldUdp64Rx()
        m.submodules.itch = itch = ItchDecoder()

        cycle = self.cycle
        m.d.sync += cycle.eq(cycle + 1)

        subs = Signal(data.ArrayLayout(Subscription, N_SUBSCRIPTIONS))
        with m.If(self.sub_write.valid):
            m.d.sync += subs[self.sub_write.payload.index].eq(self.sub_write.payload.row)
        for i in range(N_SUBSCRIPTIONS):
            m.d.sync += mold.sub_written[i].eq(
                self.sub_write.valid & (self.sub_write.payload.index == i))

        wiring.connect(m, wiring.flipped(self.gmii), mac.gmii)
        # Each block's data beats are valid where every block before it passes them: one AND
        # of their `passing` registers, formed for each block at once. Taken from each
        # block's `source.valid`, it is the same value (end beats apart, which `end` carries)
        # but a chain, one block after the other, each hop where its block sits: from the MAC
        # into the ITCH decoder's `valid` it led the core's first complete route (10.38 ns,
        # 7.5 of it wire; docs/book-timing.md, "Nineteenth session").
        chain = [mac, eth, ipv4, udp, mold, itch]
        for k in range(1, len(chain)):
            before, block = chain[k - 1], chain[k]
            m.d.comb += [
                block.sink.payload.eq(before.source.payload),
                block.sink.valid.eq(before.source.payload.end
                                    | Cat(b.passing for b in chain[:k]).all()),
            ]
        m.d.comb += [
            eth.own_mac.eq(self.own_mac),
            eth.subs.eq(subs), udp.subs.eq(subs), mold.subs.eq(subs),
            itch.cycle.eq(cycle),
        ]
        wiring.connect(m, itch.message, wiring.flipped(self.message))
        wiring.connect(m, itch.head, wiring.flipped(self.head))
        m.d.comb += [self.early_price.eq(itch.early_price), self.early_d.eq(itch.early_d),
                     self.early_af.eq(itch.early_af), self.early_ref.eq(itch.early_ref),
                     self.early_stock.eq(itch.early_stock)]
        wiring.connect(m, itch.verdict, wiring.flipped(self.verdict))
        wiring.connect(m, mold.gap, wiring.flipped(self.gap))

        c = self.counters
        m.d.comb += c.messages_by_type.eq(itch.by_type)
        with m.If(itch.verdict.valid):
            with m.If(itch.verdict.payload.drop == Drop.NONE):
                m.d.sync += c.frames_ok.eq(c.frames_ok + 1)
            for reason in Drop:
                if reason is not Drop.NONE:
                    with m.If(itch.verdict.payload.drop == reason):
                        m.d.sync += c.drops[reason].eq(c.drops[reason] + 1)
        with m.If(mold.gap.valid):
            m.d.sync += c.gaps.eq(c.gaps + 1)
        return m
