"""Shared fixtures for `make bench`: the one benchmark stream, its model and Verilator runs, and
the figure log.

Every benchmark prints its figures as it goes (one line each, `make bench` runs pytest with
`-s`) and records them with the `figure` fixture; pytest's terminal summary repeats them all in
one block at the end, so the figures are together whatever else pytest printed.

The stream, the model run and the Verilator run are session fixtures: built once, shared by the
decode-latency, Verilator-speed and model-throughput benchmarks. Each run is timed inside its
fixture, so which benchmark happens to ask first does not change any figure.
"""

import cProfile
import gc
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from benchmarks.stream import Stream, bench_stream
from hdl.formats import Drop
from host.model.feed import FeedModel, Subscription
from sim.feed_rtl import FeedRtl, Outcome

_FIGURES = pytest.StashKey[list[str]]()


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def pytest_configure(config: pytest.Config) -> None:
    # Wall-clock figures mean little on a busy machine: say how busy it was.
    config.stash[_FIGURES] = [f"machine: {os.cpu_count()} CPUs, load average {_load()} at start"]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = config.stash.get(_FIGURES, [])
    if len(lines) > 1:
        terminalreporter.section("ticknic benchmark figures")
        for line in [*lines, f"machine: load average {_load()} at end"]:
            terminalreporter.write_line(line)


@pytest.fixture
def figure(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """`figure("decode latency: ...")` prints one line now and again in the final summary."""
    lines = pytestconfig.stash[_FIGURES]
    first = True

    def record(line: str) -> None:
        nonlocal first
        # The first line of a test starts below pytest's "benchmarks/test_x.py " prefix.
        print(("\n" if first else "") + line, flush=True)
        first = False
        lines.append(line)

    return record


@pytest.fixture(scope="session")
def stream(pytestconfig: pytest.Config) -> Stream:
    s = bench_stream()
    how = (f"loaded from cache in {s.load_seconds:.1f} s (generating took {s.gen_seconds:.1f} s)"
           if s.cached else f"generated in {s.gen_seconds:.1f} s (cached under build/bench/)")
    line = (f"stream: {s.n_messages} ITCH messages in {s.n_frames} frames, "
            f"{s.wire_bytes} GMII byte times; {how}")
    print("\n" + line, flush=True)
    pytestconfig.stash[_FIGURES].append(line)
    return s


@dataclass
class ModelRun:
    messages: list[dict[str, Any]]
    drops: list[Drop]
    counters: dict[str, Any]
    seconds: float            # FeedModel.receive calls only, wall clock
    cpu_seconds: float        # the same, CPU time of this process (less hurt by a busy machine)


def run_model_timed(stream: Stream, profile: cProfile.Profile | None = None) -> ModelRun:
    """`sim.feed_rtl.run_model` with only the `receive` calls inside the clock (and inside
    `profile`, if given).

    The heap is frozen first so the garbage collector does not rescan whatever earlier fixtures
    left alive (the Verilator run's half a million message dicts would otherwise slow this run
    down by a varying amount); the objects the model itself creates are still collected.
    """
    schedule = stream.schedule
    model = FeedModel(schedule.own_mac, [
        Subscription(s.group, s.port, s.session, s.next_seq) if s else None
        for s in schedule.subscriptions])
    starts = schedule.start_cycles()
    work = [(b.writes, b.data, b.error_at, c)
            for b, c in zip(schedule.bursts, starts, strict=True)]
    messages: list[dict[str, Any]] = []
    drops: list[Drop] = []
    gc.collect()
    gc.freeze()
    try:
        receive = model.receive
        if profile:
            profile.enable()
        start, cpu = time.perf_counter(), time.process_time()
        for writes, data, error_at, cycle in work:
            for index, sub in writes:     # run-time table writes (none in the bench stream)
                model.subscribe(index, None if sub is None else Subscription(
                    sub.group, sub.port, sub.session, sub.next_seq))
            r = receive(data, error_at, cycle)
            messages += r.messages
            drops.append(r.drop)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        if profile:
            profile.disable()
    finally:
        gc.unfreeze()
    return ModelRun(messages, drops, model.counters(), seconds, cpu)


@pytest.fixture(scope="session")
def model_run(stream: Stream) -> ModelRun:
    return run_model_timed(stream)


@dataclass
class RtlRun:
    outcome: Outcome          # .cycles, .seconds (the C++ loop), .emitted_at, ...
    built: bool               # this session compiled the model (else: cache hit)
    setup_seconds: float      # FeedRtl(): Amaranth -> Verilog, hash, and the build if any
    run_seconds: float        # FeedRtl.run: stimulus encode + C++ run + event decode
    child_cpu_seconds: float  # CPU time of the simulator process (the C++ loop and its I/O)


@pytest.fixture(scope="session")
def rtl_run(stream: Stream) -> RtlRun:
    start = time.perf_counter()
    rtl = FeedRtl()
    setup = time.perf_counter() - start
    start = time.perf_counter()
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    outcome = rtl.run(stream.schedule)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - child.ru_utime - child.ru_stime
    return RtlRun(outcome, rtl.sim.built, setup, seconds, cpu)
