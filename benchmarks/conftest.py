"""Shared fixtures for `make bench`: the one benchmark stream, its model and Verilator runs, and
the figure log.

Every benchmark prints its figures as it goes (one line each, `make bench` runs pytest with
`-s`) and records them with the `figure` fixture; pytest's terminal summary repeats them all in
one block at the end, so the figures are together whatever else pytest printed.

The stream, the model run and the Verilator run are session fixtures: built once, shared by the
decode-latency, Verilator-speed and model-throughput benchmarks. Each run is timed inside its
fixture, so which benchmark happens to ask first does not change any figure.
"""

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from benchmarks.stream import Stream, bench_stream
from host.model.feed import FeedModel, Subscription
from hdl.formats import Drop
from sim.feed_rtl import FeedRtl, Outcome

_FIGURES = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_FIGURES] = []


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = config.stash.get(_FIGURES, [])
    if lines:
        terminalreporter.section("ticknic benchmark figures")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def figure(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """`figure("decode latency: ...")` prints one line now and again in the final summary."""
    lines = pytestconfig.stash[_FIGURES]

    def record(line: str) -> None:
        print(("\n" if not lines else "") + line, flush=True)
        lines.append(line)

    return record


@pytest.fixture(scope="session")
def stream(figure: Callable[[str], None]) -> Stream:
    s = bench_stream()
    how = (f"loaded from cache in {s.load_seconds:.1f} s (generating took {s.gen_seconds:.1f} s)"
           if s.cached else f"generated in {s.gen_seconds:.1f} s (cached under build/bench/)")
    figure(f"stream: {s.n_messages} ITCH messages in {s.n_frames} frames, "
           f"{s.wire_bytes} GMII byte times; {how}")
    return s


@dataclass
class ModelRun:
    messages: list[dict[str, Any]]
    drops: list[Drop]
    counters: dict[str, Any]
    seconds: float            # FeedModel.receive calls only


def run_model_timed(stream: Stream) -> ModelRun:
    """`sim.feed_rtl.run_model` with only the `receive` calls inside the clock.

    The heap is frozen first so the garbage collector does not rescan whatever earlier fixtures
    left alive (the Verilator run's half a million message dicts would otherwise slow this run
    down by a varying amount); the objects the model itself creates are still collected.
    """
    schedule = stream.schedule
    model = FeedModel(schedule.own_mac, [
        Subscription(s.group, s.port, s.session, s.next_seq) if s else None
        for s in schedule.subscriptions])
    work = [(b.data, b.error_at, c) for b, c in zip(schedule.bursts, schedule.start_cycles())]
    messages: list[dict[str, Any]] = []
    drops: list[Drop] = []
    gc.collect()
    gc.freeze()
    try:
        receive = model.receive
        start = time.perf_counter()
        for data, error_at, cycle in work:
            r = receive(data, error_at, cycle)
            messages += r.messages
            drops.append(r.drop)
        seconds = time.perf_counter() - start
    finally:
        gc.unfreeze()
    return ModelRun(messages, drops, model.counters(), seconds)


@pytest.fixture(scope="session")
def model_run(stream: Stream) -> ModelRun:
    return run_model_timed(stream)


@dataclass
class RtlRun:
    outcome: Outcome          # .cycles, .seconds (the C++ loop), .emitted_at, ...
    built: bool               # this session compiled the model (else: cache hit)
    setup_seconds: float      # FeedRtl(): Amaranth -> Verilog, hash, and the build if any
    run_seconds: float        # FeedRtl.run: stimulus encode + C++ run + event decode


@pytest.fixture(scope="session")
def rtl_run(stream: Stream) -> RtlRun:
    start = time.perf_counter()
    rtl = FeedRtl()
    setup = time.perf_counter() - start
    start = time.perf_counter()
    outcome = rtl.run(stream.schedule)
    return RtlRun(outcome, rtl.sim.built, setup, time.perf_counter() - start)
