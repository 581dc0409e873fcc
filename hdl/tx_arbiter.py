"""TX arbiter: order frames first, host frames when no order is waiting.

The card sends two kinds of frames on one port: the orders its own pipeline builds, where every
cycle is money, and frames the host injects (session traffic, ARP, whatever the host stack
needs), which can wait. The arbiter picks between whole frames only: the MAC cannot interleave
two frames, so once a frame's first beat is taken the arbiter stays on that input until its
`last` beat (the owner, a register). At a frame boundary the choice is combinational on the
inputs' `valid`, so an order offered to an idle line passes straight through to the MAC in the
same cycle (`LATENCY = 0`), and the choice is made afresh every cycle until the MAC takes a beat.

Priority cannot preempt: a host frame in progress is never cut (cutting it would spoil it on
the wire, and the order would still have to wait for the end of the spoiled frame and a gap),
so an order that arrives during a host frame waits for at most the rest of that one host frame
and the inter-frame gap after it. Orders always win at a boundary, so host frames get the line
only while no order is waiting: a steady stream of orders starves the host, on purpose.

`lib.stream` asks a source to hold its payload from the cycle it raises `valid` until the
transfer. The arbiter's source does not: while the MAC keeps `ready` low in the gap, a waiting
host frame's first beat is replaced by an order's as soon as one is offered. That is the
priority rule itself, and MacTx looks at a beat only in the cycle it takes it.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.beats import TxBeat

__all__ = ["TxArbiter"]


class TxArbiter(wiring.Component):
    """`orders` and `host` in, `source` to MacTx; a beat passes in the cycle it is offered."""

    LATENCY = 0

    orders: In(stream.Signature(TxBeat))
    host: In(stream.Signature(TxBeat))
    source: Out(stream.Signature(TxBeat))
    # An order frame offered now would be taken now. From registers only (not from `valid`), so
    # the order path may use it to decide whether to start a frame at all: the card never
    # holds a built order back from the wire, where a kill switch could no longer stop it.
    order_free: Out(1)

    def elaborate(self, platform):
        m = Module()

        class Owner(enum.Enum, shape=2):
            NONE = 0        # at a frame boundary
            ORDERS = 1
            HOST = 2

        owner = Signal(Owner)
        pick_orders = Signal()
        m.d.comb += pick_orders.eq((owner == Owner.ORDERS)
                                   | ((owner == Owner.NONE) & self.orders.valid))

        m.d.comb += [
            self.source.valid.eq(Mux(pick_orders, self.orders.valid, self.host.valid)),
            self.source.payload.eq(Mux(pick_orders, self.orders.payload, self.host.payload)),
            self.orders.ready.eq(self.source.ready & pick_orders),
            self.host.ready.eq(self.source.ready & ~pick_orders),
        ]
        m.d.comb += self.order_free.eq(self.source.ready & (owner != Owner.HOST))
        with m.If(self.source.valid & self.source.ready):
            with m.If(self.source.payload.last):
                m.d.sync += owner.eq(Owner.NONE)
            with m.Else():
                m.d.sync += owner.eq(Mux(pick_orders, Owner.ORDERS, Owner.HOST))

        return m
