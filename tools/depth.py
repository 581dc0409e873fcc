"""Where the long paths are in a synthesised ECP5 netlist, in seconds instead of nextpnr's tens
of minutes (a developer's tool: `python tools/depth.py build/synth/core/synth.json`).

Walks Yosys' `synth_ecp5 -json` output from every register, memory output and input port to
every register and memory input with a rough delay model (ns, speed grade 8): a LUT4 level
0.35 plus a net of 0.55 + 0.12 * log2(fan-out), carry chains at 0.05 a bit, block RAM
clock-to-out 3.5, LUT RAM read 0.6. Absolute numbers are only indicative (placement decides the
nets); the *order* of the paths and their LUT levels are what to act on. Prints the worst
endpoints and the path to the worst of them, named by the nets Amaranth gave them.
Why: a routed report of the core takes nextpnr ~30 minutes; this takes ~10 seconds.
With `--luts` it counts the logic cells instead, by the register each feeds: which blocks are
big (`python tools/depth.py build/synth/book/synth.json --luts`).
"""

import argparse
import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

FF_CO, SETUP = 0.5, 0.1
LOGIC = {"LUT4": 0.35, "PFUMX": 0.2, "L6MUX21": 0.2}
CARRY_IN, CARRY_OUT, CARRY_SUM = 0.05, 0.3, 0.45
EBR_CO, LUTRAM_READ = 3.5, 0.6
CLOCKED_OUT = {"TRELLIS_FF": FF_CO, "DP16KD": EBR_CO}


def net_delay(fanout: int) -> float:
    return 0.55 + 0.12 * math.log2(max(fanout, 1))


def wire_delay(a: tuple[int, int] | None, b: tuple[int, int] | None, fanout: int) -> float:
    """With placement (nextpnr --write): by the distance in tiles, as nextpnr estimates before
    routing; without: by fan-out."""
    if a is None or b is None:
        return net_delay(fanout)
    return 0.3 + 0.045 * (abs(a[0] - b[0]) + abs(a[1] - b[1]))


def position(cell: dict) -> tuple[int, int] | None:
    bel = cell.get("attributes", {}).get("NEXTPNR_BEL", "")
    parts = bel.split("/")
    if len(parts) < 2 or not parts[0].startswith("X"):
        return None
    return int(parts[0][1:]), int(parts[1][1:])


def _top_module(path: str) -> dict:
    """The top module of a Yosys/nextpnr JSON netlist."""
    modules = json.loads(Path(path).read_text())["modules"]
    return next((m for m in modules.values() if m.get("attributes", {}).get("top")),
                next(iter(modules.values())))


def analyse(path: str, top: int, through: str | None = None) -> list[str]:
    """The report as lines: the `top` worst endpoints, then the path to the worst (of those
    whose net name starts with `through`, if given)."""
    mod = _top_module(path)
    names: dict[int, str] = {}
    for name, n in mod["netnames"].items():
        for b in n["bits"]:
            if isinstance(b, int) and (b not in names or len(name) < len(names[b])):
                names[b] = name
    drivers: dict[int, tuple[str, str]] = {}
    loads: dict[int, list[tuple[str, str]]] = defaultdict(list)
    cells = mod["cells"]
    for cname, c in cells.items():
        for port, bits in c["connections"].items():
            d = c["port_directions"].get(port)
            for b in bits:
                if not isinstance(b, int):
                    continue
                if d == "output":
                    drivers[b] = (cname, port)
                else:
                    loads[b].append((cname, port))

    arrival: dict[int, float] = {}
    via: dict[int, int | None] = {}
    sys.setrecursionlimit(100000)

    def arc(ctype: str, inp: str, out: str) -> float | None:
        """Delay from input `inp` to output `out` of a combinational arc, None if none."""
        if ctype in LOGIC:
            return LOGIC[ctype]
        if ctype == "CCU2C":
            if inp == "CIN":
                return CARRY_IN if out == "COUT" else CARRY_SUM - CARRY_OUT + CARRY_IN
            if out == "COUT":
                return CARRY_OUT
            if out[-1] != inp[-1]:          # the other half's inputs reach S only via carry
                return CARRY_OUT + CARRY_IN if out == "S1" else None
            return CARRY_SUM
        if ctype == "TRELLIS_COMB":          # nextpnr's packed slice half (placed netlists)
            if inp.startswith(("WAD", "WD", "WRE")):
                return None                   # LUT RAM write side: an endpoint
            if out == "OFX":                  # the slice's wide-function mux: M ? FXB : FXA
                return LOGIC["PFUMX"] if inp in ("M", "FXA", "FXB") else None
            if inp in ("M", "FXA", "FXB"):
                return None
            if inp == "FCI":
                return CARRY_IN if out == "FCO" else CARRY_SUM - CARRY_OUT + CARRY_IN
            return CARRY_OUT if out == "FCO" else LOGIC["LUT4"]
        if ctype == "TRELLIS_DPR16X4":
            return LUTRAM_READ if inp.startswith("RAD") and out.startswith("DO") else None
        return None

    def at(bit: int) -> float:
        """Arrival time of net `bit` (its driver's output, before the net delay)."""
        if bit in arrival:
            return arrival[bit]
        arrival[bit], via[bit] = 0.0, None          # loop guard; inputs and constants
        drv = drivers.get(bit)
        if drv is None:
            return 0.0
        cname, port = drv
        c = cells[cname]
        if c["type"] in CLOCKED_OUT:
            arrival[bit] = CLOCKED_OUT[c["type"]]
            return arrival[bit]
        best, best_in = 0.0, None
        for inp, bits in c["connections"].items():
            if c["port_directions"].get(inp) != "input":
                continue
            d = arc(c["type"], inp, port)
            if d is None:
                continue
            for b in bits:
                if not isinstance(b, int):
                    continue
                src = drivers.get(b)
                if src and cells[src[0]]["type"] in ("VCC", "GND", "VHI", "VLO") \
                        or names.get(b, "").startswith(("$PACKER_VCC", "$PACKER_GND")):
                    continue                          # constants have no timing
                wire = 0.0 if inp in ("CIN", "FCI") or "$CCU2_FCI_INT" in names.get(b, "") \
                    else wire_delay(
                    position(cells[src[0]]) if src else None, position(c), len(loads[b]))
                t = at(b) + wire + d
                if t > best:
                    best, best_in = t, b
        arrival[bit], via[bit] = best, best_in
        return best

    ends = []
    for cname, c in cells.items():
        if c["type"] not in ("TRELLIS_FF", "DP16KD", "TRELLIS_DPR16X4", "TRELLIS_RAMW",
                             "TRELLIS_COMB"):
            continue
        for port, bits in c["connections"].items():
            if c["port_directions"].get(port) != "input" or port in ("CLK", "CLKA", "CLKB",
                                                                     "WCK"):
                continue
            if c["type"] == "TRELLIS_COMB" and not port.startswith(("WAD", "WD", "WRE")):
                continue
            for b in bits:
                if isinstance(b, int) and b in drivers:
                    t = at(b) + SETUP + wire_delay(position(cells[drivers[b][0]]),
                                                   position(c), len(loads[b]))
                    ends.append((t, b, cname))
    ends.sort(reverse=True)
    lines = [f"worst {top} endpoints (ns, rough):"]
    seen = set()
    for t, b, cname in ends:
        # One line per register or memory, not per bit: strip the bit and cell suffixes.
        key = re.sub(r"(\.\d+)+$", "", re.sub(r"(_TRELLIS|_DI|\$RAMW|_LUT4).*", "",
                                                 str(names.get(b, b))))
        if key in seen:
            continue
        seen.add(key)
        lines.append(f"  {t:5.1f}  {names.get(b, b)}  -> {cname}")
        if len(seen) >= top:
            break
    if through is not None:
        ends = [e for e in ends if str(names.get(e[1], e[1])).startswith(through)]
        if not ends:
            return lines + [f"no endpoint named {through}..."]
    t, b, _ = ends[0]
    lines.append(f"path to the worst ({t:.1f} ns), source first:")
    chain = []
    while b is not None:
        chain.append(b)
        b = via.get(b)
    for b in reversed(chain):
        drv = drivers.get(b, ("input", ""))
        ctype = cells[drv[0]]["type"] if drv[0] in cells else "input"
        where = position(cells[drv[0]]) if drv[0] in cells else None
        lines.append(f"  {arrival.get(b, 0):5.1f}  {ctype:16s} {str(where or ''):10s} "
                     f"{names.get(b, b)}")
    return lines


def luts_by_register(path: str, top: int) -> list[str]:
    """Where the logic goes, in a synthesised (not placed) netlist: LUT4, carry and wide-mux
    cells counted by the name Yosys gave the net each drives, stripped to its base name. That
    name is mostly the register (or memory port) the cell's logic cone feeds, so the counts say
    which registers' input logic is big. (ABC's cells have no `src` to go by.)"""
    mod = _top_module(path)
    names: dict[int, str] = {}
    for name, n in mod["netnames"].items():
        for b in n["bits"]:
            old = names.get(b)
            if isinstance(b, int) and (old is None or (old.startswith("$")
                                                       and not name.startswith("$"))
                                       or (old.startswith("$") == name.startswith("$")
                                           and len(name) < len(old))):
                names[b] = name
    counts: dict[str, int] = defaultdict(int)
    for c in mod["cells"].values():
        if c["type"] not in ("LUT4", "CCU2C", "PFUMX", "L6MUX21"):
            continue
        out = next(p for p, d in c["port_directions"].items() if d == "output")
        name = names.get(c["connections"][out][0], "?")
        counts[re.split(r"_TRELLIS|_LUT4|_PFUMX|_L6MUX|_CCU2|\[|\.", name)[0]] += 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    lines = [f"{sum(counts.values())} LUT4/CCU2C/PFUMX/L6MUX21 cells; by the net they drive:"]
    lines += [f"  {n:7d}  {name}" for name, n in ranked[:top]]
    return lines


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--luts", action="store_true",
                    help="count logic cells by the register they feed instead (synth.json)")
    ap.add_argument("--path", metavar="NAME",
                    help="show the path to the worst endpoint whose net name starts with NAME")
    a = ap.parse_args()
    if a.luts:
        print("\n".join(luts_by_register(a.json, a.top)))
    else:
        print("\n".join(analyse(a.json, a.top, a.path)))
