"""Apps built on the session's one encoder; a live uvicorn server on 127.0.0.1 for real clients."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from embedlab.serve import Settings, create_app

MODEL = "all-MiniLM-L6-v2"


@pytest.fixture
def make_app(encoder, tmp_path):
    """``make_app(**settings)`` -> a FastAPI app on a fresh data folder (or ``data=``), serving the session's encoder
    (or ``encoder=``) as the default model, and the loaded ``reranker_models`` (name -> CrossEncoder) named in
    ``rerankers=``."""
    apps = []

    def make(encoder=encoder, reranker_models=None, **options):
        options.setdefault("data", tmp_path / "data")
        app = create_app(Settings(**options), encoders={MODEL: encoder}, rerankers=reranker_models)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.state.server.close()


@pytest.fixture
def client(make_app):
    from fastapi.testclient import TestClient

    with TestClient(make_app()) as c:
        yield c


@contextlib.contextmanager
def live(app):
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start within 30 s")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def live_url(make_app):
    with live(make_app()) as url:
        yield url
