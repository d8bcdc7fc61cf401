"""Serving: the library's objects over HTTP (``embedlab serve``).

``create_app(Settings(data=...))`` builds the ASGI app: OpenAI-compatible ``/v1/embeddings`` for several
models, collections with filtered search, dynamic batching, API keys, limits, Prometheus metrics and a search
page. Needs the ``serve`` extra (``pip install 'embedlab[serve]'``).
"""

try:
    import fastapi  # noqa: F401
    import orjson  # noqa: F401
    import prometheus_client  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(f"embedlab.serve needs the serve extra ({exc.name} is missing): "
                      "pip install 'embedlab[serve]'") from None

from embedlab.serve.app import create_app
from embedlab.serve.auth import load_keys
from embedlab.serve.settings import ModelSpec, Settings

__all__ = ["create_app", "Settings", "ModelSpec", "load_keys"]
