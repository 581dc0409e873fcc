"""`hostctl sim start` / `hostctl sim stop`: the co-simulation server (`sim.cosim`) as a
background process.

`start` launches `python -m sim.cosim serve` in its own session (so it outlives the shell and a
Ctrl-C there does not reach it), with its log and pid file in the runtime directory, waits until
it answers a register read of `id.magic` (the first start builds the card with Verilator, which
takes minutes; later starts reuse build/cosim/), and prints the endpoint. `stop` asks the
server to stop, waits for the process to exit, and falls back to SIGTERM.

Runtime directory: $TICKNIC_RUNTIME_DIR, else $XDG_RUNTIME_DIR/ticknic, else build/cosim/run in
the repository. One pid file per endpoint, so several servers can run side by side.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hdl.regs import MAGIC
from host.device import DeviceError
from host.process import alive
from host.transport_sim import SimTransport

__all__ = ["runtime_dir", "pid_path", "start", "stop", "StartOptions", "SimCtlError",
           "DEFAULT_ENDPOINT"]

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"


class SimCtlError(Exception):
    """A one-line message; `code` is hostctl's exit code (2 bad input, 1 the server failed)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def runtime_dir() -> Path:
    if os.environ.get("TICKNIC_RUNTIME_DIR"):
        path = Path(os.environ["TICKNIC_RUNTIME_DIR"])
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "ticknic"
    else:
        path = REPO / "build" / "cosim" / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pid_path(endpoint: str) -> Path:
    return runtime_dir() / f"cosim-{re.sub(r'[^A-Za-z0-9.]+', '_', endpoint)}.pid"


def _answers(endpoint: str, timeout: float) -> bool:
    t = SimTransport(endpoint, timeout=timeout)
    try:
        return t.read32(0) == MAGIC
    except DeviceError:
        return False
    finally:
        t.close()


@dataclass
class StartOptions:
    endpoint: str = DEFAULT_ENDPOINT
    listen: tuple[str, ...] = ()
    pcap: tuple[Path, ...] = ()
    design: str | None = None
    book: str | None = None
    allow_remote: bool = False
    no_events: bool = False
    wait: float = 900.0                 # the first Verilator build of the card takes minutes


def start(opts: StartOptions) -> dict[str, object]:
    """Start a server and wait until it serves; returns what `hostctl sim start` prints."""
    pidfile = pid_path(opts.endpoint)
    if pidfile.exists():
        info = json.loads(pidfile.read_text())
        if alive(int(info["pid"])):
            raise SimCtlError(f"a co-simulation server already runs at {opts.endpoint} (pid "
                              f"{info['pid']}): `hostctl sim stop` first")
        pidfile.unlink()
    log = pidfile.with_suffix(".log")
    cmd = [sys.executable, "-m", "sim.cosim", "serve", "--endpoint", opts.endpoint,
           "--pidfile", str(pidfile)]
    for feed in opts.listen:
        cmd += ["--listen", feed]
    for path in opts.pcap:
        cmd += ["--pcap", str(path.resolve())]
    if opts.design:
        cmd += ["--design", opts.design]
    if opts.book:
        cmd += ["--book", opts.book]
    if opts.allow_remote:
        cmd.append("--allow-remote")
    if opts.no_events:
        cmd.append("--no-events")
    env = dict(os.environ)
    # This checkout's packages, whatever the caller's directory and installed copy.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + opts.wait
    while True:
        code = proc.poll()
        if code is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise SimCtlError(f"the co-simulation server exited with code {code}: {tail[0]} "
                              f"(log: {log})", 2 if code == 2 else 1)
        if pidfile.exists() and _answers(opts.endpoint, 0.5):
            break
        if time.monotonic() > deadline:
            os.kill(proc.pid, signal.SIGTERM)
            raise SimCtlError(f"the co-simulation server did not answer at {opts.endpoint} "
                              f"within {opts.wait:g} s (log: {log})")
        time.sleep(0.2)
    info = json.loads(pidfile.read_text())
    m = re.fullmatch(r"tcp://(.+):(\d+)", opts.endpoint)
    return {"pid": proc.pid, "endpoint": opts.endpoint, "events": info.get("events"),
            "url": f"sim://{m[1]}:{m[2]}" if m else None, "log": str(log)}


def stop(endpoint: str = DEFAULT_ENDPOINT, wait: float = 10.0) -> int:
    """Stop the server at `endpoint` that `start` started; returns its pid."""
    pidfile = pid_path(endpoint)
    if not pidfile.exists():
        raise SimCtlError(f"no co-simulation server was started at {endpoint} (no {pidfile})")
    pid = int(json.loads(pidfile.read_text())["pid"])
    t = SimTransport(endpoint, timeout=2.0)
    try:
        t.request({"op": "stop"})
    except DeviceError:
        if alive(pid):
            os.kill(pid, signal.SIGTERM)    # wedged or not answering: the server's handler
    finally:
        t.close()
    deadline = time.monotonic() + wait
    while alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            pidfile.unlink(missing_ok=True)
            raise SimCtlError(f"the co-simulation server (pid {pid}) did not stop within "
                              f"{wait:g} s; killed it")
        time.sleep(0.05)
    pidfile.unlink(missing_ok=True)
    return pid
