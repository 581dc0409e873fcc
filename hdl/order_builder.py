"""Order builder: an order request in, its Ethernet/IPv4/UDP/OUCH Enter Order frame out, one
byte per cycle (model: `host.model.order_frame.order_frame`).

The frame (92 bytes, no FCS: the TX MAC appends it; longer than a minimum frame, so no pad):

| bytes | field                               | from                                      |
|-------|-------------------------------------|-------------------------------------------|
| 0-5   | destination MAC                     | template                                  |
| 6-11  | source MAC                          | template                                  |
| 12-13 | EtherType 0x0800                    | constant                                  |
| 14-15 | IPv4 version/IHL 0x45, TOS 0        | constant                                  |
| 16-17 | IPv4 total length 78                | constant (the message has a fixed length) |
| 18-21 | identification 0, flags DF          | constant                                  |
| 22-23 | TTL, protocol UDP                   | template, constant                        |
| 24-25 | IPv4 header checksum                | template, pipelined ahead (below)         |
| 26-33 | source IP, destination IP           | template                                  |
| 34-37 | UDP source port, destination port   | template                                  |
| 38-41 | UDP length 58, UDP checksum 0       | constant (IPv4 allows 0: none)            |
| 42-44 | SoupBinTCP length 48, type 'U'      | constant                                  |
| 45-91 | OUCH Enter Order (OUCH_ENTER_ORDER) | 'O', request, UserRefNum, template firm   |
|       |                                     | fields, ClOrdID, appendage length 0       |

Identification 0 with DF (RFC 6864 allows it for atomic datagrams, and the real EnterOrder
capture does the same) keeps the header checksum a function of the template alone: it is
summed from the template snapshot by a 4-stage pipeline, ready long before byte 24 goes out.

Latency (`LATENCY = 0`): a request accepted in cycle k has the frame's first byte valid on
`source` in that same cycle k. The first byte is the destination MAC's, which is template only,
so it already waits in the output register; `source.valid` is `sink.valid` while idle (one
gate), and the per-order fields are first needed 46 bytes in. Every other output byte comes
from a register loaded by a byte counter's mux, so no path crosses the block.

The template is snapshotted while idle: a frame carries the template as it was in the cycle
before its request was accepted, so the host may rewrite it at any time without ever tearing a
frame. UserRefNum: the order accepted next takes `next_user_ref` if `set_user_ref` is high in
its cycle, else one more than the previous order's (from 1 after reset): strictly increasing
as long as the host only sets it upwards (it wraps after 2**32 orders).

One byte per cycle; a wider datapath replaces this block only (`OrderRequest` and the template
are width-independent).
"""

from amaranth import Array, C, Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.beats import TxBeat
from hdl.formats import (
    BOOK_BUY,
    BOOK_SELL,
    ETHERTYPE_IPV4,
    IP_PROTO_UDP,
    ORDER_TEMPLATE,
    OUCH_ENTER_ORDER,
    OUCH_ENTER_ORDER_LEN,
    OUCH_SIDES,
    SOUPBIN_UNSEQUENCED,
)

__all__ = ["OrderRequest", "TemplateLayout", "OrderBuilder", "FRAME_LEN"]


class OrderRequest(data.Struct):
    """An order to send, from the risk gate."""
    side: 1                   # BOOK_BUY / BOOK_SELL
    qty: 32
    price: 32                 # ITCH price (OUCH's 8 bytes have the same 4 implied decimals)
    symbol: 64                # 8 ASCII characters, space padded, first character most significant


# The template registers, as the host writes them (`host.model.order_frame.template_bits`).
TemplateLayout = data.StructLayout({name: unsigned(8 * size) for name, size in ORDER_TEMPLATE})

_SOUP_LEN = 1 + OUCH_ENTER_ORDER_LEN                 # SoupBinTCP length: type byte + message
_UDP_LEN = 8 + 2 + _SOUP_LEN
_IP_LEN = 20 + _UDP_LEN
FRAME_LEN = 14 + _IP_LEN
_IP_VERSION_IHL, _IP_FLAGS_DF = 0x45, 0x4000
_CL_ORD_PREFIX = "TK"                                # host.model.ouch.cl_ord_id
_HEX = "0123456789ABCDEF"


def _be_bytes(value: Value, size: int) -> list[Value]:
    """`value` as `size` wire bytes, most significant first."""
    assert len(value) == 8 * size, (len(value), size)
    return [value[8 * (size - 1 - i):8 * (size - i)] for i in range(size)]


def _text(text: str) -> Value:
    return C(int.from_bytes(text.encode("ascii"), "big"), 8 * len(text))


class OrderBuilder(wiring.Component):
    """Ports:
    - `template`: the frame template (`TemplateLayout`), from the host's registers.
    - `next_user_ref`, `set_user_ref`: where UserRefNum numbering (re)starts.
    - `sink`: order requests; taken whenever no frame is in progress.
    - `source`: the frame, one byte per beat, `last` on byte FRAME_LEN - 1; holds its byte
      while `ready` is low, at any point of the frame.
    - `user_ref`: the UserRefNum of the frame in progress (or of the last one built).
    - `user_ref_next`: the UserRefNum the next frame takes (unless `set_user_ref` says else).
    - `frames_built`: frames whose last byte has been taken.
    """

    LATENCY = 0             # cycles from a request's acceptance to its first byte on `source`
    CHECKSUM_STAGES = 4     # cycles from a template change to its IPv4 checksum

    template: In(TemplateLayout)
    next_user_ref: In(32)
    set_user_ref: In(1)
    sink: In(stream.Signature(OrderRequest))
    source: Out(stream.Signature(TxBeat))
    user_ref: Out(32)
    user_ref_next: Out(32)
    frames_built: Out(32)

    def elaborate(self, platform):
        m = Module()

        tpl = Signal(TemplateLayout)        # the snapshot the frame in progress is built from
        req = Signal(OrderRequest)
        ref = Signal(32)
        next_ref = Signal(32, init=1)
        busy = Signal()                     # a request is accepted and its last byte not taken
        index = Signal(range(FRAME_LEN + 1), init=1)    # of the byte after the one on `source`
        byte, last = Signal(8), Signal()    # on `source`

        m.d.comb += [
            self.sink.ready.eq(~busy),
            self.source.valid.eq(busy | self.sink.valid),
            self.source.payload.data.eq(byte),
            self.source.payload.last.eq(last),
            self.user_ref.eq(ref),
            self.user_ref_next.eq(next_ref),
        ]
        accept = self.sink.valid & ~busy
        transfer = self.source.valid & self.source.ready
        finish = transfer & last

        # UserRefNum.
        base = Mux(self.set_user_ref, self.next_user_ref, next_ref)
        # `req` loads in every idle cycle, not only on `accept`: it is read only while busy, and
        # so `sink.valid` (a late, wide-fanout signal in the order path) does not enable it.
        with m.If(~busy):
            m.d.sync += req.eq(self.sink.payload)
        with m.If(accept):
            m.d.sync += [busy.eq(1), ref.eq(base), next_ref.eq(base + 1)]
        with m.Elif(self.set_user_ref):
            m.d.sync += next_ref.eq(self.next_user_ref)

        # ClOrdID's hex digits, registered off `ref`: first needed 78 bytes in.
        cl_hex = Signal(64)
        digit = Array(C(ord(c), 8) for c in _HEX)
        m.d.sync += cl_hex.eq(Cat(digit[ref[4 * i:4 * i + 4]] for i in range(8)))

        # IPv4 header checksum of the snapshot: the ones-complement sum of the header's 16-bit
        # words, the constant ones folded into one, two carry folds, complemented.
        const_words = ((_IP_VERSION_IHL << 8) + _IP_LEN + 0 + _IP_FLAGS_DF + IP_PROTO_UDP)
        ip_a, ip_b, ip_c = Signal(17), Signal(17), Signal(17)
        total, folded, checksum = Signal(19), Signal(17), Signal(16)
        m.d.sync += [
            ip_a.eq(tpl.src_ip[16:] + tpl.src_ip[:16]),
            ip_b.eq(tpl.dst_ip[16:] + tpl.dst_ip[:16]),
            ip_c.eq(Cat(C(0, 8), tpl.ttl) + const_words),
            total.eq(ip_a + ip_b + ip_c),
            folded.eq(total[:16] + total[16:]),
            # A second carry cannot ripple: folded > 0xFFFF means its low half is at most 6.
            checksum.eq(~(folded[:16] + folded[16])),
        ]

        # The frame, byte by byte, as the module docstring's table.
        side = Mux(req.side == BOOK_SELL, _text(OUCH_SIDES[BOOK_SELL]), _text(OUCH_SIDES[BOOK_BUY]))
        ouch = {
            "type": _text("O"), "user_ref": ref, "side": side, "quantity": req.qty,
            "symbol": req.symbol, "price": Cat(req.price, C(0, 32)),
            "time_in_force": tpl.time_in_force, "display": tpl.display,
            "capacity": tpl.capacity, "intermarket_sweep": tpl.intermarket_sweep,
            "cross_type": tpl.cross_type,
            "cl_ord_id": Cat(_text(" " * (14 - len(_CL_ORD_PREFIX) - 8)), cl_hex,
                             _text(_CL_ORD_PREFIX)),
            "appendage_length": C(0, 16),
        }
        fields = [
            (tpl.dst_mac, 6), (tpl.src_mac, 6), (C(ETHERTYPE_IPV4, 16), 2),
            (C(_IP_VERSION_IHL, 8), 1), (C(0, 8), 1), (C(_IP_LEN, 16), 2), (C(0, 16), 2),
            (C(_IP_FLAGS_DF, 16), 2), (tpl.ttl, 1), (C(IP_PROTO_UDP, 8), 1), (checksum, 2),
            (tpl.src_ip, 4), (tpl.dst_ip, 4),
            (tpl.src_port, 2), (tpl.dst_port, 2), (C(_UDP_LEN, 16), 2), (C(0, 16), 2),
            (C(_SOUP_LEN, 16), 2), (_text(SOUPBIN_UNSEQUENCED), 1),
        ] + [(ouch[name], size) for name, size in OUCH_ENTER_ORDER]
        frame = [b for value, size in fields for b in _be_bytes(Value.cast(value), size)]
        assert len(frame) == FRAME_LEN

        # The output register: byte 0 of the live template while idle (with the snapshot taken
        # alongside), then each next byte as the current one is taken. `index` only ever
        # selects bytes 1..FRAME_LEN - 1 here.
        #
        # Written per state so that `sink.valid`, which comes late in its cycle in the order
        # path and would fan out to every snapshot bit, reaches only the few registers that
        # need it: while idle `last` is 0 and `index` 1 whatever the request, and the snapshot
        # takes `tpl_before`, the template of the cycle before (what a frame accepted now must
        # carry), in every idle cycle. While busy the snapshot is read and held (the checksum
        # pipeline has it from the cycle after the acceptance: 4 cycles, needed 24 bytes in).
        tpl_before = Signal(TemplateLayout)
        m.d.sync += tpl_before.eq(self.template)
        first = _be_bytes(self.template.dst_mac, 6)[0]
        with m.If(busy):
            with m.If(finish):
                m.d.sync += [busy.eq(0), self.frames_built.eq(self.frames_built + 1),
                             tpl.eq(self.template), byte.eq(first), index.eq(1), last.eq(0)]
            with m.Elif(transfer):
                m.d.sync += [byte.eq(Cat(frame).word_select(index, 8)), index.eq(index + 1),
                             last.eq(index == FRAME_LEN - 1)]
        with m.Else():
            m.d.sync += [tpl.eq(tpl_before), index.eq(Mux(transfer, 2, 1)), last.eq(0)]
            with m.If(transfer):
                m.d.sync += byte.eq(_be_bytes(tpl_before.dst_mac, 6)[1])
            with m.Elif(~self.sink.valid):
                m.d.sync += byte.eq(first)

        return m
