"""Collections over HTTP: create, list, describe, delete; write, read and delete documents; filtered search.

Routes: ``POST /v1/collections``, ``GET /v1/collections``, ``GET|DELETE /v1/collections/{name}``,
``POST /v1/collections/{name}/documents`` (add or upsert), ``GET /v1/collections/{name}/documents/{id}``,
``POST /v1/collections/{name}/delete`` (documents by ids or filter; not under ``documents/``, where a path
segment is an id) and ``POST /v1/collections/{name}/search``.

Texts are encoded by the collection's model through the dynamic batcher; multi-vector collections encode their
token vectors on the model's worker thread. Collection calls block (SQLite, faiss), so they run in worker
threads; a write is answered only once the collection has made it durable.
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from embedlab.errors import InvalidInputError, NotFoundError
from embedlab.index import Collection
from embedlab.serve.auth import ApiKey
from embedlab.serve.context import READ, WRITE, Server, awaiting, server
from embedlab.serve.errors import ERROR_RESPONSES, ApiError, not_found
from embedlab.serve.models import ServedModel
from embedlab.serve.routes.embeddings import embed_texts
from embedlab.serve.schemas import (CollectionInfo, CollectionList, CreateCollection, DeleteDocuments, Document,
                                    Documents, SearchRequest, SearchResponse, WriteResult)

router = APIRouter(prefix="/v1/collections", responses=ERROR_RESPONSES)
NamePath = Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="a collection name")


def _info(name: str, col: Collection, srv: Server) -> dict:
    model = srv.store.model_of(col)
    stats = col.stats()
    return {"name": name, "dim": col.dim, "metric": col.metric, "index": col.index_kind,
            "model": None if model is None else model.name, "multivector": col.multivector, "count": stats["count"],
            "schema": col.schema, "stats": stats}


def _text_model(srv: Server, col: Collection, name: str, param: str) -> ServedModel:
    model = srv.store.model_of(col)
    if model is None:
        raise ApiError(400, "invalid_request_error", f"{param}: collection {name!r} has no model this server serves "
                       f"(its manifest names {col.encoder_name!r}); send vectors, or start the server with --model "
                       "NAME=<that folder>.", param)
    return model


@router.post("", response_model=CollectionInfo, status_code=201, dependencies=[WRITE])
async def create_collection(body: CreateCollection, srv: Server = Depends(server)) -> dict:
    model = srv.model(body.model)
    if body.model is None and body.dim != model.encoder.dim:
        model_for = None  # a vector-only collection of another width
    else:
        model_for = model
    params = {k: v for k, v in body.params.items() if v is not None}
    col = await run_in_threadpool(
        lambda: srv.store.create(body.name, model_for, dim=body.dim, metric=body.metric, index=body.index,
                                 params=params, multivector=body.multivector, schema=body.schema_,
                                 indexes=body.indexes, text_index=body.text_index))
    return await run_in_threadpool(_info, body.name, col, srv)


@router.get("", response_model=CollectionList)
async def list_collections(key: ApiKey | None = READ, srv: Server = Depends(server)) -> dict:
    """The collections this key may read."""
    names = [n for n in srv.store.names() if key is None or key.allows("read", n)]
    return {"collections": [await run_in_threadpool(_info, n, srv.store.get(n), srv) for n in names]}


@router.get("/{name}", response_model=CollectionInfo, dependencies=[READ])
async def describe_collection(name: str = NamePath, srv: Server = Depends(server)) -> dict:
    col = srv.store.get(name)
    return await run_in_threadpool(_info, name, col, srv)


@router.delete("/{name}", status_code=204, dependencies=[WRITE])
async def delete_collection(name: str = NamePath, srv: Server = Depends(server)) -> Response:
    await run_in_threadpool(srv.store.delete, name)
    return Response(status_code=204)


@router.post("/{name}/documents", response_model=WriteResult, dependencies=[WRITE])
async def write_documents(body: Documents, request: Request, name: str = NamePath,
                          srv: Server = Depends(server)) -> dict:
    col = srv.store.get(name)
    srv.check_count(len(body.ids), "ids")
    if col.multivector and (body.texts is None or body.vectors is not None):
        raise ApiError(400, "invalid_request_error", f"collection {name!r} stores token vectors: send texts (its model "
                       "computes their token vectors), not vectors.", "texts")
    if (body.texts is None) == (body.vectors is None):
        raise InvalidInputError("documents must carry exactly one of texts or vectors, got "
                                f"{'both' if body.texts is not None else 'neither'}.")
    for field in ("texts", "vectors", "metadata"):
        given = getattr(body, field)
        if given is not None and len(given) != len(body.ids):
            raise ApiError(400, "invalid_request_error", f"{field} must hold one entry per id ({len(body.ids)}), got "
                           f"{len(given)}.", field)
    write = col.upsert if body.upsert else col.add
    if col.multivector:  # the layer encodes the texts' token vectors, on the model's thread
        model = _text_model(srv, col, name, "texts")
        await model.call(lambda: write(body.ids, texts=body.texts, metadata=body.metadata))
    else:
        if body.vectors is not None:
            vectors = _matrix(body.vectors, "vectors")
        else:
            model = _text_model(srv, col, name, "texts")
            vectors, _, _ = await embed_texts(request, srv, model, body.texts, prompt="document", what="texts")
        await run_in_threadpool(lambda: write(body.ids, vectors, texts=body.texts, metadata=body.metadata))
    return {"count": len(body.ids), "total": await run_in_threadpool(col.count)}


@router.post("/{name}/delete", response_model=WriteResult, dependencies=[WRITE])
async def delete_documents(body: DeleteDocuments, name: str = NamePath, srv: Server = Depends(server)) -> dict:
    col = srv.store.get(name)
    if (body.ids is None) == (body.filter is None):
        raise InvalidInputError("delete must name exactly one of ids or filter, got "
                                f"{'both' if body.ids is not None else 'neither'}.")
    if body.ids is not None:
        srv.check_count(len(body.ids), "ids")
    n = await run_in_threadpool(lambda: col.delete(body.ids, filter=body.filter))
    return {"count": n, "total": await run_in_threadpool(col.count)}


@router.get("/{name}/documents/{id}", response_model=Document, dependencies=[READ])
async def get_document(id: str, name: str = NamePath, srv: Server = Depends(server)) -> dict:
    col = srv.store.get(name)
    key = int(id) if col.id_kind == "int" and id.lstrip("-").isdigit() else id
    try:
        row = (await run_in_threadpool(col.get, [key]))[0]
    except NotFoundError as exc:
        raise not_found(str(exc), "id") from None
    return {"id": row["id"], "text": row["text"], "metadata": row["metadata"]}


def _matrix(rows: list[list[float]], param: str) -> np.ndarray:
    """``rows`` as float32 ``[n, d]``; the collection checks ``d``."""
    if len({len(r) for r in rows}) != 1:
        raise ApiError(400, "invalid_request_error", f"{param} must be a list of equally long rows, got row lengths "
                       f"{sorted({len(r) for r in rows})[:5]}.", param)
    return np.asarray(rows, dtype=np.float32)


@router.post("/{name}/search", response_model=SearchResponse, dependencies=[READ])
async def search(body: SearchRequest, request: Request, name: str = NamePath, srv: Server = Depends(server)) -> dict:
    col = srv.store.get(name)
    both = body.queries is not None and body.vectors is not None
    if (body.queries is None and body.vectors is None) or (both and body.mode == "dense" and body.rerank is None):
        raise InvalidInputError("search must carry exactly one of queries (texts) or vectors (or, for mode sparse / "
                                "hybrid or with rerank, vectors with their texts in queries), got "
                                f"{'both' if both else 'neither'}.")
    n = len(body.queries if body.queries is not None else body.vectors)
    srv.check_count(n, "queries" if body.queries is not None else "vectors")
    options = dict(k=body.k, filter=body.filter, offset=body.offset, min_score=body.min_score, ef=body.ef,
                   include=("text", "metadata"), oversample=body.oversample, mode=body.mode, fusion=body.fusion,
                   weights=body.weights, rerank_weights=body.rerank_weights)
    reranker = None if body.rerank is None else _reranker(srv, col, body, n)
    if reranker is not None:
        options.update(rerank=reranker.model, rerank_candidates=body.rerank_candidates)
    # a reranked search runs on its reranker's thread (one forward pass at a time), any other in the thread pool
    run = reranker.call if reranker is not None else run_in_threadpool
    if body.vectors is not None:
        queries = _matrix(body.vectors, "vectors")
        work = run(lambda: col.search(queries, query_texts=body.queries, **options))
    elif body.mode == "sparse":  # BM25 alone: nothing to encode
        work = run(lambda: col.search(body.queries, **options))
    elif col.multivector:  # the layer encodes the queries' token vectors, on the model's thread
        model = _text_model(srv, col, name, "queries")
        work = model.call(lambda: col.search(body.queries, **options))
    else:
        model = _text_model(srv, col, name, "queries")
        queries, _, _ = await embed_texts(request, srv, model, body.queries, prompt="query", what="queries")
        texts = body.queries if body.mode == "hybrid" or reranker is not None else None
        work = run(lambda: col.search(queries, query_texts=texts, **options))
    hits = await awaiting(request, work, what="the search")
    results = []
    for i in range(len(hits)):
        one = hits[i]
        results.append({"strategy": one.strategy[0] if one.strategy else "",
                        "hits": [{"id": _plain(h), "score": s, "text": p.get("text"), "metadata": p.get("metadata")}
                                 for h, s, p in zip(one.ids.tolist(), one.scores.tolist(), one.payload)]})
    return {"results": results}


def _reranker(srv: Server, col: Collection, body: SearchRequest, n: int):
    """The served reranker ``body.rerank`` names, once the request may use it."""
    reranker = srv.reranker(body.rerank)
    if body.queries is None:
        raise InvalidInputError("rerank scores (query text, stored text) pairs, so it needs the query texts in "
                                "queries, got vectors only. Send queries (beside vectors, if you encode them).")
    if col.multivector:
        raise InvalidInputError("rerank applies to single-vector collections over HTTP, got a multi-vector one, "
                                "whose candidates are already reranked by MaxSim. Drop rerank.")
    candidates = max(body.rerank_candidates, body.k + body.offset)  # what Collection.search reranks per query
    if n * candidates > srv.settings.max_rerank_pairs:
        srv.metrics.rejected.labels("rerank").inc()
        raise ApiError(413, "request_too_large", f"rerank may score at most {srv.settings.max_rerank_pairs} (query, "
                       f"candidate) pairs per request, got {n} queries x {candidates} candidates = {n * candidates}. "
                       "Lower rerank_candidates or split the request.", "rerank_candidates")
    return reranker


def _plain(value):
    return value.item() if hasattr(value, "item") else value

