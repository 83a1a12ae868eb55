"""The server's Prometheus metrics, in a registry of its own (one per app, so two apps in one
process, as in the tests, count apart)."""

from __future__ import annotations

from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """Requests, errors and latency per route; queries and batch sizes per index.

    ``route`` is the route's path template (``/search``), or ``other`` for a path no route has,
    so a scan of random URLs cannot grow the label set.
    """

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rkd_requests", "HTTP requests answered", ["route", "method", "status"], registry=self.registry
        )
        self.errors = Counter(
            "rkd_request_errors", "HTTP requests answered with a 4xx or 5xx", ["route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "rkd_request_latency_seconds", "time from request to response", ["route"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.queries = Counter("rkd_queries", "queries searched", ["index"], registry=self.registry)
        self.batch_queries = Histogram(
            "rkd_batch_queries", "queries per query-encoder batch", ["index"],
            buckets=BATCH_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.batch_requests = Histogram(
            "rkd_batch_requests", "requests sharing one query-encoder batch", ["index"],
            buckets=BATCH_BUCKETS, registry=self.registry,
        )  # fmt: skip

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        if status >= 400:
            self.errors.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_batch(self, index: str, queries: int, requests: int) -> None:
        self.queries.labels(index).inc(queries)
        self.batch_queries.labels(index).observe(queries)
        self.batch_requests.labels(index).observe(requests)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body: Any = generate_latest(self.registry)
        return bytes(body), CONTENT_TYPE_LATEST
