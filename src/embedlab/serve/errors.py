"""HTTP errors: one JSON shape, ``{"error": {"type", "message", "param"}}``, for every failure.

Library errors keep their message (it already says what was expected, what was got and how to fix it) and map
to the 4xx that fits; anything unexpected is a 500 with a generic message, its traceback in the server log only.
"""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from embedlab.errors import ConflictError, EmbedlabError, UnsupportedError

log = logging.getLogger("embedlab.serve")


class ErrorBody(BaseModel):
    type: str
    message: str
    param: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    """An error the server answers with ``status``; ``headers`` (e.g. ``Retry-After``) ride along."""

    def __init__(self, status: int, type: str, message: str, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.param, self.headers = status, type, message, param, headers


# the statuses every route may answer besides its success, documented in the OpenAPI schema
ERROR_STATUSES = {400: "invalid request", 401: "missing or unknown API key", 403: "the key lacks the scope or grant",
                  404: "no such collection, model or document", 409: "conflicts with stored state",
                  413: "request too large", 422: "request does not match the schema",
                  503: "overloaded or not ready (see Retry-After)", 504: "timed out", 500: "internal error"}
ERROR_RESPONSES = {code: {"model": ErrorResponse, "description": text} for code, text in ERROR_STATUSES.items()}

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 409: "conflict_error", 413: "request_too_large",
          422: "invalid_request_error", 503: "overloaded", 504: "timeout"}


def body(status: int, type: str | None, message: str, param: str | None = None, headers=None) -> JSONResponse:
    error = {"type": type or _TYPES.get(status, "invalid_request_error"), "message": message, "param": param}
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def library_status(exc: EmbedlabError) -> int:
    """409 for a conflict with stored state, else 400: the library's errors are about the request's content
    (an unknown filter field is a bad request, not a missing URL; routes answer 404 for what their path names)."""
    return 409 if isinstance(exc, ConflictError) else 400


def not_found(message: str, param: str | None = None) -> ApiError:
    return ApiError(404, "not_found_error", message, param)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return body(exc.status, exc.type, exc.message, exc.param, exc.headers)


async def _library_error(request: Request, exc: EmbedlabError) -> JSONResponse:
    status = library_status(exc)
    kind = "unsupported" if isinstance(exc, UnsupportedError) else None
    return body(status, kind, str(exc))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return body(422, None, f"{param or 'body'}: {first['msg']}{more}. See /docs for the request schema.", param)


def _routes(routes):
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI keeps an included router whole
        yield from (_routes(inner.routes) if inner is not None else (route,))


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:  # Allow: every method of the path, across its routes (starlette names one route's)
        allowed = sorted({m for route in _routes(request.app.routes) if getattr(route, "methods", None)
                          and route.matches(request.scope)[0] != Match.NONE for m in route.methods})
        headers = {"Allow": ", ".join(allowed)}
        return body(405, None, f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}.",
                    headers=headers)
    return body(exc.status_code, None, str(exc.detail), headers=headers)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return body(500, "server_error", "internal server error; the server log has the details.")


HANDLERS = {ApiError: _api_error, EmbedlabError: _library_error, RequestValidationError: _validation_error,
            StarletteHTTPException: _http_error, Exception: _internal_error}
