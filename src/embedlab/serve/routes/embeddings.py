"""``POST /v1/embeddings`` (the OpenAI embeddings API) and ``GET /v1/models``."""

from __future__ import annotations

import base64

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from embedlab.errors import InvalidInputError
from embedlab.serve.context import READ, Server, awaiting, server
from embedlab.serve.errors import ERROR_RESPONSES, ApiError
from embedlab.serve.models import ServedModel
from embedlab.serve.schemas import EmbeddingRequest, EmbeddingResponse, ModelList

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/v1/models", response_model=ModelList, dependencies=[READ])
async def list_models(srv: Server = Depends(server)) -> dict:
    return {"object": "list", "data": [m.card() for m in [*srv.models.values(), *srv.rerankers.values()]]}


def _texts(model: ServedModel, given) -> list[str]:
    """The request's ``input`` as texts (token ids are decoded with the model's own vocabulary)."""
    if isinstance(given, str):
        return [given]
    if not given:
        raise InvalidInputError("input must hold at least one text or token list, got an empty list.")
    if isinstance(given[0], str):
        return list(given)
    rows = [given] if isinstance(given[0], int) else given
    vocab = model.vocab_size
    for i, row in enumerate(rows):
        if not row or min(row) < 0 or max(row) >= vocab:
            raise InvalidInputError(f"input[{i}] must be a non-empty list of token ids in [0, {vocab}) for model "
                                    f"{model.name!r}, got {len(row)} ids in [{min(row, default=0)}, {max(row, default=0)}].")
    return model.decode_ids(rows)


async def embed_texts(request: Request, srv: Server, model: ServedModel, texts: list[str], *, prompt=None,
                      what: str = "input") -> tuple[np.ndarray, int, list[int]]:
    """``(unit float32 [n, dim], tokens counted after truncation, indices of truncated texts)`` through the
    batcher, under the server's limits."""
    if not texts:
        raise ApiError(400, "invalid_request_error", f"{what} must hold at least one text, got an empty list.", what)
    srv.check_count(len(texts), what)
    lengths = model.count_tokens(texts)
    limit = model.max_tokens
    truncated = [i for i, n in enumerate(lengths) if n > limit]
    if truncated and srv.settings.truncate == "error":
        i = truncated[0]
        raise ApiError(400, "invalid_request_error", f"{what}[{i}] must have at most {limit} tokens for model "
                       f"{model.name!r}, got {lengths[i]} ({len(truncated)} input(s) too long). Shorten it, or start "
                       "the server with --truncate end.", what)
    tokens = sum(min(n, limit) for n in lengths)
    if tokens > srv.settings.max_request_tokens:
        srv.metrics.rejected.labels("tokens").inc()
        raise ApiError(413, "request_too_large", f"{what} must total at most {srv.settings.max_request_tokens} tokens "
                       f"per request, got {tokens}. Split the request.", what)
    vectors = await awaiting(request, model.encode(texts, tokens, prompt), what=f"encoding {len(texts)} text(s)")
    return vectors, tokens, truncated


@router.post("/v1/embeddings", response_model=EmbeddingResponse, dependencies=[READ])
async def create_embeddings(body: EmbeddingRequest, request: Request, srv: Server = Depends(server)):
    model = srv.model(body.model)
    texts = _texts(model, body.input)
    if body.dimensions is not None and body.dimensions > model.encoder.dim:
        raise ApiError(400, "invalid_request_error", f"dimensions must be at most {model.encoder.dim} for model "
                       f"{model.name!r}, got {body.dimensions}.", "dimensions")
    vectors, tokens, truncated = await embed_texts(request, srv, model, texts)
    if body.dimensions is not None and body.dimensions < vectors.shape[1]:  # a Matryoshka prefix, re-normalised
        vectors = vectors[:, : body.dimensions]
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    if body.encoding_format == "base64":  # little-endian float32, as the OpenAI client decodes it
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        items = [base64.b64encode(row.tobytes()).decode("ascii") for row in vectors]
    else:
        items = list(vectors)  # orjson writes numpy rows natively
    data = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)]
    # serialised here by orjson (numpy rows natively, float32 in its shortest form; ~10x json.dumps), skipping
    # FastAPI's encoder pass; the response_model above documents the same shape
    payload = {"object": "list", "data": data, "model": model.name,
               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}, "truncated": truncated}
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")
