"""``/healthz`` (the process answers), ``/readyz`` (models loaded, collections open), ``/metrics``
(Prometheus text) and the search page at ``/``."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, JSONResponse, Response

from embedlab.serve.context import Server, server
from embedlab.serve.errors import ERROR_RESPONSES
from embedlab.serve.schemas import Health

router = APIRouter()


@router.get("/healthz", response_model=Health)
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", response_model=Health, responses={503: ERROR_RESPONSES[503]})
async def readyz(srv: Server = Depends(server)):
    state = {"models": sorted(srv.models), "collections": len(srv.store.names())}
    if not srv.ready:
        return JSONResponse({"error": {"type": "overloaded", "message": "the server is shutting down", "param": None}},
                            status_code=503, headers={"Retry-After": "1"})
    return {"status": "ready", **state}


@router.get("/metrics", include_in_schema=False)
async def metrics(srv: Server = Depends(server)) -> Response:
    payload, content_type = srv.metrics.render()
    return Response(payload, media_type=content_type)


@router.get("/", include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse(resources.files("embedlab.serve").joinpath("page/index.html").read_text())
