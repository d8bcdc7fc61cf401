"""Prometheus metrics, one registry per app (``GET /metrics``): requests by route and status, latency, batch
sizes, queue depth and tokens embedded. Routes are labelled by their template (``/v1/collections/{name}``),
never by the raw path, so label cardinality stays bounded."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("embedlab_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("embedlab_request_seconds", "request latency by route", ["route"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_texts = Histogram("embedlab_batch_texts", "texts per encoder forward batch", ["model"],
                                     buckets=_BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("embedlab_batch_requests", "requests sharing one forward batch", ["model"],
                                        buckets=_BATCH_BUCKETS, registry=r)
        self.queue_tokens = Gauge("embedlab_queue_tokens", "tokens waiting in the encoding queue", ["model"],
                                  registry=r)
        self.tokens = Counter("embedlab_tokens_embedded", "tokens embedded", ["model"], registry=r)
        self.rejected = Counter("embedlab_rejected", "requests refused before work (overload, size)", ["reason"],
                                registry=r)

    def on_batch(self, model: str):
        def observe(requests: int, texts: int, tokens: int) -> None:
            self.batch_requests.labels(model).observe(requests)
            self.batch_texts.labels(model).observe(texts)
            self.tokens.labels(model).inc(tokens)
        return observe

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """ASGI middleware: counts and times every HTTP request under its route template."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(label, scope["method"], str(status[0])).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - start)
