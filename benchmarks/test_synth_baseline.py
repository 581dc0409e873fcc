"""Fmax/utilisation baseline: a 32-bit counter through the ECP5 flow (a measurement, `make bench`).

Gives every later Fmax number a reference point on the same machine and tool versions.
"""

import pytest

from tools.synth import _demo_counter, synth_report


@pytest.mark.bench
def test_counter_fmax(tmp_path):
    r = synth_report(_demo_counter(), "counter", 150, build_dir=tmp_path)
    print(f"\ncounter: Fmax {r['fmax_mhz']} MHz, util {r['util']}, seconds {r['seconds']}")
    assert r["fmax_mhz"], "nextpnr reported no clock"
