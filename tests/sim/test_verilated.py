"""sim.verilated: exact cycle semantics, wide payloads, set/pulse, final values, build cache."""

import time
from pathlib import Path

import pytest
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sim.verilated import RESET_CYCLES, Stimulus, Verilated

# Under the repo's build/ (not tmp_path) so a second `pytest` run reuses the binary.
BUILD_DIR = Path(__file__).resolve().parents[2] / "build" / "verilated"
MASK96 = (1 << 96) - 1


class Echo(wiring.Component):
    """Registers every GMII byte into a 12-byte window and reports it with the cycle counter.

    The payload is 129 bits (5 words, the last one partial) to exercise VlWide assembly.
    """

    rxd: In(8)
    rx_dv: In(1)
    rx_er: In(1)
    cfg: In(16, init=0x1234)
    cfg_we: In(1)
    mid: In(40)  # QData in C++ (two words)
    wide: In(72)  # VlWide<3> in C++
    out: Out(
        stream.Signature(data.StructLayout({"window": 96, "cycle": 32, "er": 1}), always_ready=True)
    )
    count: Out(32)  # free-running, combinational from the counter register: reads k in cycle k
    cfg_now: Out(16)  # cfg straight through
    cfg_q: Out(16)  # cfg latched by cfg_we
    we_cycle: Out(32)  # counter value when cfg_we was last high
    we_count: Out(8)  # number of cycles cfg_we was high
    mid_inv: Out(40)  # ~mid
    wide_inv: Out(72)  # ~wide

    def elaborate(self, platform):
        m = Module()
        cyc = Signal(32)
        window = Signal(96)
        shifted = Cat(self.rxd, window[:88])
        m.d.sync += cyc.eq(cyc + 1)
        m.d.comb += [
            self.count.eq(cyc),
            self.cfg_now.eq(self.cfg),
            self.mid_inv.eq(~self.mid),
            self.wide_inv.eq(~self.wide),
        ]
        with m.If(self.rx_dv):
            m.d.sync += window.eq(shifted)
        m.d.sync += [
            self.out.valid.eq(self.rx_dv),
            self.out.payload.window.eq(shifted),
            self.out.payload.cycle.eq(cyc),
            self.out.payload.er.eq(self.rx_er),
        ]
        with m.If(self.cfg_we):
            m.d.sync += [
                self.cfg_q.eq(self.cfg),
                self.we_cycle.eq(cyc),
                self.we_count.eq(self.we_count + 1),
            ]
        return m


@pytest.fixture(scope="module")
def echo():
    v = Verilated(Echo(), name="echo_test", streams=("out",), build_dir=BUILD_DIR)
    if v.built:
        print(f"\nbuilt {v.binary} in {v.build_seconds:.1f} s")
    return v


def expected_events(stim_bytes, start_cycles, errors):
    """Model of Echo: (cycle, payload) for each byte, given the cycle each byte was driven in."""
    window, events = 0, []
    for byte, k, er in zip(stim_bytes, start_cycles, errors, strict=True):
        window = ((window << 8) | byte) & MASK96
        events.append((k + 1, window | (k << 96) | (int(er) << 128)))
    return events


def test_port_names_follow_signature_paths(echo):
    assert "out__payload" in echo.ports and echo.ports["out__payload"].width == 129
    assert "out__ready" not in echo.ports  # always_ready: a Const, not a port
    assert "module echo_test(" in echo.verilog
    for name in ("clk", "rst", "out__valid", "out__payload", "rxd", "cfg_we"):
        assert f" {name};" in echo.verilog


def test_cycle_numbers_and_wide_payload(echo):
    s = Stimulus()
    s.idle(10)
    a = bytes(range(0x10, 0x24))  # 20 bytes from cycle 10
    s.gmii(a, error_at=5)
    s.idle(7)
    assert s.cycles == 37
    s.gmii(b"\xaa\xbb")  # back to back with the next call: one burst, cycles 37..39
    s.gmii(b"\xcc")
    assert s.cycles == 40
    r = echo.run(s, drain=5)

    assert r.cycles == 45
    assert r.stimulus_cycles == 40
    cycles = list(range(10, 30)) + [37, 38, 39]
    errors = [i == 5 for i in range(20)] + [False] * 3
    assert r.events["out"] == expected_events(a + b"\xaa\xbb\xcc", cycles, errors)
    # The counter reads k in cycle k, so after the last edge it equals the cycle count.
    assert r.final["count"] == r.cycles
    assert r.final["out__valid"] == 0
    # The payload register updates every cycle, valid or not: it holds the last cycle's counter.
    assert (r.final["out__payload"] >> 96) & 0xFFFF_FFFF == r.cycles - 1
    assert r.seconds > 0


def test_set_pulse_and_input_init(echo):
    s = Stimulus()
    s.idle(3)
    s.set("cfg", 0xBEEF)
    s.gmii(b"\x01\x02")  # set takes no cycle: the burst starts at cycle 3
    s.idle(2)
    assert s.cycles == 7
    s.pulse("cfg_we")  # its own cycle: 7
    s.idle(4)
    s.set("cfg", -1)  # two's complement of the port width
    s.set("mid", 0x12_3456_789A).set("wide", 0xAB_CDEF_0123_4567_89AB)
    r = echo.run(s, drain=1)

    assert [c for c, _ in r.events["out"]] == [4, 5]
    assert r.final["cfg_q"] == 0xBEEF
    assert r.final["we_cycle"] == 7
    assert r.final["we_count"] == 1  # exactly one cycle high
    assert r.final["cfg_now"] == 0xFFFF
    assert r.final["mid_inv"] == 0xED_CBA9_8765
    assert r.final["wide_inv"] == 0x54_3210_FEDC_BA98_7654

    r = echo.run(Stimulus().idle(1), drain=0)
    assert r.final["cfg_now"] == 0x1234  # inputs start at their Amaranth init value
    assert r.final["cfg_q"] == 0  # and reset (held RESET_CYCLES cycles) clears registers
    assert RESET_CYCLES == 4


def test_empty_run_and_drain(echo):
    r = echo.run(Stimulus(), drain=0)
    assert (r.cycles, r.events["out"], r.final["count"]) == (0, [], 0)
    r = echo.run(Stimulus().gmii(b"\x55"), drain=0)
    assert r.events["out"] == []  # the registered output would appear in cycle 1: not run
    r = echo.run(Stimulus().gmii(b"\x55"), drain=1)
    assert [c for c, _ in r.events["out"]] == [1]


# The rejected components are never elaborated; Amaranth would warn about that.
@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_bad_stimulus_is_rejected_with_what_is_allowed(echo):
    with pytest.raises(ValueError, match="`nope` is not a settable input.*cfg, cfg_we"):
        echo.run(Stimulus().set("nope", 1))
    with pytest.raises(ValueError, match="`rxd` is not a settable input"):
        echo.run(Stimulus().pulse("rxd"))
    with pytest.raises(ValueError, match="must fit in 1 bits"):
        echo.run(Stimulus().pulse("cfg_we", 2))
    with pytest.raises(ValueError, match="`error_at` must index"):
        Stimulus().gmii(b"\x00\x01", error_at=2)
    with pytest.raises(ValueError, match="`gmii` port `gmii__rxd` is not an input"):
        Verilated(Echo(), name="echo_test", gmii=("gmii__rxd", "rx_dv", "rx_er"))
    with pytest.raises(ValueError, match="stream `count` needs output ports"):
        Verilated(Echo(), name="echo_test", streams=("count",))


def test_second_construction_hits_the_cache(echo):
    start = time.perf_counter()
    again = Verilated(Echo(), name="echo_test", streams=("out",), build_dir=BUILD_DIR)
    elapsed = time.perf_counter() - start
    print(f"\ncache hit: {elapsed * 1000:.0f} ms (conversion + hash)")
    assert not again.built
    assert again.binary == echo.binary
    assert elapsed < 3.0
    assert again.run(Stimulus().idle(5), drain=0).final["count"] == 5
