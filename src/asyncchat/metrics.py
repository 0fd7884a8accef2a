"""``/metrics``: the server's counters in the Prometheus text format, read when scraped.

The hub, the store and the watchdog keep plain numbers (:mod:`asyncchat.stats`); the custom
collector here turns them into metric families only when ``/metrics`` is requested, so the hot
path never calls prometheus_client. The names, all prefixed ``asyncchat_``:

- ``connections{transport}`` (gauge): open connections, named or not, by transport;
- ``members``, ``rooms`` (gauges): connected users; rooms that exist;
- ``messages_received_total``: room messages posted by users;
- ``messages_delivered_total``: room message frames queued for members (the fan-out);
- ``acks_total``: acks of posted messages;
- ``evictions_total{reason}``: users removed by the server (timeout, slow_consumer, kicked);
- ``refusals_total{code}``: error frames sent to clients (refused requests and connections);
- ``history_commit_seconds`` (histogram): from handing a batch to the writer to its commit;
- ``history_batch_records`` (histogram): records per group commit;
- ``event_loop_lag_seconds`` (histogram): how late the watchdog's timer fired;

plus prometheus_client's ``process_*`` metrics (CPU seconds, memory, open files).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from .hub import Hub
from .stats import Histogram
from .transports import Admission

__all__ = ["TRANSPORTS", "ChatCollector", "exposition"]

#: Transports always listed in ``asyncchat_connections`` (at 0 when none is open).
TRANSPORTS = ("tcp", "line", "classic", "ws")


def _go(bound: float) -> str:
    """A bucket bound as Prometheus writes it: ``+Inf``, ``0.005``."""
    return "+Inf" if bound == float("inf") else repr(bound)


def _histogram(name: str, doc: str, h: Histogram) -> HistogramMetricFamily:
    buckets = [(_go(bound), n) for bound, n in h.cumulative()]
    return HistogramMetricFamily(f"asyncchat_{name}", doc, buckets=buckets, sum_value=h.sum)


def _by(name: str, doc: str, label: str, counts: Counter[str]) -> CounterMetricFamily:
    family = CounterMetricFamily(f"asyncchat_{name}", doc, labels=[label])
    for key, n in sorted(counts.items()):
        family.add_metric([str(key)], n)
    return family


class ChatCollector(Collector):
    """The metric families of one server, built at scrape time from its hub, its connections
    (``admission``), its history store (any with ``commit_latency`` and ``batch_sizes``
    histograms, or None) and the watchdog's ``loop_lag``."""

    def __init__(self, hub: Hub, admission: Admission, store: Any, loop_lag: Histogram) -> None:
        self.hub = hub
        self.admission = admission
        self.store = store
        self.loop_lag = loop_lag

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        kinds = Counter({kind: 0 for kind in TRANSPORTS})
        kinds.update(conn.kind for conn in self.admission.connections)
        conns = GaugeMetricFamily(
            "asyncchat_connections", "Open connections by transport.", labels=["transport"]
        )
        for kind, n in sorted(kinds.items()):
            conns.add_metric([kind], n)
        yield conns
        yield GaugeMetricFamily("asyncchat_members", "Connected users.", value=len(hub.members))
        yield GaugeMetricFamily("asyncchat_rooms", "Rooms that exist.", value=len(hub.rooms))
        yield CounterMetricFamily(
            "asyncchat_messages_received", "Room messages posted by users.", value=hub.received
        )
        yield CounterMetricFamily(
            "asyncchat_messages_delivered",
            "Room message frames queued for members (fan-out).",
            value=hub.delivered,
        )
        yield CounterMetricFamily("asyncchat_acks", "Acks of posted messages.", value=hub.acked)
        yield _by("evictions", "Users removed by the server, by reason.", "reason", hub.evictions)
        yield _by("refusals", "Error frames sent to clients, by code.", "code", hub.refusals)
        store = self.store
        latency = getattr(store, "commit_latency", None)
        sizes = getattr(store, "batch_sizes", None)
        if isinstance(latency, Histogram) and isinstance(sizes, Histogram):
            yield _histogram(
                "history_commit_seconds", "Seconds from a batch's handoff to its commit.", latency
            )
            yield _histogram("history_batch_records", "Records per group commit.", sizes)
        yield _histogram(
            "event_loop_lag_seconds", "How late the watchdog's timer fired.", self.loop_lag
        )


def exposition(collector: ChatCollector) -> Callable[[], tuple[str, bytes]]:
    """``/metrics``: a function giving the content type and the text of ``collector``'s
    metrics and the process's (a registry of its own, not the global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)

    def scrape() -> tuple[str, bytes]:
        return CONTENT_TYPE_LATEST, generate_latest(registry)

    return scrape
