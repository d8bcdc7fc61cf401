"""``create_app(settings)``: the ASGI app (FastAPI) for the settings' models and data folder, with no
module-level state — two apps in one process share nothing. Run it with uvicorn (``embedlab serve``)."""

from __future__ import annotations

import contextlib
import logging
from typing import Mapping

from fastapi import FastAPI

from embedlab import __version__
from embedlab.serve.context import Server
from embedlab.serve import errors
from embedlab.serve.metrics import Metrics, MetricsMiddleware
from embedlab.serve.models import ServedModel, ServedReranker, load_encoder, load_reranker
from embedlab.serve.routes import collections, embeddings, health
from embedlab.serve.settings import Settings
from embedlab.serve.store import Store

log = logging.getLogger("embedlab.serve")


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes is refused with 413 before the app parses any of it (by its
    Content-Length, or while a chunked body arrives: it is buffered up to the limit, then handed on)."""

    def __init__(self, app, limit: int, metrics: Metrics) -> None:
        self.app, self.limit, self.metrics = app, limit, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.limit:
                return await self._refuse(scope, receive, send, f"got {int(declared)}")
            return await self.app(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                return await self._refuse(scope, receive, send, "got more")
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send, got: str) -> None:
        self.metrics.rejected.labels("body").inc()
        message = f"the request body must be at most {self.limit} bytes, {got}. Split the request."
        await errors.body(413, "request_too_large", message)(scope, receive, send)


class InFlightLimit:
    """ASGI middleware: at most ``limit`` requests in flight (bodies, queued work, responses); the next one is
    answered 503 with ``Retry-After`` at once, so memory stays bounded however many clients connect. The probes
    (``/healthz``, ``/readyz``, ``/metrics``) are always answered."""

    PROBES = ("/healthz", "/readyz", "/metrics")

    def __init__(self, app, limit: int, metrics: Metrics) -> None:
        self.app, self.limit, self.metrics, self.active = app, limit, metrics, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.PROBES:
            return await self.app(scope, receive, send)
        if self.active >= self.limit:
            self.metrics.rejected.labels("in_flight").inc()
            message = f"the server has {self.active} requests in flight (its limit); retry shortly."
            return await errors.body(503, "overloaded", message, headers={"Retry-After": "1"})(scope, receive, send)
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


def create_app(settings: Settings, *, encoders: Mapping[str, object] | None = None,
               rerankers: Mapping[str, object] | None = None) -> FastAPI:
    """The app serving ``settings``. ``encoders`` (served name -> loaded ``Encoder``) and ``rerankers`` (served name
    -> loaded ``CrossEncoder``) skip loading those models (tests share one per session); the others are loaded here,
    before the app answers. (``embedlab serve`` also freezes the garbage collector's view of the loaded models before
    serving: without that, full collections over the models' objects took the p99 latency under load from ~100 ms to
    ~260 ms.)"""
    metrics = Metrics()
    encoders = dict(encoders or {})
    models = {name: ServedModel(name, spec, encoders.get(name) or load_encoder(spec, settings.threads), settings,
                                metrics)
              for name, spec in settings.models.items()}
    loaded = dict(rerankers or {})
    served_rerankers = {name: ServedReranker(name, spec, loaded.get(name) or load_reranker(spec, settings.threads))
                        for name, spec in settings.rerankers.items()}
    srv = Server(settings, metrics, models, Store(settings.data, models), served_rerankers)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        srv.close()

    app = FastAPI(title="embedlab", version=__version__, lifespan=lifespan,
                  description="Embeddings (OpenAI-compatible), collections and filtered search over HTTP.")
    app.state.server = srv
    for exc, handler in errors.HANDLERS.items():
        app.add_exception_handler(exc, handler)
    app.include_router(embeddings.router)
    app.include_router(collections.router)
    app.include_router(health.router)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, metrics=metrics)
    app.add_middleware(InFlightLimit, limit=settings.max_in_flight, metrics=metrics)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
