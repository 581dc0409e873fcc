"""Verilator simulation speed of the whole feed handler, in clock cycles per second.

The shared million-message stream (`benchmarks.stream`, about 38M cycles at 1 Gb/s line rate)
through `sim.feed_rtl.FeedRtl`: the gateware Verilated once (cached under build/verilated/) and
driven by the generated C++ loop of `sim.verilated`. Two figures: the C++ loop alone (reset,
every cycle, writing the output events), which is the simulator's speed, and the whole
`FeedRtl.run` call as a user sees it (encoding the stimulus in Python, the run, and decoding the
half a million message structs back into dicts), which is what a replay costs. Also how much
slower than the real card at 125 MHz that is, and what building the model cost this session.
Wall-clock figures suffer when other jobs share the machine (the summary prints the load
average), so the simulator process's CPU time is given too.
"""

import pytest


@pytest.mark.bench
def test_verilator_speed(stream, rtl_run, figure):
    o = rtl_run.outcome
    loop = o.cycles / o.seconds
    whole = o.cycles / rtl_run.run_seconds
    cpu_s = rtl_run.child_cpu_seconds
    by_cpu = (f"{o.cycles / cpu_s / 1e6:.2f} M cycles/s by the simulator process's CPU time "
              f"({cpu_s:.2f} s)" if cpu_s > 0 else "no simulator process CPU time recorded")
    figure(f"verilator speed: {loop / 1e6:.2f} M cycles/s in the C++ loop "
           f"({o.cycles} cycles in {o.seconds:.2f} s wall; {125e6 / loop:.0f}x slower than the "
           f"card at 125 MHz; {len(o.messages) / o.seconds:.0f} decoded messages/s); {by_cpu}")
    figure(f"verilator end to end: FeedRtl.run {rtl_run.run_seconds:.1f} s = "
           f"{whole / 1e6:.2f} M cycles/s, {stream.n_messages / rtl_run.run_seconds:.0f} "
           f"ITCH messages/s (Python stimulus encoding and event decoding "
           f"{rtl_run.run_seconds - o.seconds:.1f} s of it)")
    built = (f"Verilated and compiled this session in {rtl_run.setup_seconds:.1f} s"
             if rtl_run.built else
             f"cached build reused (conversion + hash {rtl_run.setup_seconds:.1f} s)")
    figure(f"verilator model: {built}")
