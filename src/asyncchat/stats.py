"""What the server counts for its operators, kept as plain numbers (sans-I/O).

The hot path only adds to ints (the hub's counters) or calls :meth:`Histogram.observe` once per
batch; the metrics exposition (``asyncchat.metrics``) reads them when it is scraped, so a server
nobody scrapes pays nothing more.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

__all__ = ["BATCH_BUCKETS", "LAG_BUCKETS", "LATENCY_BUCKETS", "Histogram"]

#: Seconds: a history commit takes from about 50 µs (memory) to tens of ms (fsync on a disk).
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
#: Records in one group commit: 1 on a quiet server, up to the store's MAX_BATCH under load.
BATCH_BUCKETS = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)
#: Seconds the event loop woke up late: anything over 10 ms is felt by every client.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Histogram:
    """Counts of observed values per bucket (each bucket: values <= its bound; the last one,
    +Inf, takes the rest) and their sum, as Prometheus histograms are made."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count ``value``."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        """Values observed."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, values <= it) for each bucket, +Inf last: the exposition's buckets."""
        out, total = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out
