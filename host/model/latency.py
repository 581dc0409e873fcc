"""Reference model of the card's tick-to-trade latency counters (`hdl.latency`): per kind of
triggering message, count, last, min, max and a histogram of one bin per cycle whose last bin
counts that many cycles or more."""

from dataclasses import dataclass, field

from hdl.formats import LATENCY_BINS, LATENCY_KINDS

__all__ = ["KindStats", "LatencyModel"]

CYCLE_MAX = (1 << 16) - 1          # the counters' cycle width; min starts here


@dataclass
class KindStats:
    count: int = 0
    last: int = 0
    min: int = CYCLE_MAX
    max: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * LATENCY_BINS)


class LatencyModel:
    def __init__(self) -> None:
        self.stats = {kind: KindStats() for kind in LATENCY_KINDS}

    def sample(self, kind: str, cycles: int) -> None:
        cycles = min(cycles, CYCLE_MAX)
        s = self.stats[kind]
        s.count += 1
        s.last = cycles
        s.min = min(s.min, cycles)
        s.max = max(s.max, cycles)
        s.histogram[min(cycles, LATENCY_BINS - 1)] += 1
