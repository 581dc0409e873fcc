"""Throughput of the feed handler's reference model, `host.model.feed.FeedModel.receive`.

ITCH messages per second through `receive` over the shared million-message stream
(`benchmarks.stream`): the GMII bursts are built (or loaded) first and only the `receive` calls
are timed, in one process, with the garbage collector on but the heap left by earlier fixtures
frozen. Counted are all ITCH messages the frames carry (every type; about half are decoded into
dicts, the rest only counted), with frames/s and the equivalent wire rate next to the 1 Gb/s
the card takes. The model is what `hostctl replay --engine model` and the backtester run, so
below ~300k messages/s (wall clock) the benchmark profiles a second pass with cProfile and
prints the functions where the time goes (`TICKNIC_BENCH_PROFILE=1` profiles at any speed).
CPU time is printed too: on a shared machine the wall clock also counts the time other jobs
held the CPU.
"""

import cProfile
import os
import pstats
from pathlib import Path

import pytest

from benchmarks.conftest import run_model_timed
from benchmarks.stream import REPO

WANTED = 300_000
TOP = 10


@pytest.mark.bench
def test_model_throughput(stream, model_run, figure):
    n, wall, cpu = stream.n_messages, model_run.seconds, model_run.cpu_seconds
    rate = n / wall
    figure(f"model throughput: {rate:.0f} ITCH messages/s wall clock ({n} messages, "
           f"{len(model_run.messages)} of them decoded, in {wall:.2f} s; wanted >= {WANTED}: "
           f"{'met' if rate >= WANTED else 'MISSED'})")
    mbit = stream.wire_bytes * 8 / cpu / 1e6
    figure(f"model throughput by CPU time: {n / cpu:.0f} ITCH messages/s ({cpu:.2f} s), "
           f"{stream.n_frames / cpu:.0f} frames/s, {mbit:.0f} Mb/s of wire time "
           f"({mbit / 1000:.2f}x the 1 Gb/s line rate)")
    if rate >= WANTED and not os.environ.get("TICKNIC_BENCH_PROFILE"):
        return
    profile = cProfile.Profile()
    run_model_timed(stream, profile)
    stats = pstats.Stats(profile)
    total = stats.total_tt
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)
    for (file, line, func), (_cc, calls, tottime, cumtime, _callers) in rows[:TOP]:
        path = Path(file)
        where = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
        figure(f"model hot spot: {100 * tottime / total:4.1f}% of profiled time in {func} "
               f"({where}:{line}; {calls} calls, {cumtime:.2f} s with callees)")
