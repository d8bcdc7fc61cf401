"""What a route handler needs: the app's :class:`Server` state, the API-key check, and waiting on work
under the request's timeout while watching for the client to leave."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from embedlab.serve.auth import ApiKey, find_key
from embedlab.serve.batching import Overloaded
from embedlab.serve.errors import ApiError, not_found
from embedlab.serve.metrics import Metrics
from embedlab.serve.models import ServedModel, ServedReranker
from embedlab.serve.settings import Settings
from embedlab.serve.store import Store

class Server:
    """The state of one app (``app.state.server``): settings, metrics, models, rerankers, collections."""

    def __init__(self, settings: Settings, metrics: Metrics, models: dict[str, ServedModel], store: Store,
                 rerankers: dict[str, ServedReranker] | None = None) -> None:
        self.settings, self.metrics, self.models, self.store = settings, metrics, models, store
        self.rerankers = rerankers or {}
        self.ready = True

    def model(self, name: str | None, param: str = "model") -> ServedModel:
        if name is None:
            return self.models[self.settings.default_model]
        if name not in self.models:
            raise not_found(f"model must be one of the served models {sorted(self.models)}, got {name!r}. "
                            "GET /v1/models lists them.", param)
        return self.models[name]

    def reranker(self, name: str, param: str = "rerank") -> ServedReranker:
        if name not in self.rerankers:
            served = sorted(self.rerankers) or "none: start the server with --reranker NAME=PATH"
            raise not_found(f"rerank must name one of the served rerankers ({served}), got {name!r}. GET /v1/models "
                            "lists them (task rerank).", param)
        return self.rerankers[name]

    def check_count(self, n: int, what: str) -> None:
        if n > self.settings.max_inputs:
            self.metrics.rejected.labels("inputs").inc()
            raise ApiError(413, "request_too_large", f"{what} must hold at most {self.settings.max_inputs} items per "
                           f"request, got {n}. Split the request.", what)

    def close(self) -> None:
        self.ready = False
        for model in [*self.models.values(), *self.rerankers.values()]:
            model.close()
        self.store.close()


async def server(request: Request) -> Server:  # async: a sync dependency would hop to a thread per request
    return request.app.state.server


_bearer = HTTPBearer(auto_error=False, description="an API key from the server's keys file or $EMBEDLAB_API_KEYS")


def _check(request: Request, credentials: HTTPAuthorizationCredentials | None, scope: str) -> ApiKey | None:
    keys = request.app.state.server.settings.keys
    if not keys:
        return None  # no keys configured: the CLI binds to loopback only
    if credentials is None or not credentials.credentials:
        raise ApiError(401, "authentication_error", "this server needs an API key: send 'Authorization: Bearer "
                       "<key>'.", headers={"WWW-Authenticate": "Bearer"})
    key = find_key(keys, credentials.credentials)
    if key is None:
        raise ApiError(401, "authentication_error", "the API key is not known to this server.",
                       headers={"WWW-Authenticate": "Bearer"})
    name = request.path_params.get("name")
    if not key.allows(scope, name):
        what = f"the {scope!r} scope" + (f" on collection {name!r}" if name else "")
        raise ApiError(403, "permission_error", f"API key {key.name!r} lacks {what}.")
    return key


async def _read(request: Request, credentials=Depends(_bearer)) -> ApiKey | None:
    return _check(request, credentials, "read")


async def _write(request: Request, credentials=Depends(_bearer)) -> ApiKey | None:
    return _check(request, credentials, "write")


READ, WRITE = Depends(_read), Depends(_write)


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def awaiting(request: Request, work: Awaitable[Any], *, what: str) -> Any:
    """The result of ``work``, cancelled (its queue slot freed) when the request times out or the client goes."""
    timeout = request.app.state.server.settings.timeout_s
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        if watcher in done:
            raise ApiError(503, "client_disconnected", f"the client left before {what} finished.")
        raise ApiError(504, "timeout", f"{what} did not finish within {timeout:g} s; retry, or send fewer texts.")
    except Overloaded as exc:
        request.app.state.server.metrics.rejected.labels("overloaded").inc()
        raise ApiError(503, "overloaded", f"{what}: {exc}.", headers={"Retry-After": str(exc.retry_after)}) from None
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()

