"""OrderBuilder in Amaranth's simulator: every frame byte for byte against
`host.model.order_frame.order_frame`, with idle gaps between requests, random backpressure on
the source, template rewrites at any cycle and UserRefNum (re)starts; first-byte latency,
stream rules, checksums and the OUCH decoding checked on every frame."""

import random
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.lib import data
from amaranth.sim import Simulator
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hdl.formats import BOOK_BUY, BOOK_SELL, ORDER_TEMPLATE, ORDER_TEMPLATE_TEXT, OUCH_SIDES
from hdl.order_builder import FRAME_LEN, OrderBuilder, TemplateLayout
from host.capture import read_capture
from host.model import pack
from host.model.order_frame import DEFAULT_TEMPLATE, OrderTemplate, order_frame, template_bits
from host.model.ouch import cl_ord_id, decode_enter_order

CAPTURE = (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nasdaq"
           / "Nasdaq.Nsm.Ouch.v5.0" / "EnterOrderMessage.pcap")


@dataclass(frozen=True)
class Order:
    side: int                 # BOOK_BUY / BOOK_SELL
    qty: int
    price: int
    symbol: str

    def request(self) -> dict[str, int]:
        return {"side": self.side, "qty": self.qty, "price": self.price,
                "symbol": int.from_bytes(self.symbol.ljust(8).encode("ascii"), "big")}


@dataclass
class Built:
    """One frame as the builder sent it, and what the model says it should be."""
    order: Order
    accepted: int             # cycle the request was taken
    template: OrderTemplate   # live in the cycle before
    user_ref: int             # the model's UserRefNum for it
    first_valid: int = -1     # first cycle its first byte was valid on `source`
    last_taken: int = -1
    data: bytearray = field(default_factory=bytearray)
    user_ref_port: int = -1   # `user_ref` while its last byte was taken
    built_before: int = -1    # `frames_built` then

    def expected(self) -> bytes:
        o = self.order
        return order_frame(self.template, self.user_ref, OUCH_SIDES[o.side], o.qty, o.symbol,
                           o.price)


def run(orders: list[Order], gaps: list[int], *, ready_p: float = 1.0, seed: int = 0,
        templates: dict[int, OrderTemplate] | None = None,
        sets: dict[int, int] | None = None) -> tuple[list[Built], int]:
    """Present each order after `gaps[i]` idle cycles (counted from the previous acceptance;
    gaps[0] >= 1 so the template is loaded first), take bytes when a coin with `ready_p` says
    so, load `templates[c]` from cycle c on (cycle 0: DEFAULT_TEMPLATE unless given) and raise
    set_user_ref with `sets[c]` in cycle c. Returns the frames and the final `frames_built`."""
    templates = {0: DEFAULT_TEMPLATE} | (templates or {})
    sets = sets or {}
    dut = OrderBuilder()
    rng = random.Random(seed)
    built: list[Built] = []
    final = [0]

    async def bench(ctx):
        assert len(gaps) == len(orders) and gaps[0] >= 1
        pending = list(orders)
        presenting: Order | None = None
        wait = gaps[0]                      # idle cycles before presenting pending[0]
        template = DEFAULT_TEMPLATE
        live: list[OrderTemplate] = []      # the template in each cycle
        next_ref = 1
        held = None                         # (byte, last) shown but not taken last cycle
        cycle = 0
        while pending or presenting or any(b.last_taken < 0 for b in built):
            assert cycle < 400 * (len(orders) + 1), "the builder stalled"
            if cycle in templates:
                template = templates[cycle]
                ctx.set(dut.template.as_value(), template_bits(template))
            live.append(template)
            ctx.set(dut.set_user_ref, cycle in sets)
            ctx.set(dut.next_user_ref, sets.get(cycle, 0))
            if presenting is None and pending:
                if wait:
                    wait -= 1
                else:
                    presenting = pending.pop(0)
            ctx.set(dut.sink.valid, presenting is not None)
            if presenting is not None:
                ctx.set(dut.sink.payload, presenting.request())
            ready = rng.random() < ready_p
            ctx.set(dut.source.ready, ready)
            _, _, sink_ready, valid, beat, user_ref, frames_built = await ctx.tick().sample(
                dut.sink.ready, dut.source.valid, dut.source.payload, dut.user_ref,
                dut.frames_built)

            base = sets.get(cycle, next_ref)
            if presenting is not None and sink_ready:
                built.append(Built(presenting, cycle, live[cycle - 1], base))
                next_ref = (base + 1) & 0xFFFF_FFFF
                presenting = None
                wait = gaps[len(built)] if len(built) < len(gaps) else 0
            elif cycle in sets:
                next_ref = sets[cycle]
            if held is not None:            # stream rule: a shown beat stays until taken
                assert valid and (beat.data, beat.last) == held, cycle
            if valid:
                frame = next((b for b in built if b.last_taken < 0), None)
                assert frame is not None, f"cycle {cycle}: source valid without a request"
                if frame.first_valid < 0:
                    frame.first_valid = cycle
                held = None if ready else (beat.data, beat.last)
                if ready:
                    frame.data.append(beat.data)
                    assert beat.last == (len(frame.data) == FRAME_LEN), cycle
                    if beat.last:
                        frame.last_taken = cycle
                        frame.user_ref_port, frame.built_before = user_ref, frames_built
            cycle += 1
        _, _, final[0] = await ctx.tick().sample(dut.frames_built)

    sim = Simulator(dut)
    sim.add_clock(8e-9)
    sim.add_testbench(bench)
    sim.run()
    return built, final[0]


def check(built: list[Built], frames_built: int) -> None:
    assert frames_built == len(built)
    for n, b in enumerate(built):
        frame = bytes(b.data)
        assert frame == b.expected(), n
        assert b.first_valid == b.accepted + OrderBuilder.LATENCY
        assert (b.user_ref_port, b.built_before) == (b.user_ref, n)
        assert pack.ipv4_checksum(frame[14:34]) == 0
        payload = pack.payload_of(frame)
        assert payload is not None and payload[:3] == (48).to_bytes(2, "big") + b"U"
        fields, appendage = decode_enter_order(payload[3:])
        o = b.order
        assert appendage == b"" and fields | {
            "user_ref": b.user_ref, "side": OUCH_SIDES[o.side], "quantity": o.qty,
            "symbol": o.symbol.ljust(8), "price": o.price,
            "cl_ord_id": cl_ord_id(b.user_ref)} == fields
        assert {n: fields[n] for n in ORDER_TEMPLATE_TEXT} == {
            n: getattr(b.template, n) for n in ORDER_TEMPLATE_TEXT}


ascii_char = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
templates = st.builds(
    OrderTemplate, dst_mac=st.integers(0, 2**48 - 1), src_mac=st.integers(0, 2**48 - 1),
    src_ip=st.integers(0, 2**32 - 1), dst_ip=st.integers(0, 2**32 - 1),
    src_port=st.integers(0, 0xFFFF), dst_port=st.integers(0, 0xFFFF), ttl=st.integers(0, 255),
    time_in_force=ascii_char, display=ascii_char, capacity=ascii_char,
    intermarket_sweep=ascii_char, cross_type=ascii_char)
orders = st.builds(
    Order, side=st.sampled_from([BOOK_BUY, BOOK_SELL]), qty=st.integers(0, 2**32 - 1),
    price=st.integers(0, 2**32 - 1),
    symbol=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
                   max_size=8))

# Checksum edges: every word at its maximum, all zero, a header whose sum is exactly 0xFFFF
# (checksum 0), and one whose first carry fold carries again (sum 0x2FFFF). 0x855F is the sum of
# the header's constant words.
ONES = OrderTemplate(2**48 - 1, 2**48 - 1, 2**32 - 1, 2**32 - 1, 0xFFFF, 0xFFFF, 255,
                     "~", "~", "~", "~", "~")
ZEROS = OrderTemplate(0, 0, 0, 0, 0, 0, 0, " ", " ", " ", " ", " ")
SUM_FFFF = OrderTemplate(src_ip=(0xFFFF - 0x855F) << 16, dst_ip=0, ttl=0)
CARRY_TWICE = OrderTemplate(src_ip=2**32 - 1, dst_ip=(0x2FFFF - 0x855F - 0x1FFFE) << 16, ttl=0)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
@example(None)
def test_random_frames_match_the_model(data_) -> None:
    """Random templates (some rewritten mid-frame), orders, gaps, backpressure, user_ref sets."""
    if data_ is None:       # the checksum edges, back to back, ready always
        tpl = {0: ONES, 100: ZEROS, 250: SUM_FFFF, 300: CARRY_TWICE}     # some mid-frame
        os = [Order(BOOK_SELL, 2**32 - 1, 2**32 - 1, "ZZZZZZZZ"), Order(BOOK_BUY, 0, 0, "A")] * 3
        built, n = run(os, [1, 0, 100, 0, 0, 0], templates=tpl)
        assert [b.template for b in built] == [ONES, ONES, ZEROS, SUM_FFFF, CARRY_TWICE,
                                               CARRY_TWICE]
        check(built, n)
        return
    os = data_.draw(st.lists(orders, min_size=1, max_size=6))
    gaps = data_.draw(st.lists(st.integers(0, 30), min_size=len(os), max_size=len(os)))
    gaps[0] = max(gaps[0], 1)
    horizon = 150 * len(os)
    tpl = data_.draw(st.dictionaries(st.integers(0, horizon), templates, max_size=4))
    sets = data_.draw(st.dictionaries(st.integers(1, horizon), st.integers(0, 2**32 - 1),
                                      max_size=2))
    ready_p = data_.draw(st.sampled_from([1.0, 0.8, 0.4]))
    check(*run(os, gaps, ready_p=ready_p, seed=data_.draw(st.integers(0, 2**32)),
               templates=tpl, sets=sets))


def test_first_byte_latency_and_back_to_back_frames() -> None:
    """The first byte is valid in the request's own cycle; with the source always ready a frame
    takes FRAME_LEN cycles, and a request waiting behind it is taken the next cycle."""
    os = [Order(BOOK_BUY, 100, 1_000_000, "AAPL"), Order(BOOK_SELL, 200, 2_000_000, "MSFT"),
          Order(BOOK_BUY, 300, 3_000_000, "NVDA")]
    built, n = run(os, [3, 0, 7])
    check(built, n)
    assert OrderBuilder.LATENCY == 0 and built[0].first_valid == built[0].accepted == 3
    for b in built:
        assert b.last_taken - b.first_valid == FRAME_LEN - 1
    assert built[1].accepted == built[0].last_taken + 1
    assert built[2].accepted == built[1].last_taken + 1     # its gap of 7 passed meanwhile


def test_user_ref_is_strictly_increasing_and_restarts_where_set() -> None:
    """From 1 after reset, +1 per order; a set applies to the next order, even one accepted in
    the set's own cycle."""
    os = [Order(BOOK_BUY, 1, 1, "X")] * 6
    # Back to back, orders are taken at cycles 1, 93, 185, 277, ...: set mid-frame, then in
    # an acceptance's own cycle.
    built, n = run(os, [1, 0, 0, 0, 0, 0], sets={120: 1000, 277: 70000})
    check(built, n)
    assert [b.accepted for b in built][:4] == [1, 93, 185, 277]
    assert [b.user_ref for b in built] == [1, 2, 1000, 70000, 70001, 70002]


def test_template_register_layout_is_the_host_packing() -> None:
    """`template_bits` (host) and `TemplateLayout` (gateware) agree on every field."""
    for t in (DEFAULT_TEMPLATE, ONES, SUM_FFFF):
        view = data.Const(TemplateLayout, template_bits(t))
        for name, _ in ORDER_TEMPLATE:
            value = getattr(t, name)
            assert view[name] == (ord(value) if name in ORDER_TEMPLATE_TEXT else value), name


def test_the_capture_order_rebuilt_by_the_gateware() -> None:
    """The real EnterOrder's order and firm fields through the builder: the same OUCH message
    but for what the card sets itself (ClOrdID from UserRefNum, no appendage) and the side
    (the capture's is 'T', sell short; the card sends B or S)."""
    frame = read_capture(CAPTURE).frames[0]
    captured, _ = decode_enter_order(frame[14 + 4 + 20 + 20 + 3:])     # VLAN tag, TCP
    firm = {n: captured[n] for n in ORDER_TEMPLATE_TEXT}
    assert firm | {"time_in_force": DEFAULT_TEMPLATE.time_in_force} == {
        n: getattr(DEFAULT_TEMPLATE, n) for n in ORDER_TEMPLATE_TEXT}
    template = OrderTemplate(**firm)
    order = Order(BOOK_SELL, captured["quantity"], captured["price"], captured["symbol"])
    built, n = run([order], [2], templates={0: template}, sets={2: captured["user_ref"]})
    check(built, n)
    fields, _ = decode_enter_order(pack.payload_of(bytes(built[0].data))[3:])
    assert fields == captured | {"side": "S", "cl_ord_id": cl_ord_id(113),
                                 "appendage_length": 0}
