"""The one random ITCH stream the decode-latency, Verilator-speed and model benchmarks share.

`bench_stream(n)` gives a `sim.feed_rtl.Schedule`: one MoldUDP64 session (`sim.traffic.Feed`)
subscribed in row 0, `n` messages of every ITCH type (drawn uniformly, so about half are of a
decoded type) in frames of 1..32 messages, untagged or on VLAN 5, back to back at the minimum
inter-frame gap, i.e. 1 Gb/s line rate. Seed and size are fixed, so every run measures the same
bytes; `TICKNIC_BENCH_MESSAGES` shrinks it for a quick look.

Generating a million messages takes seconds of Python, so the GMII bursts are pickled under
build/bench/, keyed on the seed, the size and the source of every module that shapes the bytes
(a changed generator or layout makes a new stream, never a stale one).
"""

import hashlib
import os
import pickle
import random
import time
from dataclasses import dataclass
from pathlib import Path

from host.model import pack
from host.model.feed import Subscription
from sim.feed_rtl import Burst, Schedule
from sim.traffic import Feed, random_frames

__all__ = ["SEED", "N_MESSAGES", "Stream", "bench_stream"]

REPO = Path(__file__).resolve().parent.parent
SEED = 20240607
N_MESSAGES = int(os.environ.get("TICKNIC_BENCH_MESSAGES", "1000000"))
MAX_PER_FRAME = 32
# Whatever decides the bytes of the stream; their text is part of the cache key.
_SOURCES = ("sim/traffic.py", "host/model/pack.py", "host/model/itch.py", "hdl/formats.py",
            "sim/feed_rtl.py", "benchmarks/stream.py")


@dataclass
class Stream:
    schedule: Schedule
    n_messages: int           # ITCH messages in the stream, every type
    n_frames: int
    gen_seconds: float        # time generating took (when it was generated, if cached)
    load_seconds: float       # time this process spent getting it (generate or unpickle)
    cached: bool

    @property
    def wire_bytes(self) -> int:
        """GMII byte times the stream spans: preamble, SFD, frame, FCS and inter-frame gaps."""
        return sum(len(b.data) + b.idle_before for b in self.schedule.bursts)


def _generate(n: int) -> list[bytes]:
    rng = random.Random(SEED)
    feed = Feed()
    bursts: list[bytes] = []
    while feed.seq - 1 < n:
        # Frame by frame so the stream holds exactly n messages (only the last frame is capped).
        want = min(MAX_PER_FRAME, n - (feed.seq - 1))
        (frame,) = random_frames(rng, feed, 1, max_messages=want)
        bursts.append(pack.gmii(pack.with_fcs(frame)))
    return bursts


def _cache_path(n: int) -> Path:
    h = hashlib.sha256(f"{SEED}:{n}:{MAX_PER_FRAME}".encode())
    for src in _SOURCES:
        h.update((REPO / src).read_bytes())
    return REPO / "build" / "bench" / f"stream-{n}-{h.hexdigest()[:16]}.pickle"


def bench_stream(n: int = N_MESSAGES) -> Stream:
    """The benchmark stream of `n` messages, from the cache when it is there."""
    start = time.perf_counter()
    path = _cache_path(n)
    cached = path.is_file()
    if cached:
        with path.open("rb") as f:
            saved = pickle.load(f)
        bursts, gen_seconds = saved["bursts"], saved["gen_seconds"]
    else:
        bursts = _generate(n)
        gen_seconds = time.perf_counter() - start
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            pickle.dump({"bursts": bursts, "gen_seconds": gen_seconds}, f, protocol=5)
        os.replace(tmp, path)
    feed = Feed()
    schedule = Schedule(bursts=[Burst(b) for b in bursts])
    schedule.subscriptions[0] = Subscription(feed.group, feed.port, feed.session, feed.seq)
    return Stream(schedule, n, len(bursts), gen_seconds, time.perf_counter() - start, cached)
