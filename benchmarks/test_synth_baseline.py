"""Fmax/utilisation baseline: a 32-bit counter through the ECP5 flow (a measurement, `make bench`).

Gives every later Fmax number a reference point on the same machine and tool versions: the same
flow as the feed handler's (`tools.synth`: LFE5U-85F, CABGA381, speed 8, out of context), on a
design whose critical path is one 32-bit carry chain.
"""

import pytest

from tools.synth import _demo_counter, synth_report


@pytest.mark.bench
def test_counter_fmax(tmp_path, figure):
    r = synth_report(_demo_counter(), "counter", 150, build_dir=tmp_path)
    assert r["fmax_mhz"], "nextpnr reported no clock"
    u, s = r["util"], r["seconds"]
    figure(f"counter baseline: Fmax {r['fmax_min_mhz']:.1f} MHz, LUT4 {u['lut4']['used']}, "
           f"FF {u['ff']['used']}; yosys {s['yosys']:.0f} s, nextpnr {s['nextpnr']:.0f} s")
