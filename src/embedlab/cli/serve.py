"""``embedlab serve``: the HTTP API of :mod:`embedlab.serve` under uvicorn."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer

from embedlab.errors import InvalidInputError

_OWNER = "embedlab serve"


def _specs(values: list[str], option: str) -> dict:
    """``NAME=PATH[,...]`` values of a repeatable option -> ``{name: ModelSpec}``, names distinct."""
    from embedlab.serve import ModelSpec

    specs = dict(ModelSpec.parse(v, option) for v in values)
    if len(specs) != len(values):
        raise InvalidInputError(f"{_OWNER}: {option} names must be distinct, got {[v.split('=')[0] for v in values]}.")
    return specs


def serve_cmd(
    data: Path = typer.Option(..., "--data", help="Folder of collections (one sub-folder each; created if absent)."),
    model: list[str] = typer.Option([], "--model", help="NAME=PATH[,backend=onnx][,precision=int8], repeatable; PATH "
                                    "'default' is the bundled all-MiniLM-L6-v2. The first is the default model. "
                                    "Default: all-MiniLM-L6-v2=default."),
    reranker: list[str] = typer.Option([], "--reranker", help="NAME=PATH[,backend=onnx], repeatable: a cross-encoder "
                                       "folder (sentence-transformers' or embedlab's CrossEncoder) that a search may "
                                       "name in rerank."),
    max_rerank_pairs: int = typer.Option(4096, "--max-rerank-pairs", min=1, help="(Query, candidate) pairs a "
                                         "reranked search may score (then 413)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (anything but loopback needs API keys)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to bind."),
    api_keys: Optional[Path] = typer.Option(None, "--api-keys", help="JSON keys file ({\"keys\": [{\"key\", "
                                            "\"scopes\", \"collections\"}]}); $EMBEDLAB_API_KEYS adds more."),
    truncate: str = typer.Option("end", "--truncate", help="Over-long inputs: 'end' cuts and reports them, 'error' "
                                 "answers 400."),
    batching: bool = typer.Option(True, "--batching/--no-batching", help="Dynamic batching of concurrent requests."),
    batch_tokens: int = typer.Option(4096, "--batch-tokens", min=1, help="Tokens per micro-batch."),
    batch_wait_ms: float = typer.Option(2.0, "--batch-wait-ms", min=0, help="Wait for company in a batch (only under concurrency)."),
    max_queue_tokens: int = typer.Option(262_144, "--max-queue-tokens", min=1, help="Tokens that may wait (then 503)."),
    max_inputs: int = typer.Option(2048, "--max-inputs", min=1, help="Texts, ids or queries per request (then 413)."),
    max_in_flight: int = typer.Option(512, "--max-in-flight", min=1, help="Requests at once (then 503)."),
    max_body_mb: float = typer.Option(8.0, "--max-body-mb", min=0.001, help="Request body limit in MiB (then 413)."),
    timeout: float = typer.Option(60.0, "--timeout", min=0.001, help="Seconds an encoding or search may take (504)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads per model."),
    openapi: Optional[Path] = typer.Option(None, "--openapi", help="Write the OpenAPI schema to this file and exit."),
) -> None:
    """Serve embeddings (OpenAI-compatible), collections and search over HTTP."""
    from embedlab.serve import ModelSpec, Settings, create_app, load_keys
    from embedlab.serve.settings import LOOPBACK

    models = _specs(model, "--model") if model else {"all-MiniLM-L6-v2": ModelSpec()}
    rerankers = _specs(reranker, "--reranker")
    keys = load_keys(api_keys)
    if not keys and host not in LOOPBACK:
        raise InvalidInputError(f"{_OWNER}: --host must be a loopback address without API keys, got {host!r}. Pass "
                                "--api-keys FILE (or set $EMBEDLAB_API_KEYS), or bind to 127.0.0.1.")
    settings = Settings(data=data, models=models, rerankers=rerankers, max_rerank_pairs=max_rerank_pairs, keys=keys,
                        truncate=truncate, batching=batching, batch_tokens=batch_tokens, batch_wait_ms=batch_wait_ms,
                        max_queue_tokens=max_queue_tokens, max_inputs=max_inputs, max_in_flight=max_in_flight,
                        max_body_bytes=int(max_body_mb * 2**20),
                        timeout_s=timeout, threads=threads)
    app = create_app(settings)
    if openapi is not None:
        openapi.write_text(json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n")
        typer.echo(f"wrote {openapi}")
        return
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("embedlab.serve")
    if keys:
        log.info("%d API key(s) configured", len(keys))
    else:
        log.warning("no API keys configured: serving on loopback (%s) only, without authentication", host)
    log.info("models: %s; rerankers: %s; collections: %s",
             ", ".join(f"{n} ({s.backend}/{s.precision})" for n, s in models.items()),
             ", ".join(f"{n} ({s.backend})" for n, s in rerankers.items()) or "none", app.state.server.store.names())
    import gc

    gc.collect()
    gc.freeze()  # the models' objects leave the collector's view: no 100 ms full collections under load
    uvicorn.run(app, host=host, port=port, log_level="info", http="httptools", access_log=False)
