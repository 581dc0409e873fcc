"""MoldUDP64 receiver: session check, per-subscription sequence tracking, gap detection,
duplicate suppression, and framing of the message blocks.

A packet whose messages were all seen is dropped; in a packet that is partly new, the old
messages are framed but not passed on. The sequence state changes only at the end of a frame
that every layer up to UDP accepted: a corrupt frame's sequence number cannot be trusted. Then
the next expected sequence number becomes max(expected, seq + blocks framed), and a gap
(expected < seq) is reported with its first missing sequence number and count. A next expected
sequence number of 0 means "not synchronised": the first accepted packet sets it, with no gap.
Heartbeats (count 0) and end of session (count 0xFFFF) carry no blocks but the next sequence
number, so they reveal gaps too.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from hdl.beats import MsgBeat, Subscription, UdpBeat, be_layout, beats, forward_end
from hdl.copies import window
from hdl.formats import MOLD_END_OF_SESSION, MOLD_HEARTBEAT, N_SUBSCRIPTIONS, SESSION_LEN, Drop

__all__ = ["MoldUdp64Rx", "MOLD_HEADER", "GapReport"]

MOLD_HEADER = be_layout((("session", 10), ("seq", 8), ("count", 2)))
"""| bytes | field |
|---|---|
| 0-9 | session, ASCII |
| 10-17 | sequence number of the first message |
| 18-19 | message count (0: heartbeat, 0xFFFF: end of session) |
| 20- | message blocks: length (2) + message |"""


class GapReport(data.Struct):
    sub: range(N_SUBSCRIPTIONS)
    first: 64               # first missing sequence number
    count: 64               # how many are missing


class MoldUdp64Rx(wiring.Component):
    subs: In(data.ArrayLayout(Subscription, N_SUBSCRIPTIONS))
    sub_written: In(N_SUBSCRIPTIONS)        # one-hot: the host wrote this row now
    sink: In(beats(UdpBeat))
    source: Out(beats(MsgBeat))
    gap: Out(beats(GapReport))
    # This block passes its sink's data beats on now (`hdl.feed` ANDs every block's): from
    # registers only, and 0 while its end beat is out (reset by the end that sends it).
    passing: Out(1)

    def elaborate(self, platform):
        m = Module()
        beat = self.sink.payload

        class State(enum.Enum, shape=3):
            HEADER = 0
            CHECK = 1       # the cycle after the header: accept or drop it, from registers
            LEN_HI = 2
            LEN_LO = 3
            MESSAGE = 4
            DONE = 5        # all blocks framed; any further byte is trailing garbage
            DROP = 6        # reason latched; ignore the rest of the frame

        state = Signal(State)
        index = Signal(range(21))
        header = window(m, platform, beat.data, 19, "header")
        view = data.View(MOLD_HEADER, Cat(beat.data, header))      # valid at byte 19
        next_seq = Signal(data.ArrayLayout(64, N_SUBSCRIPTIONS))
        expected = Signal(64)           # next_seq of this frame's row, read at byte 17
        ahead = Signal(65)              # expected - seq, two's complement, at byte 18
        seq = Signal(64)
        blocks = Signal(16)             # message count, 0 for heartbeat and end of session
        framed = Signal(16)             # blocks completely received
        msg_seq = Signal(64)            # sequence number of the current block
        skip = Signal(16)               # blocks still to skip: already seen
        fresh = Signal()                # skip == 0, as a register for the byte path
        new_next = Signal(64)           # max(expected, seq + framed)
        length = Signal(16)
        left = Signal(16)               # bytes of the current message after this one
        head = Signal()                 # the next message byte is its first
        session_ok = Signal()
        accepted = Signal()
        reason = Signal(Drop)

        synced = Signal()               # expected != 0, registered off the wide compare
        behind = ahead[64]              # seq > expected

        # The wide registers load without the sink's valid, so that the cut-through valid
        # chain (MAC -> Ethernet -> IPv4 -> UDP -> here) reaches no wide enable: beside the
        # book the feed handler's blocks spread over the chip, and that chain into `seq`'s
        # enable led the feed handler + book at both seeds routed (10.09 and 10.03 ns, 8.7 of
        # it wire; docs/book-timing.md). The header shifts every cycle (`hdl.copies.window`;
        # a frame's bytes are consecutive, so at each `index` it holds the bytes before it); the
        # fields load at their `index` whether or not a byte is there (one is, unless the frame
        # was cut there, and then it is never accepted: nothing reads them); a message's
        # sequence number moves on the cycle after its last byte (`bump`), before the next
        # one's first.
        in_header = state == State.HEADER
        with m.If(in_header & (index == 17)):
            m.d.sync += [expected.eq(next_seq[beat.sub]), seq.eq(Cat(beat.data, header[:56]))]
        with m.If(in_header & (index == 18)):
            m.d.sync += [ahead.eq(expected - seq), synced.eq(expected != 0)]
        with m.If(in_header & (index == 19)):
            count = view.count
            m.d.sync += [
                blocks.eq(Mux((count == MOLD_HEARTBEAT) | (count == MOLD_END_OF_SESSION), 0,
                              count)),
                msg_seq.eq(seq),
                new_next.eq(Mux(synced & ~behind, expected, seq)),
            ]
        bump, bump_next = Signal(), Signal()
        m.d.sync += bump.eq(0)
        with m.If(bump):
            m.d.sync += msg_seq.eq(msg_seq + 1)
            with m.If(bump_next):
                m.d.sync += new_next.eq(msg_seq + 1)

        with m.If(self.sink.valid & ~beat.end):
            with m.Switch(state):
                with m.Case(State.HEADER):
                    m.d.sync += index.eq(index + 1)
                    # Each wide comparison gets a cycle of its own, off the byte path.
                    with m.If(index == 10):
                        m.d.sync += session_ok.eq(
                            header[:8 * SESSION_LEN] == self.subs[beat.sub].session)
                    with m.If(index == 19):
                        m.d.sync += state.eq(State.CHECK)
                        with m.If(synced & ~behind):
                            m.d.sync += [skip.eq(ahead[:16]), fresh.eq(ahead[:16] == 0)]
                        with m.Else():
                            m.d.sync += [skip.eq(0), fresh.eq(1)]
                with m.Case(State.CHECK):   # a byte right after the header: see below
                    pass
                with m.Case(State.LEN_HI):
                    m.d.sync += [length[8:].eq(beat.data), state.eq(State.LEN_LO)]
                with m.Case(State.LEN_LO):
                    m.d.sync += [length[:8].eq(beat.data), state.eq(State.MESSAGE), head.eq(1),
                                 left.eq(Cat(beat.data, length[8:]) - 1)]
                    with m.If((length[8:] == 0) & (beat.data == 0)):
                        m.d.sync += [state.eq(State.DROP), reason.eq(Drop.MOLD_EMPTY_BLOCK)]
                with m.Case(State.MESSAGE):
                    last = left == 0
                    m.d.sync += [left.eq(left - 1), head.eq(0)]
                    m.d.comb += [
                        self.source.valid.eq(fresh),
                        self.source.payload.first.eq(head),
                        self.source.payload.last.eq(last),
                    ]
                    with m.If(last):
                        m.d.sync += [framed.eq(framed + 1), bump.eq(1), bump_next.eq(fresh)]
                        with m.If(~fresh):
                            m.d.sync += [skip.eq(skip - 1), fresh.eq(skip == 1)]
                        with m.If(framed + 1 == blocks):
                            m.d.sync += state.eq(State.DONE)
                        with m.Else():
                            m.d.sync += state.eq(State.LEN_HI)
                with m.Case(State.DONE):
                    m.d.sync += [state.eq(State.DROP), reason.eq(Drop.MOLD_TRAILING)]
        # The header's verdict, one cycle after its last byte so that the comparisons start
        # from registers rather than from the byte on the wire. The payload can already be
        # there: its first byte is then the first block's length, or trailing garbage.
        with m.If(state == State.CHECK):
            # seq + blocks <= expected, i.e. expected - seq >= blocks with seq <= expected.
            seen_all = ~behind & ((ahead[16:64] != 0) | (ahead[:16] >= blocks))
            byte = self.sink.valid & ~beat.end
            with m.If(~session_ok):
                m.d.sync += [state.eq(State.DROP), reason.eq(Drop.MOLD_SESSION)]
            with m.Elif(synced & (blocks != 0) & seen_all):
                m.d.sync += [state.eq(State.DROP), reason.eq(Drop.MOLD_DUPLICATE)]
            with m.Else():
                m.d.sync += accepted.eq(1)
                with m.If(blocks == 0):
                    m.d.sync += state.eq(State.DONE)
                    with m.If(byte):
                        m.d.sync += [state.eq(State.DROP), reason.eq(Drop.MOLD_TRAILING)]
                with m.Elif(byte):
                    m.d.sync += [length[8:].eq(beat.data), state.eq(State.LEN_LO)]
                with m.Else():
                    m.d.sync += state.eq(State.LEN_HI)

        m.d.comb += [
            self.passing.eq((state == State.MESSAGE) & fresh),
            self.source.payload.data.eq(beat.data),
            self.source.payload.length.eq(length),
            self.source.payload.seq.eq(msg_seq),
            self.source.payload.sub.eq(beat.sub),
        ]

        own = Mux(reason != Drop.NONE, reason,
                  Mux(state != State.DONE, Drop.MOLD_TRUNCATED, Drop.NONE))
        # The gap report's fields load every cycle (they hold still while a frame ends); only
        # `valid` depends on the verdict, which keeps the wide registers off its path.
        m.d.sync += [
            self.gap.valid.eq(0),
            self.gap.payload.sub.eq(beat.sub),
            self.gap.payload.first.eq(expected),
            self.gap.payload.count.eq(-ahead),
        ]
        with m.If(forward_end(m, self.sink, self.source, own)):
            with m.If((beat.drop == Drop.NONE) & accepted):
                m.d.sync += next_seq[beat.sub].eq(new_next)
                with m.If(synced & ahead[64]):
                    m.d.sync += self.gap.valid.eq(1)
            m.d.sync += [state.eq(State.HEADER), index.eq(0), reason.eq(Drop.NONE),
                         accepted.eq(0), framed.eq(0)]

        # A host write restarts its row; it wins over a commit in the same cycle.
        for i in range(N_SUBSCRIPTIONS):
            with m.If(self.sub_written[i]):
                m.d.sync += next_seq[i].eq(self.subs[i].next_seq)
        return m
