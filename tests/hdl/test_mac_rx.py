"""MacRx in Amaranth's simulator: every MAC-level verdict, against the model's."""

import pytest
from amaranth.sim import Simulator

from hdl.formats import ETH_MAX_FRAME, ETH_MIN_FRAME, Drop
from hdl.mac_rx import MacRx
from host.model import pack
from host.model.feed import FeedModel


def run_mac(bursts: list[tuple[bytes, int | None]]) -> list[tuple[bytes, Drop, int]]:
    """Drive GMII bursts (12 idle cycles apart); return (data, verdict, latency of the first
    byte) per frame, as MacRx's source stream shows them."""
    dut = MacRx()
    frames: list[tuple[bytes, Drop, int]] = []

    async def drive(ctx):
        for burst, error_at in bursts:
            for i, byte in enumerate(burst):
                ctx.set(dut.gmii.rxd, byte)
                ctx.set(dut.gmii.rx_dv, 1)
                ctx.set(dut.gmii.rx_er, i == error_at)
                await ctx.tick()
            ctx.set(dut.gmii.rx_dv, 0)
            ctx.set(dut.gmii.rx_er, 0)
            await ctx.tick().repeat(12)

    async def collect(ctx):
        data, first_at, cycle = bytearray(), None, -1   # the sample at tick k shows cycle k-1
        # Amaranth 0.5: each item is (clk edge, reset, *sampled values).
        async for _, _, valid, payload in ctx.tick().sample(dut.source.valid, dut.source.payload):
            cycle += 1
            if not valid:
                continue
            if payload.end:
                frames.append((bytes(data), Drop(payload.drop), first_at))
                data, first_at = bytearray(), None
            else:
                if first_at is None:
                    first_at = cycle
                data.append(payload.data)

    sim = Simulator(dut)
    sim.add_clock(8e-9)
    sim.add_testbench(drive)
    sim.add_testbench(collect, background=True)
    sim.run()
    return frames


def frame(n: int) -> bytes:
    """A frame of n bytes, FCS included, with a good FCS."""
    return pack.with_fcs(bytes(range(256)) * (n // 256) + bytes(range(n % 256))[: n - 4])


CASES = {
    "good": (pack.gmii(frame(ETH_MIN_FRAME)), None),
    "good, 1-byte preamble": (pack.gmii(frame(100), preamble=1), None),
    "good, no preamble": (pack.gmii(frame(100), preamble=0), None),
    "longest": (pack.gmii(frame(ETH_MAX_FRAME)), None),
    "oversize": (pack.gmii(frame(ETH_MAX_FRAME + 1)), None),
    "runt": (pack.gmii(frame(ETH_MIN_FRAME - 1)), None),
    "bad FCS": (pack.gmii(frame(80)[:-1] + b"\x00"), None),
    "PHY error": (pack.gmii(frame(80)), 40),
    "PHY error in preamble": (pack.gmii(frame(80)), 2),
    "bad SFD": (b"\x55" * 7 + b"\xd4" + frame(80), None),
    "preamble only": (b"\x55" * 7, None),
}


@pytest.mark.parametrize("name", CASES)
def test_verdict_matches_model(name: str) -> None:
    burst, error_at = CASES[name]
    ((data, drop, _),) = run_mac([(burst, error_at)])
    expected = FeedModel().receive(burst, error_at).drop
    # The model's verdict for a frame without IPv4 is ETH_DST when the MAC accepted it.
    assert drop == (Drop.NONE if expected is Drop.ETH_DST else expected)
    sfd = burst.find(0xD5) if drop is not Drop.MAC_PREAMBLE else len(burst)
    assert data == burst[sfd + 1:][:ETH_MAX_FRAME]


def test_back_to_back_and_latency() -> None:
    """Frames at the minimum gap each get their own verdict; bytes come out LATENCY cycles
    after they were on the pins (first byte after 7 preamble bytes + SFD)."""
    bursts = [(pack.gmii(frame(64 + i)), None) for i in range(3)]
    frames = run_mac(bursts)
    assert [d for _, d, _ in frames] == [Drop.NONE] * 3
    assert [len(f) for f, _, _ in frames] == [64, 65, 66]
    assert frames[0][2] == 8 + MacRx.LATENCY
