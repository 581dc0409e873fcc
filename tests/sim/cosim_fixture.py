"""A small design with the card's three ports, for the co-simulation server's tests.

Not a model of the card: it serves the card's register map (`hdl.regmap.card_map`) from a real
`RegisterBank`, runs the real `FeedHandler` on the RX pins with its counters, our MAC and the
subscription table on registers (so `feed.frames_ok` counts what the server framed), and echoes
every received frame back out through the real `MacTx`. The echo gives the server's TX side
(frames off the pins -> UDP datagrams) something to carry while `hdl.card.Card` is not built.
Everything else in the map reads 0.
"""

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hdl.feed import FeedHandler
from hdl.formats import N_SUBSCRIPTIONS, BookParams
from hdl.mac_rx import GmiiRx, MacRx
from hdl.mac_tx import GmiiTx, MacTx
from hdl.regmap import card_map
from hdl.regs import BusSignature, RegisterBank

__all__ = ["EchoFeedCard"]


class EchoFeedCard(wiring.Component):
    def __init__(self, book: BookParams | None = None):
        self.map = card_map(book)
        super().__init__({
            "bus": In(BusSignature(ceil_log2(self.map.words))),
            "gmii": In(GmiiRx),
            "gmii_tx": Out(GmiiTx),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.bank = bank = RegisterBank(self.map)
        m.submodules.feed = feed = FeedHandler()
        m.submodules.echo_rx = rx = MacRx()
        m.submodules.echo_tx = tx = MacTx()
        wiring.connect(m, wiring.flipped(self.bus), bank.bus)

        m.d.comb += [
            feed.gmii.rxd.eq(self.gmii.rxd), feed.gmii.rx_dv.eq(self.gmii.rx_dv),
            feed.gmii.rx_er.eq(self.gmii.rx_er),
            rx.gmii.rxd.eq(self.gmii.rxd), rx.gmii.rx_dv.eq(self.gmii.rx_dv),
            rx.gmii.rx_er.eq(self.gmii.rx_er),
            feed.own_mac.eq(bank.net.own_mac),
            bank.feed.frames_ok.eq(feed.counters.frames_ok),
            bank.feed.gaps.eq(feed.counters.gaps),
            bank.feed.drops.eq(feed.counters.drops),
            bank.feed.messages_by_type.eq(feed.counters.messages_by_type),
        ]
        # A row's commit strobe is high in the cycle its new live values appear.
        for i in range(N_SUBSCRIPTIONS):
            row = bank.subscriptions[i]
            with m.If(row.commit):
                m.d.comb += [
                    feed.sub_write.valid.eq(1),
                    feed.sub_write.payload.index.eq(i),
                    feed.sub_write.payload.row.valid.eq(row.valid),
                    feed.sub_write.payload.row.group.eq(row.group),
                    feed.sub_write.payload.row.port.eq(row.port),
                    feed.sub_write.payload.row.session.eq(row.session),
                    feed.sub_write.payload.row.next_seq.eq(row.next_seq),
                ]

        # Echo: MacRx passes every byte after the SFD (its FCS too; MacTx adds another, which
        # the IPv4/UDP lengths make harmless) and then an end beat, which is registered: it
        # comes two cycles after the last byte. So each byte waits two cycles to learn whether
        # it is the last. A frame starts only if MacTx is idle (else it is dropped whole); once
        # started it gets a byte every cycle, as MacTx requires.
        held = [Signal(8, name=f"held{i}") for i in range(2)]
        held_valid = [Signal(name=f"held{i}_valid") for i in range(2)]
        sending, skipping = Signal(), Signal()
        src, out, out_valid = rx.source, held[1], held_valid[1]
        refused = out_valid & ~sending & ~tx.sink.ready     # first byte, line busy
        m.d.comb += [
            tx.sink.payload.data.eq(out),
            tx.sink.payload.last.eq(src.valid & src.payload.end),
            tx.sink.valid.eq(out_valid & ~skipping & (sending | tx.sink.ready)),
        ]
        with m.If(tx.sink.valid & tx.sink.ready):
            m.d.sync += sending.eq(~tx.sink.payload.last)
        with m.If(refused):
            m.d.sync += skipping.eq(1)
        with m.If(src.valid & src.payload.end):
            m.d.sync += skipping.eq(0)
        m.d.sync += [
            held[0].eq(src.payload.data), held_valid[0].eq(src.valid & ~src.payload.end),
            held[1].eq(held[0]), held_valid[1].eq(held_valid[0]),
        ]
        wiring.connect(m, tx.gmii, wiring.flipped(self.gmii_tx))
        return m
