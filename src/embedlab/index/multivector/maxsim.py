"""Exact late-interaction scoring: Chamfer similarity, a.k.a. MaxSim (Khattab & Zaharia 2020, ColBERT).

For a query ``Q`` and a document ``P``, each a set of token vectors,

    CH(Q, P) = sum_{q in Q} max_{p in P} <q, p>

(Dhulipala et al. 2024, "MUVERA: Multi-Vector Retrieval via Fixed Dimensional Encodings", eq. 1).
Everything here is exact: it is the ground truth for the FDEs of :mod:`embedlab.index.multivector.fde` and
the reranking stage of :class:`embedlab.index.multivector.index.MuveraIndex`.

The kernels work on whole blocks: one BLAS product between the token vectors of many documents and
the token vectors of many queries, a segmented ``maximum.reduceat`` over document tokens, then a
segmented sum over query tokens. Memory stays bounded by ``block_bytes``; float16 token vectors are
widened to float32 one block at a time, so memory-mapped stores are read once per block.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from embedlab.errors import InvalidInputError
from embedlab.params import check_int
from embedlab.topk import topk
from embedlab.types import MultiVectors

_BLOCK_BYTES = 1 << 26  # 64 MiB of float32 similarities per block
_QUERY_BLOCK_TOKENS = 4096


def check_multivectors(value, owner: str, param: str, *, dim: int | None = None, role: str = "documents") -> MultiVectors:
    """Return ``value`` if it is a usable :class:`MultiVectors`, else raise :class:`InvalidInputError`.

    Every item must have at least one vector (a query or document with zero tokens has no Chamfer
    score) and, when ``dim`` is given, the vectors must be ``dim`` wide.
    """
    if not isinstance(value, MultiVectors):
        raise InvalidInputError(
            f"{owner}: {param} must be MultiVectors (vectors [N, d] + offsets [n + 1]), got {type(value).__name__}. "
            "Build one with MultiVectors.from_list([...]) or Encoder.encode_tokens(texts)."
        )
    if len(value) == 0:
        raise InvalidInputError(f"{owner}: {param} must hold at least one item, got 0.")
    if dim is not None and value.dim != dim:
        raise InvalidInputError(
            f"{owner}: {param} must have token vectors of dimension {dim}, got {value.dim}. "
            f"Encode {role} and queries with the same model (and the same dim=)."
        )
    lengths = value.lengths
    if lengths.min() == 0:
        empty = np.flatnonzero(lengths == 0)
        raise InvalidInputError(
            f"{owner}: every item of {param} must have at least one token vector, got {len(empty)} empty item(s) "
            f"(first at index {int(empty[0])}). Drop empty texts before encoding, or give them some text."
        )
    return value


def item_blocks(offsets: np.ndarray, tokens_per_block: int):
    """Yield ``(first, last)`` item ranges of a ragged store (``offsets`` int64 ``[n + 1]``) holding about
    ``tokens_per_block`` tokens each (at least one item): how every kernel here bounds its memory."""
    tokens_per_block = max(int(tokens_per_block), 1)
    start, n = 0, len(offsets) - 1
    while start < n:
        stop = int(np.searchsorted(offsets, offsets[start] + tokens_per_block, side="right")) - 1
        stop = min(max(stop, start + 1), n)
        yield start, stop
        start = stop


def _indicator(offsets: np.ndarray) -> np.ndarray:
    """float32 ``[T, n]`` with a 1 where token ``t`` belongs to item ``i`` (segment sums as one matmul)."""
    lengths = np.diff(offsets)
    a = np.zeros((int(offsets[-1] - offsets[0]), len(lengths)), dtype=np.float32)
    a[np.arange(a.shape[0]), np.repeat(np.arange(len(lengths)), lengths)] = 1.0
    return a


def _score_block(q_tokens_t: np.ndarray, q_sum: np.ndarray, d_tokens: np.ndarray, d_starts: np.ndarray) -> np.ndarray:
    """Chamfer scores ``[n_docs_in_block, n_queries_in_block]`` for one block of documents.

    ``q_tokens_t`` float32 ``[d, Tq]`` (C-contiguous); ``q_sum`` the ``[Tq, nq]`` indicator; ``d_tokens`` ``[Td, d]``;
    ``d_starts`` int ``[nd]``: where each document starts inside ``d_tokens`` (all non-empty).
    """
    sims = d_tokens.astype(np.float32, copy=False) @ q_tokens_t  # [Td, Tq]
    best = np.maximum.reduceat(sims, d_starts, axis=0)  # [nd, Tq]: max over each document's tokens
    return best @ q_sum  # [nd, nq]: sum over each query's tokens


def maxsim(queries: MultiVectors, documents: MultiVectors, *, block_bytes: int = _BLOCK_BYTES) -> np.ndarray:
    """Exact Chamfer / MaxSim scores of every query against every document.

    ``queries`` and ``documents`` are :class:`MultiVectors` of one dimension ``d`` (float32 or
    float16; every item non-empty). Returns float32 ``[nq, nd]`` with
    ``out[i, j] = sum_{q in Q_i} max_{p in P_j} <q, p>``. Memory beyond the output is bounded by
    ``block_bytes`` (default 64 MiB).
    """
    check_multivectors(queries, "maxsim", "queries", role="queries")
    check_multivectors(documents, "maxsim", "documents", dim=queries.dim)
    out = np.empty((len(queries), len(documents)), dtype=np.float32)
    for qa, qb in item_blocks(queries.offsets, _QUERY_BLOCK_TOKENS):
        q_off = queries.offsets[qa : qb + 1]
        q_tokens_t = np.ascontiguousarray(np.asarray(queries.vectors[q_off[0] : q_off[-1]], dtype=np.float32).T)
        q_sum = _indicator(q_off)
        for da, db in item_blocks(documents.offsets, block_bytes // (4 * q_tokens_t.shape[1])):
            d_off = documents.offsets[da : db + 1]
            block = _score_block(q_tokens_t, q_sum, documents.vectors[d_off[0] : d_off[-1]], d_off[:-1] - d_off[0])
            out[qa:qb, da:db] = block.T
    return out


def maxsim_search(
    queries: MultiVectors,
    documents: MultiVectors,
    k: int,
    *,
    allowed: np.ndarray | None = None,
    block_bytes: int = _BLOCK_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-``k`` documents by exact Chamfer / MaxSim.

    ``allowed`` (bool ``[nd]``, optional) restricts the search to those documents. Returns
    ``(scores, positions)``: float32 ``[nq, k]`` descending and int64 ``[nq, k]`` document
    positions (ties by lower position), padded with ``-inf`` / ``-1`` when fewer than ``k`` qualify.
    Memory is bounded: queries are scored in blocks, never the full ``[nq, nd]`` matrix at once
    beyond one query block.
    """
    k = check_int(k, "maxsim_search", "k")
    check_multivectors(queries, "maxsim_search", "queries", role="queries")
    check_multivectors(documents, "maxsim_search", "documents", dim=queries.dim)
    keep = _check_allowed(allowed, len(documents), "maxsim_search")
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    positions = np.full((len(queries), k), -1, dtype=np.int64)
    for qa, qb in item_blocks(queries.offsets, _QUERY_BLOCK_TOKENS):
        sub = MultiVectors(queries.vectors[queries.offsets[qa] : queries.offsets[qb]],
                           queries.offsets[qa : qb + 1] - queries.offsets[qa])
        s = maxsim(sub, documents, block_bytes=block_bytes)
        if keep is None:
            scores[qa:qb], positions[qa:qb] = topk(s, k)
        else:
            scores[qa:qb], positions[qa:qb] = topk(s[:, keep], k, np.broadcast_to(keep, (len(s), len(keep))))
    return scores, positions


def check_allowed_mask(allowed, n: int, owner: str) -> np.ndarray | None:
    """``allowed`` checked as a bool ``[n]`` mask (True: the document may be returned), or ``None``."""
    if allowed is None:
        return None
    mask = np.asarray(allowed)
    if mask.dtype != np.bool_ or mask.shape != (n,):
        raise InvalidInputError(
            f"{owner}: allowed must be a bool array of shape ({n},), got {mask.dtype} {mask.shape}. "
            "Pass one flag per document, True where the document may be returned."
        )
    return mask


def _check_allowed(allowed, n: int, owner: str) -> np.ndarray | None:
    mask = check_allowed_mask(allowed, n, owner)
    return None if mask is None else np.flatnonzero(mask)


def maxsim_rerank(
    queries: MultiVectors,
    documents: MultiVectors,
    candidates: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Rescore each query's candidate documents with exact Chamfer / MaxSim and keep the best ``k``.

    ``candidates`` int ``[nq, c]`` document positions, ``-1`` for padding (duplicates are scored
    once). Returns ``(scores, positions)`` as :func:`maxsim_search` does. Only the candidates' token
    vectors are read, so ``documents`` may be memory-mapped.
    """
    k = check_int(k, "maxsim_rerank", "k")
    check_multivectors(queries, "maxsim_rerank", "queries", role="queries")
    check_multivectors(documents, "maxsim_rerank", "documents", dim=queries.dim)
    candidates = np.asarray(candidates)
    if candidates.ndim != 2 or len(candidates) != len(queries) or not np.issubdtype(candidates.dtype, np.integer):
        raise InvalidInputError(
            f"maxsim_rerank: candidates must be an int array of shape ({len(queries)}, c), got "
            f"{candidates.dtype} {candidates.shape}. Pass one row of document positions per query (-1 pads)."
        )
    if candidates.size and (candidates.max() >= len(documents) or candidates.min() < -1):
        raise InvalidInputError(
            f"maxsim_rerank: candidates must be document positions in [0, {len(documents)}) or -1, got values in "
            f"[{candidates.min()}, {candidates.max()}]."
        )
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    positions = np.full((len(queries), k), -1, dtype=np.int64)
    with threadpool_limits(limits=1, user_api="blas"):  # per-query products are small: threads only contend
        _rerank_loop(queries, documents, candidates, k, scores, positions)
    return scores, positions


def token_rows(offsets: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the token vectors of ``items`` (int ``[m]``) lie in a ragged store with ``offsets`` (int64 ``[n + 1]``).

    Returns ``(rows, gathered_offsets)``: int64 ``[T]`` token rows, item after item, and int64 ``[m + 1]``, the
    offsets of the items in that gathered order (so ``MultiVectors(vectors[rows], gathered_offsets)``).
    """
    items = np.asarray(items, dtype=np.int64)
    lengths = offsets[items + 1] - offsets[items]
    gathered = np.zeros(len(items) + 1, dtype=np.int64)
    np.cumsum(lengths, out=gathered[1:])
    return np.repeat(offsets[items] - gathered[:-1], lengths) + np.arange(int(gathered[-1])), gathered


def _rerank_loop(queries, documents, candidates, k, scores, positions) -> None:
    for i in range(len(queries)):
        cand = np.unique(candidates[i][candidates[i] >= 0])  # sorted: reads the memory map in order
        if cand.size == 0:
            continue
        rows, local = token_rows(documents.offsets, cand)
        q_t = np.ascontiguousarray(np.asarray(queries[i], dtype=np.float32).T)  # a transposed view is ~10x slower
        sims = np.asarray(documents.vectors[rows], dtype=np.float32) @ q_t
        s = np.maximum.reduceat(sims, local[:-1], axis=0).sum(axis=1, dtype=np.float32)
        scores[i], positions[i] = (a[0] for a in topk(s[None, :], k, cand[None, :]))
