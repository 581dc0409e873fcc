"""The byte streams between the RX blocks and into the TX MAC, and big-endian header views.

Every RX block takes one byte per cycle and never pushes back, so every link is a
`stream.Signature(..., always_ready=True)`. A frame is a run of data beats followed by one
*end beat* (`end=1`, no data) that carries the frame's verdict so far: each block passes the
end beat on, filling in its own drop reason only if no block before it had one. The end beat
exists because the MAC learns where a frame ended (and whether its FCS was good) only after the
last byte has already been passed on: the blocks are cut-through. Data beats pass each block
combinationally; end beats are registered in each (`forward_end`). Each block drives `data`
whatever its `valid` (the byte is the RX pins' register on a wire), and no block reads `data`
without `valid`: a byte gated by each block's valid had carried the whole cut-through valid
chain into every register the decoder loads, and on into the book (docs/book-timing.md,
fourteenth session).

The TX side is the other way round: the MAC sets the pace (it can start a frame only after the
inter-frame gap), so its streams have `ready`, and a frame's end is known when its last byte is
sent, so a `last` flag replaces the end beat (`TxBeat`).
"""

from amaranth import Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream

from hdl.formats import N_SUBSCRIPTIONS, SESSION_LEN, Drop

__all__ = ["be_layout", "Beat", "IpBeat", "UdpBeat", "MsgBeat", "Subscription", "TxBeat",
           "beats", "forward_end"]


def be_layout(fields: tuple[tuple[str, int], ...]) -> data.StructLayout:
    """The layout of a big-endian wire header, given as (field, bytes) in wire order, over the
    integer its bytes form when shifted in first byte first (`reg = Cat(byte, reg)`; first byte
    most significant). Fields then read as plain integers, with no byte swapping: `data.Struct`
    fields are LSB-first, so the last wire field comes first."""
    return data.StructLayout({name: unsigned(8 * size) for name, size in reversed(fields)})


class Beat(data.Struct):
    """MAC -> Ethernet -> IPv4."""
    data: 8
    end: 1
    drop: Drop


class IpBeat(data.Struct):
    """IPv4 -> UDP: the IPv4 payload, with what UDP needs from the IPv4 header."""
    data: 8
    end: 1
    drop: Drop
    dst_addr: 32              # the multicast group
    payload_len: 16           # IPv4 total length - header length


class UdpBeat(data.Struct):
    """UDP -> MoldUDP64: the UDP payload of a subscribed group and port."""
    data: 8
    end: 1
    drop: Drop
    sub: range(N_SUBSCRIPTIONS)


class MsgBeat(data.Struct):
    """MoldUDP64 -> ITCH: the bytes of each new message, framed by its block length."""
    data: 8
    first: 1                  # the type byte
    last: 1
    length: 16                # the block length, known before the first byte
    seq: 64                   # this message's sequence number
    sub: range(N_SUBSCRIPTIONS)
    end: 1
    drop: Drop


class Subscription(data.Struct):
    """A row of the subscription table, as the host writes it."""
    valid: 1
    group: 32                 # IPv4 multicast group
    port: 16                  # UDP destination port
    session: 8 * SESSION_LEN  # MoldUDP64 session, big-endian ASCII
    next_seq: 64              # next expected sequence number; 0 = take the first seen


class TxBeat(data.Struct):
    """Frame sources -> TX arbiter -> TX MAC: a frame from the destination MAC to the end of
    its payload (the MAC adds padding and FCS). Once a frame's first beat is taken, the source
    must offer one beat every cycle until `last` (`hdl.mac_tx`)."""
    data: 8
    last: 1


def beats(layout: type[data.Struct]) -> stream.Signature:
    """An always-ready stream of `layout` beats: the RX side never applies backpressure."""
    return stream.Signature(layout, always_ready=True)



def forward_end(m: Module, sink: stream.Interface, source: stream.Interface,
                reason: Value) -> Value:
    """Pass the end beat on one cycle later, with `reason` (this block's own drop reason, or
    Drop.NONE) if no block before had one. Returns the condition "the end beat is here now",
    for the block to reset its per-frame state.

    Registered so that the verdicts of all blocks never form one long combinational path: data
    beats stay cut-through, the verdict moves one block per cycle. It cannot meet the next
    frame's first data beat: frames are at least 20 byte times apart on the wire (12 of
    inter-frame gap, 8 of preamble and SFD)."""
    ending = sink.valid & sink.payload.end
    valid, drop = Signal(), Signal(Drop)
    m.d.sync += valid.eq(ending)
    with m.If(ending):
        m.d.sync += drop.eq(Mux(sink.payload.drop != Drop.NONE, sink.payload.drop, reason))
    with m.If(valid):
        m.d.comb += [source.valid.eq(1), source.payload.end.eq(1), source.payload.drop.eq(drop)]
    return ending
