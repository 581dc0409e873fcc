"""The card's core: GMII in, the feed handler, the order book, top-of-book updates out.

    gmii -> FeedHandler -> message/head/verdict/gap -> OrderBook -> update

The tick-to-trade stages (triggers, risk gate, order builder, TX) join here behind the book.
"""

from amaranth import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hdl.beats import beats
from hdl.book import OrderBook, TopUpdate, WatchWrite
from hdl.feed import Counters, FeedHandler, SubscriptionWrite
from hdl.formats import BOOK_COUNTERS, BookParams
from hdl.mac_rx import GmiiRx

__all__ = ["Core"]


class Core(wiring.Component):
    def __init__(self, book: BookParams | None = None):
        self.book_params = book or BookParams()
        super().__init__({
            "gmii": In(GmiiRx),
            "own_mac": In(48),
            "sub_write": In(beats(SubscriptionWrite)),
            "watch_write": In(beats(WatchWrite)),
            "update": Out(beats(TopUpdate)),
            "counters": Out(Counters),
            "book_counters": Out(data.ArrayLayout(32, len(BOOK_COUNTERS))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.feed = feed = FeedHandler()
        m.submodules.book = book = OrderBook(self.book_params)
        wiring.connect(m, wiring.flipped(self.gmii), feed.gmii)
        wiring.connect(m, wiring.flipped(self.sub_write), feed.sub_write)
        wiring.connect(m, wiring.flipped(self.watch_write), book.watch_write)
        m.d.comb += feed.own_mac.eq(self.own_mac)
        wiring.connect(m, feed.message, book.message)
        wiring.connect(m, feed.head, book.head)
        wiring.connect(m, feed.verdict, book.verdict)
        wiring.connect(m, feed.gap, book.gap)
        wiring.connect(m, book.update, wiring.flipped(self.update))
        wiring.connect(m, feed.counters, wiring.flipped(self.counters))
        m.d.comb += self.book_counters.eq(book.counters)
        return m
