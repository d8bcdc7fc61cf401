"""The filter planner: one strategy per search call, chosen from the filter's exact selectivity.

The filter is evaluated to an exact bitmap first (see :mod:`embedlab.index.collection.metadata`), so the planner
knows ``m`` = the number of allowed rows out of ``n``, and ``s = m / n``. Strategies:

- ``ann``: no filter and no deletes, the index alone.
- ``exact``: score every query against the ``m`` allowed rows; exact by construction. A call of at most
  ``IN_PLACE_MAX_NQ`` queries against at least ``IN_PLACE_MIN_ROWS`` rows scores them where the index keeps them
  (no copy, split across threads for one query), at ``IN_PLACE_ROW_COST`` (``IN_PLACE_SPLIT_ROW_COST`` split)
  per row and query; otherwise the call gathers the rows once and scores them with one matrix product (BLAS), at
  ``m * (1 + GATHER_COST / nq)`` per query, in units of one BLAS dot product (the gather is shared by the
  ``nq`` queries of the call).
- ``filtered_ann``: the graph (or IVF lists) searched with a faiss ``IDSelectorBitmap``. A walk with a selector
  keeps only allowed nodes as results, so its recall falls as ``s`` drops (cf. ACORN, Patel et al. 2024,
  Sec. 3, on predicate-agnostic filtered HNSW); efSearch is raised to ``ef * (RAISE_BELOW / s) ** RAISE_POWER``
  below ``s = RAISE_BELOW``, a fit of the efSearch that keeps recall@10 near 0.96 on WordNet-BEIR (0.1 <= s <= 0.3,
  M=16). Cost ``ef_s * GRAPH_COST_PER_EF * links / 32``: faiss's selector walk costs about the same per unit
  of efSearch whatever ``s`` (measured on 2 cores, 384-d, 117k rows: ~180 BLAS dot products).
- ``post_filter``: the unfiltered graph is asked for ``c = max(ceil(OVERSAMPLE * k / s), MIN_CANDIDATES * k)``
  candidates at efSearch ``max(ef, c)`` and the disallowed ones are dropped; weighed from ``s >= POST_FILTER_MIN``
  at the walk's cost per unit of efSearch (measured on WordNet-BEIR, one query per call: at s = 0.095, 211
  candidates give recall 0.977 in 0.93 ms where the selector walk needs efSearch 264 for 0.956 in 0.95 ms).
  IVF post-filters from ``s >= FLAT_SCAN_MIN`` at its own nprobe.
- ``flat_scan``: a flat index scanning every row with the bitmap (cheaper than gathering most rows).

Contract kept by a fallback: whenever a query gets fewer than ``min(k, m)`` hits from an approximate
strategy, that query is answered exactly (its strategy reads ``<name>+exact``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import faiss
import numpy as np

from embedlab.index.collection.base import pad_hits
from embedlab.index.collection.payload import Allowed
from embedlab.index.search.faiss_backends import VectorIndex, faiss_metric, score_parts
from embedlab.selector import BitmapSelector
from embedlab.topk import topk, topk_blocks

GRAPH_COST_PER_EF = 180.0  # HNSW selector walk, per query and unit of efSearch, in BLAS dot products (measured)
IVF_ROW_COST = 3.0  # scanning one IVF list entry (unbatched), in BLAS dot products
GATHER_COST = 12.0  # copying one allowed row out of the vectors file, in BLAS dot products (a call's fixed share:
# one query per call pays ~13x the per-row cost of a batched product; measured 2.8 ms for 11k rows vs 0.93 ms for an
# efSearch-264 selector walk on 2 cores, 117k x 384)
IN_PLACE_MAX_NQ = 4  # calls of at most this many queries score allowed rows in place (faiss compute_distance_subset)
IN_PLACE_MIN_ROWS = 1024  # ... when at least this many rows are allowed (below, gathering them costs less)
IN_PLACE_ROW_COST = 3.3  # ... per row and query, one list per query (measured: 11k rows in 0.82 ms, 1.2k in 0.09 ms,
# one 384-d query) ...
IN_PLACE_SPLIT_ROW_COST = 2.2  # ... and split across 2 threads (score_parts > 1; measured: the 11k rows in 0.54 ms)
RAISE_BELOW = 0.5  # efSearch is raised for selectivities below this ...
RAISE_POWER = 0.85  # ... to ef * (RAISE_BELOW / s) ** RAISE_POWER
POST_FILTER_MIN = 0.05  # graph: post-filtering is weighed from this selectivity up (below, 2k/s candidates are many)
FLAT_SCAN_MIN = 0.5  # flat index, and IVF post-filtering: from this selectivity up
OVERSAMPLE = 2.0  # post-filter candidates = OVERSAMPLE * k / s (about 2k allowed among them) ...
MIN_CANDIDATES = 6  # ... and at least MIN_CANDIDATES * k (measured: 2k/s alone gives recall 0.91 at s = 0.5)
POST_PENALTY = 1.15  # post-filtering's extra cost over a walk of the same efSearch: dropping candidates, and the
# exact fallback for queries left short (in a batch of 1,000 at s = 0.5 a few short queries gather 57k rows; the
# selector walk then won by 1.5x)
MAX_EF = 4096
GATHER_ROWS = 65536  # exact scan in row chunks, to bound memory


@dataclass(frozen=True)
class Plan:
    strategy: str  # ann | exact | filtered_ann | post_filter | flat_scan
    allowed: int  # rows that pass the filter (and are not deleted)
    total: int  # rows in the index
    ef: int  # efSearch / nprobe used by approximate strategies (0 otherwise)
    candidates: int  # k requested from the index (post_filter oversampling), else k

    @property
    def selectivity(self) -> float:
        return self.allowed / self.total if self.total else 0.0

    def as_dict(self) -> dict:
        return {"strategy": self.strategy, "allowed": self.allowed, "total": self.total,
                "selectivity": self.selectivity, "ef": self.ef, "candidates": self.candidates}


def plan(index: VectorIndex, k: int, total: int, allowed: int | None, ef: int | None, links: int = 32,
         nq: int = 1) -> Plan:
    """Choose a strategy for ``nq`` queries sharing one filter. ``allowed`` is ``None`` when nothing is
    filtered (no filter, no deletes); ``links`` is the graph's neighbours per node (``2 * M`` on layer 0)."""
    base_ef = int(ef or index.default_ef)
    if allowed is None:
        return Plan("flat_scan" if index.kind == "flat" else "ann", total, total, base_ef, k)
    m = allowed
    s = m / total if total else 0.0
    if m <= k or m == 0:
        return Plan("exact", m, total, 0, k)
    if index.kind == "flat":
        return Plan("exact" if s < FLAT_SCAN_MIN else "flat_scan", m, total, 0, k)
    cand = min(total, max(math.ceil(OVERSAMPLE * k / s), MIN_CANDIDATES * k))
    if index.kind == "ivf" and s >= FLAT_SCAN_MIN:
        return Plan("post_filter", m, total, base_ef, cand)
    ef_s = min(MAX_EF, math.ceil(max(base_ef, k) * max(1.0, RAISE_BELOW / s) ** RAISE_POWER))
    per_ef = GRAPH_COST_PER_EF * links / 32
    if index.kind == "ivf":
        nlist = getattr(getattr(index, "index", None), "nlist", 0)
        graph_cost = IVF_ROW_COST * total * min(ef_s, nlist) / nlist if nlist else math.inf  # rows scanned
    else:
        graph_cost = ef_s * per_ef
    if _in_place(index, nq, m):
        exact_cost = m * (IN_PLACE_SPLIT_ROW_COST if score_parts(nq, m) > 1 else IN_PLACE_ROW_COST)
    else:
        exact_cost = m * (1 + GATHER_COST / max(nq, 1))
    costs = {"exact": exact_cost, "filtered_ann": graph_cost}
    if index.kind == "hnsw" and s >= POST_FILTER_MIN and cand <= MAX_EF:
        costs["post_filter"] = max(base_ef, cand) * per_ef * POST_PENALTY  # a walk costs the same per unit of ef
    best = min(costs, key=costs.get)
    if best == "exact":
        return Plan("exact", m, total, 0, k)
    if best == "post_filter":
        return Plan("post_filter", m, total, max(base_ef, cand), cand)
    return Plan("filtered_ann", m, total, ef_s, k)


def execute(p: Plan, index: VectorIndex, vectors: np.ndarray, queries: np.ndarray, k: int, metric: str,
            allowed: Allowed | None, *, oversample: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Run plan ``p``: ``(scores float32 [nq, k], rows int64 [nq, k], strategy per query)``. ``allowed``: the rows the
    filter allows (``None``: every row); ``oversample`` reaches an index that rescores its candidates (funnel,
    compressed) for this call."""
    nq = len(queries)
    extra = {} if oversample is None else {"oversample": oversample}
    if p.strategy == "exact":
        rows = allowed.rows if allowed is not None else np.arange(len(vectors))
        scores, out = exact_rows(queries, vectors, rows, k, metric, index)
        return scores, out, [p.strategy] * nq
    selection = (BitmapSelector(allowed.mask) if allowed is not None and p.strategy in ("filtered_ann", "flat_scan")
                 else None)
    if p.strategy == "post_filter":
        cand_scores, cand_rows = index.search(queries, p.candidates, allowed=None, ef=p.ef, **extra)
        ok = cand_rows >= 0
        ok[ok] = allowed.mask[cand_rows[ok]]
        scores, out = _first_k(cand_scores, cand_rows, ok, k)
    else:
        scores, out = index.search(queries, k, allowed=selection, ef=p.ef or None, **extra)
    strategy = [p.strategy] * nq
    need = min(k, p.allowed)
    short = np.flatnonzero((out >= 0).sum(1) < need)
    if len(short):  # contract: k hits whenever k rows pass
        rows = allowed.rows if allowed is not None else np.arange(len(vectors))
        scores[short], out[short] = exact_rows(queries[short], vectors, rows, k, metric, index)
        for i in short:
            strategy[i] = p.strategy + "+exact"
    return scores, out, strategy


def _first_k(scores: np.ndarray, rows: np.ndarray, ok: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep, per query, the first ``k`` candidates where ``ok`` (candidates arrive best first)."""
    nq = len(scores)
    out_s = np.full((nq, k), -np.inf, dtype=np.float32)
    out_r = np.full((nq, k), -1, dtype=np.int64)
    rank = np.cumsum(ok, axis=1) - 1
    keep = ok & (rank < k)
    qi, ci = np.nonzero(keep)
    out_s[qi, rank[qi, ci]] = scores[qi, ci]
    out_r[qi, rank[qi, ci]] = rows[qi, ci]
    return out_s, out_r


def _in_place(index: VectorIndex | None, nq: int, m: int) -> bool:
    """Whether exact scoring of ``nq`` queries against ``m`` rows reads the rows where ``index`` keeps them."""
    return index is not None and nq <= IN_PLACE_MAX_NQ and m >= IN_PLACE_MIN_ROWS and index.keeps_rows


def exact_rows(queries: np.ndarray, vectors: np.ndarray, rows: np.ndarray, k: int, metric: str,
               index: VectorIndex | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` among ``vectors[rows]``; ``queries`` are prepared (unit rows for cosine). At most
    :data:`IN_PLACE_MAX_NQ` queries against at least :data:`IN_PLACE_MIN_ROWS` rows that an ``index`` holds as
    float32 are scored in place
    (:meth:`~embedlab.index.search.faiss_backends.VectorIndex.score_rows`, no copy) and ranked by :func:`topk`;
    otherwise the rows are gathered in chunks of :data:`GATHER_ROWS` and scored by ``faiss.knn`` (blocked BLAS
    with a fused top-k: 1.4-2x faster than a numpy product plus ``argpartition`` on 2 cores). Returns stored
    rows, best first, ``-inf`` / ``-1`` padded. Scores: inner product, or minus squared L2."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    rows = np.asarray(rows, dtype=np.int64)
    in_place = _in_place(index, len(queries), len(rows)) and index.ntotal == len(vectors)

    def chunks():
        for start in range(0, len(rows), GATHER_ROWS):
            chunk = rows[start : start + GATHER_ROWS]
            if in_place:  # ranked by topk; rows ascending, so a tie goes to the lower row
                s, pos = topk(index.score_rows(queries, chunk), k)
            else:
                sub = np.ascontiguousarray(vectors[chunk], dtype=np.float32)
                s, pos = faiss.knn(queries, sub, min(k, len(chunk)), metric=faiss_metric(metric))
                s = -s if metric == "l2" else s
            yield s, np.where(pos >= 0, chunk[np.maximum(pos, 0)], -1)

    if 0 < len(rows) <= GATHER_ROWS:  # one chunk: already ranked (saves ~0.1 ms of merging per call)
        s, found = next(chunks())
        if s.shape[1] == k:
            return s.astype(np.float32, copy=False), found.astype(np.int64, copy=False)
        return pad_hits(s.astype(np.float32), found.astype(np.int64), k)
    return topk_blocks(chunks(), len(queries), k)
