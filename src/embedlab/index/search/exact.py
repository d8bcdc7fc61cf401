"""Exact (brute-force) top-k search: the ground truth every approximate path is tested against."""

from __future__ import annotations

import numpy as np

from embedlab.errors import InvalidInputError
from embedlab.params import check_choice, check_int
from embedlab.topk import topk

_METRICS = ("ip", "cosine", "l2")


def exact_search(
    queries: np.ndarray,
    vectors: np.ndarray,
    k: int,
    *,
    metric: str = "ip",
    query_chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows of ``vectors`` for each query, memory-bounded by ``query_chunk``.

    ``queries`` float ``[nq, d]``, ``vectors`` float ``[n, d]``. Returns ``(scores, positions)``:
    float32 ``[nq, k]`` (higher is better: inner product, cosine, or negative squared L2) and int64
    ``[nq, k]`` sorted by score descending (ties by lower position), padded with ``-inf`` / ``-1``
    when ``k > n``.
    """
    check_choice(metric, _METRICS, "exact_search", "metric")
    queries, vectors = np.asarray(queries, dtype=np.float32), np.asarray(vectors, dtype=np.float32)
    if queries.ndim != 2 or vectors.ndim != 2 or queries.shape[1] != vectors.shape[1]:
        raise InvalidInputError(
            f"exact_search: queries and vectors must be 2-D with the same width, got {queries.shape} and {vectors.shape}."
        )
    k = check_int(k, "exact_search", "k")
    if metric == "cosine":
        queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    nq = len(queries)
    scores = np.full((nq, k), -np.inf, dtype=np.float32)
    positions = np.full((nq, k), -1, dtype=np.int64)
    if len(vectors) == 0:
        return scores, positions
    sq_norms = (vectors * vectors).sum(1) if metric == "l2" else None
    for start in range(0, nq, query_chunk):
        q = queries[start : start + query_chunk]
        s = q @ vectors.T
        if sq_norms is not None:
            s = 2 * s - sq_norms[None, :] - (q * q).sum(1)[:, None]
        scores[start : start + len(q)], positions[start : start + len(q)] = topk(s, k)
    return scores, positions
