"""ITCH 5.0 decoder: MoldUDP64 message bytes in, decoded `ItchMessage` structs out.

The message's bytes shift into a window, first byte most significant, so at its last byte each
type's body is the window's low bytes and every field reads as a plain integer through that
type's `be_layout` (see `hdl.formats` for the field tables, which the host model shares). The
struct is valid the cycle after the message's last byte reached the decoder: with the MAC's
input register, LATENCY = 2 cycles from the last byte on the GMII pins.

The block length must be the type's ITCH length; an unknown type or a wrong length is counted
and the rest of the packet dropped, because the bytes after it can no longer be trusted.
Known types without a body table are skipped by their length; every type is counted.
"""

from amaranth import Cat, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hdl.beats import MsgBeat, be_layout, beats
from hdl.copies import copies
from hdl.formats import (
    ITCH_BODIES,
    ITCH_HEADER,
    ITCH_HEADER_LEN,
    ITCH_LENGTHS,
    ITCH_MAX_BODY,
    ITCH_TYPES,
    N_SUBSCRIPTIONS,
    Drop,
)
from hdl.logic import or_tree
from hdl.mac_rx import MacRx

__all__ = ["KIND", "ItchMessage", "ItchHead", "ItchDecoder", "Verdict", "BODY", "HEAD_KEYS",
           "HEAD_EXTRAS", "HEAD_AT", "LOCATE_AT", "field_end"]

HEADER = be_layout(ITCH_HEADER[1:])
BODY = data.UnionLayout({
    kind: be_layout(fields) for kind, fields in ITCH_BODIES.items()
} | {"raw": 8 * ITCH_MAX_BODY})
"""One member per decoded type, named by its type letter: `msg.body.A.price`."""


KIND = data.StructLayout({t: 1 for t in ITCH_BODIES})
"""A one-hot of the decoded types, by letter: `msg.kind.A`. Registered beside `type`, so a
reader tests a type with one bit where an 8-bit compare would head its paths (the book's).
It is 0 while its stream's `valid` is 0: one register bit says "an A is here", where `valid &
kind.A` had put the stream's valid, a register far from most of its readers, into every one of
the book's type tests (they led the routed feed handler + book at every seed)."""


class ItchMessage(data.Struct):
    """A decoded ITCH message of one of the types in `ITCH_BODIES`, with where it came from."""
    type: 8                 # ASCII type letter
    kind: KIND              # the same, one-hot (0 while not valid)
    locate: 16
    tracking: 16
    timestamp: 48           # ns since midnight
    body: BODY
    seq: 64                 # MoldUDP64 sequence number
    sub: range(N_SUBSCRIPTIONS)
    rx_cycle: 48            # cycle its last byte was on the GMII pins
    index: 32               # ITCH messages of every type decoded before it (wraps)
    frame: 16               # frames whose verdict came before it: its frame's number (wraps)


# The fields a book needs before the message ends, so its lookups are done when the price (or
# the reference itself, for D) arrives: see `ItchHead`. HEAD_KEYS say when the key head comes;
# it also carries the HEAD_EXTRAS of its type that have arrived by then (A/F's side, shares).
HEAD_KEYS = ("order_ref", "new_ref", "stock")
HEAD_EXTRAS = ("side", "shares")
LOCATE_AT = ITCH_HEADER_LEN - 1 - 8     # offset of the locate's last byte (header: 1+2+2+6)


def field_end(kind: str, name: str) -> int:
    """Offset in its message of the last byte of body field `name` of type `kind`."""
    at = ITCH_HEADER_LEN
    for field, size in ITCH_BODIES[kind]:
        at += size
        if field == name:
            return at - 1
    raise KeyError(name)


REF_AT = field_end("D", "order_ref")
"""Offset of the last byte of an A, F or D's reference (D's last byte): `ItchDecoder.early_ref`."""
assert REF_AT == field_end("A", "order_ref") == field_end("F", "order_ref")


HEAD_AT = {kind: max(field_end(kind, f) for f, _ in fields if f in HEAD_KEYS)
           for kind, fields in ITCH_BODIES.items() if any(f in HEAD_KEYS for f, _ in fields)}
"""Offset of the byte after which a type's key fields (`HEAD_KEYS` it has) are all known."""


class ItchHead(data.Struct):
    """Early news of a message still arriving, for lookups that must be done by its end.

    Two beats per message of a type in `HEAD_AT`: after its locate (byte 2; `key` = 0, only
    `type` and `locate` are meaningful) and after its last key field (`key` = 1: also
    `order_ref`, `new_ref` and `stock`, as far as the type has them, and `side` and `shares` if
    they came before those). Other types get the first only. A head is a promise, not a
    message: the message may still be dropped (truncated frame), so nothing may be changed on a
    head alone."""
    type: 8
    kind: KIND              # one-hot (0 while not valid)
    locate: 16
    key: 1
    order_ref: 64
    new_ref: 64
    stock: 64
    side: 8
    shares: 32


class Verdict(data.Struct):
    """One per frame, after its end: why it was dropped, or Drop.NONE."""
    drop: Drop


class ItchDecoder(wiring.Component):
    LATENCY = MacRx.LATENCY + 1

    cycle: In(48)                           # free-running cycle counter
    sink: In(beats(MsgBeat))
    message: Out(beats(ItchMessage))
    head: Out(beats(ItchHead))
    # The price of the A or F whose last byte is on the sink now, a cycle before its `message`
    # (any other cycle: meaningless). From the byte window's registers and the sink's byte:
    # the book scans its levels for an add's price then, so its update is out a cycle sooner.
    early_price: Out(32)
    # The reference of the A, F or D whose reference's last byte (offset REF_AT, the same in
    # all three) is on the sink now, when `early_af` or `early_d` (any other cycle:
    # meaningless).
    # From registers alone, `early_d` says a D's last byte is due: its type and the offset of
    # the byte on the sink (the sink's valid is not looked at, so it may be early; the book
    # starts D's table lookup on it and trusts the result only when D's key head follows in
    # the next cycle, which it does exactly when the byte was there).
    # `early_af`, from registers too, says an A/F's is due (in a frame not dropped so far): the
    # book looks an A/F's reference up the cycle after, 17 bytes before an A's last byte (21
    # for an F; their key head waits for the stock, 4 bytes before an A's last byte). The
    # sink's valid was in it, and the cut-through valid chain from the MAC ran on into the
    # book's reference registers it loads: that led the feed handler + book at both seeds
    # routed (9.49 and 9.92 ns, thirteenth session). A frame cut at that byte leaves `pos`
    # there until the next message, and the book starts a lookup every cycle meanwhile: its
    # results wait for the A/F's message, which never comes, and the next message's own
    # lookups start >= 17 cycles after its type byte stops them.
    early_ref: Out(64)
    early_d: Out(1)
    early_af: Out(1)
    # The stock of the R/H/A/F whose key head comes next cycle (any other cycle: meaningless):
    # what `head.stock` will hold, from the window and the sink's byte. The book compares it
    # with its watchlist a cycle ahead, so a symbol's slot is chosen in the head's cycle.
    early_stock: Out(64)
    verdict: Out(beats(Verdict))
    by_type: Out(data.ArrayLayout(32, len(ITCH_TYPES)))

    def elaborate(self, platform):
        m = Module()
        beat = self.sink.payload
        kind = Signal(8)
        kind_hot = Signal(KIND)
        kind_index = Signal(range(len(ITCH_TYPES)))
        decoded = Signal()          # the type has a body table: emit it
        reason = Signal(Drop)       # latched: the rest of the packet is dropped
        valid = Signal()

        # The bytes of a message arrive on consecutive cycles, so the datapath needs no enable
        # (whose fan-out from the cut-through valid chain would set the clock): a window of
        # the last bytes shifts every cycle and the message registers load every cycle; only
        # `valid` says when they hold a message. At a message's last byte the window holds it
        # with its body lowest, and the common header just above, where its type puts it.
        window = Signal(8 * (max(ITCH_LENGTHS[t] for t in ITCH_BODIES) - 1))
        m.d.sync += window.eq(Cat(beat.data, window))
        now = Cat(beat.data, window)
        # Every choice by type below is an AND-OR by `kind_hot`, a register, not a Switch on
        # `kind`: decoding the 8-bit type took 3-4 LUT levels, and Yosys made the Switch's
        # zero default a synchronous reset (LSR) of the message registers. Beside the book those
        # registers spread over the chip, and that decode and control net led the feed handler
        # + book (98.1 MHz, 8.25 of its 10.20 ns wire; docs/book-timing.md, "Twelfth session").
        def by_type(bits: dict[str, tuple[int, int]]) -> Value:
            """`now[lo:lo + size]` at the message's type's (lo, size) in `bits`, 0 for a type
            not in it; the types with the same bits share one AND."""
            groups: dict[tuple[int, int], list[str]] = {}
            for t, at in bits.items():
                groups.setdefault(at, []).append(t)
            return or_tree([Mux(Cat(getattr(kind_hot, t) for t in ts).any(),
                                now[lo:lo + size], 0) for (lo, size), ts in groups.items()])

        header = Signal(8 * (ITCH_HEADER_LEN - 1))
        m.d.comb += header.eq(by_type({
            t: (8 * (ITCH_LENGTHS[t] - ITCH_HEADER_LEN), len(header)) for t in ITCH_BODIES}))
        msg = self.message.payload
        hv = data.View(HEADER, header)
        m.d.sync += [
            msg.type.eq(kind),
            msg.locate.eq(hv.locate),
            msg.tracking.eq(hv.tracking),
            msg.timestamp.eq(hv.timestamp),
            msg.body.raw.eq(now),
            msg.seq.eq(beat.seq),
            msg.sub.eq(beat.sub),
            msg.rx_cycle.eq(self.cycle - MacRx.LATENCY),
        ]
        m.d.comb += self.message.valid.eq(valid)

        # Heads. `pos`: the offset of the byte now on the sink (after the type byte). Like the
        # message, the head registers load every cycle; the fields sit where their type puts
        # them in the window when the byte at HEAD_AT arrives.
        pos = Signal(range(max(ITCH_LENGTHS.values()) + 1))
        key_at = Signal.like(pos)
        with m.If(self.sink.valid & ~beat.end):
            m.d.sync += pos.eq(Mux(beat.first, 1, pos + 1))
        head = self.head.payload
        m.d.sync += [head.type.eq(kind), head.key.eq(pos != LOCATE_AT)]

        def bits_of(kind_, name, at):
            """(lo, size) in `now` of field `name` of `kind_` when the byte at offset `at`
            arrives."""
            size = 8 * dict((f, n) for f, n in ITCH_HEADER + ITCH_BODIES[kind_])[name]
            end = field_end(kind_, name) if name != "locate" else LOCATE_AT
            return 8 * (at - end), size

        def field(kind_, name, at, source=now):
            lo, size = bits_of(kind_, name, at)
            return source[lo:lo + size]

        # The last byte of F is its attribution's, of A its price's. The early price is read
        # by the book's compares of a new price with every level, far from the window and from
        # `kind_hot`: from them, the F/A select's hop across the chip led the routed feed
        # handler + book at seed 3 (2.26 of 8.63 ns; docs/book-timing.md, "Seventeenth
        # session"). So it selects between copies of both of its own (`hdl.copies`), which
        # can sit by those compares. The type's copy is a cycle late, which is exact where
        # the early price is read: a type loads at its message's first byte, and an A/F's last
        # byte is 35 or more bytes later. So the copy's input is a register too, and only it
        # crosses the chip; a copy of `kind_hot`'s load logic carried the MAC's cut-through
        # valid chain there (seventeenth session).
        (price_is_f,) = copies(m, platform, kind_hot.F, 1, "price_is_f")
        (price_window,) = copies(m, platform, now[:56], 1, "price_window")
        price_now = Cat(beat.data, price_window)    # `now`'s low bytes: both prices are in them
        m.d.comb += self.early_price.eq(Mux(price_is_f,
                                            field("F", "price", ITCH_LENGTHS["F"] - 1, price_now),
                                            field("A", "price", ITCH_LENGTHS["A"] - 1, price_now)))
        m.d.comb += [self.early_ref.eq(field("D", "order_ref", REF_AT)),
                     self.early_d.eq(kind_hot.D & (pos == REF_AT)),
                     self.early_af.eq((kind_hot.A | kind_hot.F) & (pos == REF_AT)
                                      & (reason == Drop.NONE))]
        # (R/H/A/F's key head comes at their stock's last byte: it is the window's low bytes.)
        assert all(HEAD_AT[t] == field_end(t, "stock") for t in "RHAF")
        # From a copy of the window's low bytes of its own (`hdl.copies`: Yosys would fold a
        # plain one into the window): the window is also the message's body, read all over the
        # book, and its bits' hop to the book's compare of the stock with every watched symbol
        # was 4.05 ns of the routed feed handler + book's critical path (8.16 ns, sixteenth
        # session, docs/book-timing.md).
        (stock_window,) = copies(m, platform, now[:56], 1, "stock_window")
        m.d.comb += self.early_stock.eq(Cat(beat.data, stock_window))

        # Each head field loads, while the message is of a type that has it by its key head,
        # from where that type puts it; it keeps its value through other types.
        for f in HEAD_KEYS + HEAD_EXTRAS:
            bits = {t: bits_of(t, f, at) for t, at in HEAD_AT.items()
                    if f in {g for g, _ in ITCH_BODIES[t]} and field_end(t, f) <= at}
            with m.If(Cat(getattr(kind_hot, t) for t in bits).any()):
                m.d.sync += getattr(head, f).eq(by_type(bits))
        # The locate is the window's low bytes at the first head (and for types without a key
        # head); at the key head, where the type puts it.
        first = (pos == LOCATE_AT) | ~Cat(getattr(kind_hot, t) for t in HEAD_AT).any()
        m.d.sync += head.locate.eq(Mux(first, field("D", "locate", LOCATE_AT), by_type(
            {t: bits_of(t, "locate", at) for t, at in HEAD_AT.items()})))
        head_now = Signal()
        m.d.comb += head_now.eq(self.sink.valid & ~beat.end & ~beat.first & (reason == Drop.NONE)
                                & decoded & ((pos == LOCATE_AT) | (pos == key_at)))
        m.d.sync += [self.head.valid.eq(head_now),
                     head.kind.eq(Mux(head_now, kind_hot, 0))]

        # A message is counted the cycle after its last byte (`counted`): the count comes off
        # the cut-through valid chain, and the counters sit wherever their readers pull them
        # (the index goes into the book). The next message's last byte is >= 14 cycles away.
        count, counted = Signal(), Signal()
        total = Signal(32)
        m.d.sync += [counted.eq(count), msg.index.eq(total), total.eq(total + counted)]
        m.d.sync += [valid.eq(0), msg.kind.eq(0), self.verdict.valid.eq(0)]
        with m.If(self.sink.valid & ~beat.end & (reason == Drop.NONE)):
            with m.If(beat.first):
                m.d.sync += [kind.eq(beat.data), kind_hot.eq(0),
                             reason.eq(Drop.ITCH_UNKNOWN_TYPE)]
                with m.Switch(beat.data):
                    for i, t in enumerate(ITCH_TYPES):
                        with m.Case(ord(t)):
                            m.d.sync += [kind_index.eq(i), decoded.eq(t in ITCH_BODIES),
                                         key_at.eq(HEAD_AT.get(t, 0))]
                            if t in ITCH_BODIES:
                                m.d.sync += getattr(kind_hot, t).eq(1)
                            with m.If(beat.length == ITCH_LENGTHS[t]):
                                m.d.sync += reason.eq(Drop.NONE)
                            with m.Else():
                                m.d.sync += reason.eq(Drop.ITCH_BAD_LENGTH)
            with m.If(beat.last & ~beat.first):
                m.d.sync += [valid.eq(decoded), msg.kind.eq(kind_hot)]
                m.d.comb += count.eq(1)

        for i in range(len(ITCH_TYPES)):
            with m.If(counted & (kind_index == i)):
                m.d.sync += self.by_type[i].eq(self.by_type[i] + 1)

        # Every frame ends in one verdict (each block passes every end beat on), after all of
        # its messages: counting verdicts numbers the frames, and a message carries its own.
        with m.If(self.sink.valid & beat.end):
            m.d.sync += [self.verdict.valid.eq(1), self.verdict.payload.drop.eq(beat.drop),
                         reason.eq(Drop.NONE), msg.frame.eq(msg.frame + 1)]
            with m.If(beat.drop == Drop.NONE):
                m.d.sync += self.verdict.payload.drop.eq(reason)
        return m

