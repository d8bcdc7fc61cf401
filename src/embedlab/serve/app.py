"""``create_app(settings)``: the ASGI app (FastAPI) for the settings' models and data folder, with no
module-level state — two apps in one process share nothing. Run it with uvicorn (``embedlab serve``)."""

from __future__ import annotations

import contextlib
import logging
from typing import Mapping

from fastapi import FastAPI

from embedlab import __version__
from embedlab.serve.context import Server
from embedlab.serve.errors import HANDLERS, ApiError
from embedlab.serve.metrics import Metrics, MetricsMiddleware
from embedlab.serve.models import ServedModel, load_encoder
from embedlab.serve.routes import collections, embeddings, health
from embedlab.serve.settings import Settings
from embedlab.serve.store import Store

log = logging.getLogger("embedlab.serve")


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes is refused with 413 before the app parses any of it."""

    def __init__(self, app, limit: int, metrics: Metrics) -> None:
        self.app, self.limit, self.metrics = app, limit, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            self.metrics.rejected.labels("body").inc()
            message = (f"the request body must be at most {self.limit} bytes, got {int(declared)}. "
                       "Split the request.").encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b'{"error": {"type": "request_too_large", '
                        b'"message": "' + message + b'", "param": null}}'})
            return
        seen = 0

        async def counting():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # a chunked body without a Content-Length
                    self.metrics.rejected.labels("body").inc()
                    raise ApiError(413, "request_too_large", f"the request body must be at most {self.limit} bytes.")
            return message

        await self.app(scope, counting, send)


def create_app(settings: Settings, *, encoders: Mapping[str, object] | None = None) -> FastAPI:
    """The app serving ``settings``. ``encoders`` (served name -> loaded ``Encoder``) skips loading those models
    (tests share one per session); the others are loaded here, before the app answers."""
    metrics = Metrics()
    encoders = dict(encoders or {})
    models = {name: ServedModel(name, spec, encoders.get(name) or load_encoder(spec, settings.threads), settings,
                                metrics)
              for name, spec in settings.models.items()}
    srv = Server(settings, metrics, models, Store(settings.data, models))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        srv.close()

    app = FastAPI(title="embedlab", version=__version__, lifespan=lifespan,
                  description="Embeddings (OpenAI-compatible), collections and filtered search over HTTP.")
    app.state.server = srv
    for exc, handler in HANDLERS.items():
        app.add_exception_handler(exc, handler)
    app.include_router(embeddings.router)
    app.include_router(collections.router)
    app.include_router(health.router)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, metrics=metrics)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
