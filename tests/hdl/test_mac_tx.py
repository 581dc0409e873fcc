"""MacTx and TxArbiter in Amaranth's simulator: GMII pins against `host.model.mac_tx`, cycle
for cycle, and back through MacRx."""

import zlib
from dataclasses import dataclass

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hdl.formats import ETH_IFG, ETH_MIN_FRAME, ETH_PREAMBLE_LEN, FCS_LEN, Drop
from hdl.mac_rx import MacRx
from hdl.mac_tx import MacTx
from hdl.tx_arbiter import TxArbiter
from host.model import mac_tx as model
from host.model import pack
from host.model.mac_tx import HOST, ORDERS, TxFrame

HEAD = ETH_PREAMBLE_LEN + 1


@dataclass
class Run:
    trace: list[tuple[int, int, int]]       # (cycle, TXD, TX_ER) while TX_EN (or TX_ER)
    starts: dict[str, list[int]]            # per input: cycle each frame's first byte was taken
    received: list[tuple[bytes, Drop]]      # what MacRx made of the wire
    frames: int
    underruns: int


def simulate(orders: list[TxFrame], host: list[TxFrame] | None = None) -> Run:
    """Drive the frames into MacTx (through a TxArbiter unless `host` is None) as TxFrame says
    a source does; record the pins, what a MacRx on the pins receives, and the counters."""
    m = Module()
    m.submodules.mac = mac = MacTx()
    m.submodules.rx = rx = MacRx()
    m.d.comb += [rx.gmii.rxd.eq(mac.gmii.txd), rx.gmii.rx_dv.eq(mac.gmii.tx_en),
                 rx.gmii.rx_er.eq(mac.gmii.tx_er)]
    inputs = {ORDERS: mac.sink}
    if host is not None:
        m.submodules.arbiter = arbiter = TxArbiter()
        wiring.connect(m, arbiter.source, mac.sink)
        inputs = {ORDERS: arbiter.orders, HOST: arbiter.host}
    sources = {ORDERS: orders, HOST: host or []}
    expected = model.transmit(orders, host or [])
    run = Run([], {ORDERS: [], HOST: []}, [], 0, 0)

    def driver(port):
        sink, frames = inputs[port], sources[port]

        async def drive(ctx):
            cycle = 0
            for frame in frames:
                while cycle < frame.at:
                    await ctx.tick()
                    cycle += 1
                for i, byte in enumerate(frame.data):
                    for _ in range(frame.holes.get(i, 0)):
                        ctx.set(sink.valid, 0)
                        await ctx.tick()
                        cycle += 1
                    ctx.set(sink.valid, 1)
                    ctx.set(sink.payload, {"data": byte, "last": i == len(frame.data) - 1})
                    while True:
                        _, _, ready = await ctx.tick().sample(sink.ready)
                        cycle += 1
                        if ready:
                            break
                    if i == 0:
                        run.starts[port].append(cycle - 1)
                ctx.set(sink.valid, 0)
        return drive

    async def pins(ctx):
        # Amaranth 0.5: each item is (clk edge, reset, *sampled values); sample n shows cycle n.
        cycle = -1
        async for _, _, en, txd, er in ctx.tick().sample(mac.gmii.tx_en, mac.gmii.txd,
                                                          mac.gmii.tx_er):
            cycle += 1
            if en or er:        # TX_ER without TX_EN (carrier extension) must never show
                run.trace.append((cycle, txd if en else -1, er))

    async def receiver(ctx):
        data = bytearray()
        async for _, _, valid, payload in ctx.tick().sample(rx.source.valid, rx.source.payload):
            if valid and payload.end:
                run.received.append((bytes(data), Drop(payload.drop)))
                data = bytearray()
            elif valid:
                data.append(payload.data)

    async def timer(ctx):
        # Long enough for the model's last frame and MacRx's verdict, and for a gateware that
        # is slower than the model to show it.
        last = max((s.end for s in expected), default=0)
        await ctx.tick().repeat(last + 2 * ETH_IFG)
        run.frames, run.underruns = ctx.get(mac.frames), ctx.get(mac.underruns)

    sim = Simulator(m)
    sim.add_clock(8e-9)
    for port in inputs:
        sim.add_testbench(driver(port), background=True)
    sim.add_testbench(pins, background=True)
    sim.add_testbench(receiver, background=True)
    sim.add_testbench(timer)
    sim.run()
    return run


def check(run: Run, orders: list[TxFrame], host: list[TxFrame] | None = None) -> None:
    """The gateware did exactly what the model says."""
    expected = model.transmit(orders, host or [])
    assert run.trace == model.gmii_trace(expected)
    for port in (ORDERS, HOST):
        assert run.starts[port] == [s.start for s in expected if s.port == port]
    assert run.frames == len(expected)
    assert run.underruns == sum(s.error_from is not None for s in expected)


def bursts(trace: list[tuple[int, int, int]]) -> list[tuple[int, bytes]]:
    """(first cycle, bytes) of each run of consecutive TX_EN cycles."""
    out: list[tuple[int, bytearray]] = []
    for cycle, txd, _ in trace:
        if out and out[-1][0] + len(out[-1][1]) == cycle:
            out[-1][1].append(txd)
        else:
            out.append((cycle, bytearray([txd])))
    return [(c, bytes(b)) for c, b in out]


def payload(n: int, seed: int = 0) -> bytes:
    return bytes((seed * 31 + i * 7 + 1) & 0xFF for i in range(n))


def test_latency_constants_agree_with_model() -> None:
    assert MacTx.LATENCY == model.LATENCY == 1
    assert MacTx.DATA_LATENCY == MacTx.LATENCY + HEAD
    assert TxArbiter.LATENCY == 0


@pytest.mark.parametrize("through_arbiter", [False, True])
def test_single_frame(through_arbiter: bool) -> None:
    """The first preamble byte the cycle after the first byte is offered to an idle line, the
    arbiter adding nothing; then SFD, the bytes, the FCS."""
    data = payload(100)
    orders = [TxFrame(data, at=5)]
    run = simulate(orders, [] if through_arbiter else None)
    check(run, orders, [])
    assert run.starts[ORDERS] == [5]
    ((first, wire),) = bursts(run.trace)
    assert first == 5 + MacTx.LATENCY
    assert wire == b"\x55" * 7 + b"\xd5" + data + zlib.crc32(data).to_bytes(4, "little")
    assert run.trace[HEAD][0] == 5 + MacTx.DATA_LATENCY
    assert not any(er for _, _, er in run.trace)
    assert run.received == [(data + wire[-FCS_LEN:], Drop.NONE)]


@pytest.mark.parametrize("n", [1, 2, ETH_MIN_FRAME - FCS_LEN - 1, ETH_MIN_FRAME - FCS_LEN,
                               ETH_MIN_FRAME - FCS_LEN + 1])
def test_minimum_size_padding(n: int) -> None:
    data = payload(n, seed=n)
    orders = [TxFrame(data)]
    run = simulate(orders)
    check(run, orders)
    ((_, wire),) = bursts(run.trace)
    frame = wire[HEAD:]
    assert len(frame) == max(ETH_MIN_FRAME, n + FCS_LEN)
    assert frame[:n] == data and not any(frame[n:-FCS_LEN])
    assert zlib.crc32(frame[:-FCS_LEN]).to_bytes(4, "little") == frame[-FCS_LEN:]
    assert run.received == [(frame, Drop.NONE)]


def test_back_to_back_frames_keep_the_gap() -> None:
    """Frames waiting all the time go out exactly ETH_IFG idle cycles apart, the MAC's ready
    rising in the last idle cycle."""
    orders = [TxFrame(payload(n, seed=n)) for n in (60, 1, 200, 61)]
    run = simulate(orders)
    check(run, orders)
    spans = bursts(run.trace)
    assert len(spans) == 4
    for (c0, b0), (c1, _) in zip(spans, spans[1:], strict=False):
        assert c1 - (c0 + len(b0)) == ETH_IFG
    assert [d for _, d in run.received] == [Drop.NONE] * 4


def test_orders_first_when_both_wait() -> None:
    """A host frame waiting since before an order still goes after it."""
    host = [TxFrame(payload(100, 1), at=0), TxFrame(payload(70, 2), at=3)]
    orders = [TxFrame(payload(50, 3), at=40)]
    run = simulate(orders, host)
    check(run, orders, host)
    sent = [wire[HEAD:-FCS_LEN] for _, wire in bursts(run.trace)]
    assert sent == [pack.pad(f.data) for f in (host[0], orders[0], host[1])]


def test_host_frame_in_progress_is_not_cut() -> None:
    """An order offered during a host frame waits for that frame and the gap, no more."""
    host = [TxFrame(payload(300, 1)), TxFrame(payload(60, 2), at=1)]
    orders = [TxFrame(payload(60, 3), at=2)]
    run = simulate(orders, host)
    check(run, orders, host)
    (c0, b0), (c1, b1), (_, b2) = bursts(run.trace)
    assert b0 == pack.gmii(pack.with_fcs(host[0].data))
    assert b1[HEAD:HEAD + 60] == orders[0].data and b2[HEAD:HEAD + 60] == host[1].data
    assert run.starts[ORDERS] == [c0 + len(b0) - 1 + ETH_IFG]
    assert c1 == c0 + len(b0) + ETH_IFG


def test_underrun_spoils_only_its_frame() -> None:
    """A source that misses a byte time: 0x00 with TX_ER there and TX_ER to the end of the
    frame, MacRx drops it, the MAC stays in step and the next frame is good."""
    data = payload(80, 5)
    orders = [TxFrame(data, holes={10: 3, 20: 1}), TxFrame(payload(64, 6))]
    run = simulate(orders)
    check(run, orders)
    (c0, b0), _ = bursts(run.trace)
    assert len(b0) == HEAD + 84 + FCS_LEN
    assert b0[HEAD + 10:HEAD + 13] == bytes(3) and b0[HEAD + 13] == data[10]
    errors = [er for c, _, er in run.trace if c < c0 + len(b0)]
    assert errors == [0] * (HEAD + 10) + [1] * (len(b0) - HEAD - 10)
    assert (run.frames, run.underruns) == (2, 1)
    assert [d for _, d in run.received] == [Drop.MAC_PHY_ERROR, Drop.NONE]


def test_round_trip_through_mac_rx() -> None:
    frames = [payload(n, seed=n) for n in (1, 14, 59, 60, 61, 64, 150, 1514)]
    orders = [TxFrame(f, at=i * 7) for i, f in enumerate(frames)]
    run = simulate(orders)
    check(run, orders)
    assert run.received == [(pack.with_fcs(pack.pad(f)), Drop.NONE) for f in frames]


def frames_on(draw, port: str, cycles: int) -> list[TxFrame]:
    out, at = [], 0
    for i in range(draw(st.integers(0, 5))):
        at += draw(st.integers(0, cycles))
        n = draw(st.sampled_from([1, 2, 30, 59, 60, 61, 62, 100, 130]))
        holes = {}
        if n > 2 and draw(st.integers(0, 9)) == 0:
            holes = {draw(st.integers(1, n - 1)): draw(st.integers(1, 3))}
        out.append(TxFrame(payload(n, seed=i + 50 * (port == HOST)), at=at, holes=holes))
    return out


@st.composite
def traffic(draw) -> tuple[list[TxFrame], list[TxFrame]]:
    cycles = draw(st.sampled_from([0, 20, 100, 250]))    # from back to back to a sparse line
    return frames_on(draw, ORDERS, cycles), frames_on(draw, HOST, cycles)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traffic())
def test_random_traffic_matches_model(frames: tuple[list[TxFrame], list[TxFrame]]) -> None:
    """Both inputs, random frame sizes, random idle time between frames (often none, so both
    wait together), now and then an underrun: the pins match the model cycle for cycle."""
    orders, host = frames
    run = simulate(orders, host)
    check(run, orders, host)
    expected = model.transmit(orders, host)
    assert run.received == [(s.wire[HEAD:],
                             Drop.NONE if s.error_from is None else Drop.MAC_PHY_ERROR)
                            for s in expected]
