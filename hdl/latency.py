"""Tick-to-trade latency counters: per kind of triggering message (`LATENCY_KINDS`: an add, or
a removal), the last, lowest and highest latency in cycles, how many, and a histogram with one
bin per cycle (the last bin: that many or more). A sample is the cycles from the triggering
message's last byte on the RX pins to its order's first byte on the TX stream; the host reads
the counters and converts cycles to ns at the clock the build closed timing at.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hdl.beats import beats
from hdl.formats import LATENCY_BINS, LATENCY_KINDS

__all__ = ["LatencySample", "KindStats", "LatencyCounters"]

_CYCLE_BITS = 16


class LatencySample(data.Struct):
    cycles: _CYCLE_BITS             # saturated
    kind: range(len(LATENCY_KINDS))


class KindStats(data.Struct):
    count: 32
    last: _CYCLE_BITS
    min: _CYCLE_BITS                # all ones until the first sample
    max: _CYCLE_BITS
    histogram: data.ArrayLayout(32, LATENCY_BINS)


class LatencyCounters(wiring.Component):
    sample: In(beats(LatencySample))
    stats: Out(data.ArrayLayout(KindStats, len(LATENCY_KINDS)),
               init=[{"min": (1 << _CYCLE_BITS) - 1}] * len(LATENCY_KINDS))

    def elaborate(self, platform):
        m = Module()
        s = self.sample.payload
        bin_ = Signal(range(LATENCY_BINS))
        m.d.comb += bin_.eq(Mux(s.cycles >= LATENCY_BINS - 1, LATENCY_BINS - 1, s.cycles))
        for kind, st in enumerate(self.stats):
            with m.If(self.sample.valid & (s.kind == kind)):
                m.d.sync += [
                    st.count.eq(st.count + 1),
                    st.last.eq(s.cycles),
                    st.min.eq(Mux(s.cycles < st.min, s.cycles, st.min)),
                    st.max.eq(Mux(s.cycles > st.max, s.cycles, st.max)),
                ]
                for b in range(LATENCY_BINS):
                    with m.If(bin_ == b):
                        m.d.sync += st.histogram[b].eq(st.histogram[b] + 1)
        return m
