"""Hybrid search: fuse the ranked lists of two (or more) retrievers over the same corpus.

* Reciprocal rank fusion (Cormack, Clarke and Büttcher 2009, "Reciprocal Rank Fusion outperforms
  Condorcet and individual Rank Learning Methods"): ``score(d) = sum_r w_r / (rrf_k + rank_r(d))``
  with ranks starting at 1 and ``rrf_k = 60`` as in the paper; a document missing from a list adds 0.
* Weighted score fusion (the convex combination of Bruch, Gai and Ingber 2023, "An Analysis of Fusion
  Functions for Hybrid Retrieval", eq. 1): ``score(d) = sum_r w_r * norm_r(s_r(d))`` where ``norm``
  is min-max over each query's returned list; a document missing from a list gets that list's
  normalised minimum, 0.
* Distribution-based score fusion (DBSF, as Qdrant names it): the weighted sum again, with each list normalised
  by its own score distribution, ``(s - (mu - 3 sigma)) / (6 sigma)`` (mean and standard deviation over the query's
  returned list), so one outlier does not squash the rest of the list as min-max does.

:func:`fuse` is the one entry point by name (``"rrf"``, ``"weighted"``, ``"dbsf"``), used by
:class:`HybridRetriever` and by hybrid collection search. Inputs and output are batched :class:`~embedlab.types.Hits` whose ``ids`` are corpus positions, so
every fused retriever must index the same corpus in the same order.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from embedlab.errors import InvalidInputError
from embedlab.params import check_choice, check_int
from embedlab.topk import topk
from embedlab.types import Hits

NORMALIZATIONS = ("minmax", "distribution", "none")
METHODS = ("rrf", "weighted", "dbsf")


class Retriever(Protocol):
    """Anything with ``search(queries: list[str], k: int) -> Hits`` over corpus positions."""

    def search(self, queries: Sequence[str], k: int) -> Hits: ...


def _check(runs: Sequence[Hits], k: int, weights, owner: str) -> np.ndarray:
    if len(runs) < 2:
        raise InvalidInputError(f"{owner}: runs must hold at least 2 Hits to fuse, got {len(runs)}.")
    if any(r.ids.ndim != 2 for r in runs) or len({len(r.ids) for r in runs}) != 1:
        raise InvalidInputError(
            f"{owner}: runs must be batched Hits with the same number of queries, got {[r.ids.shape for r in runs]}."
        )
    check_int(k, owner, "k")
    w = np.ones(len(runs)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(runs),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise InvalidInputError(
            f"{owner}: weights must be {len(runs)} non-negative finite numbers with a positive sum, got {weights!r}."
        )
    return w


def _top(fused: list[dict[int, float]], k: int) -> Hits:
    """The best ``k`` documents of each query's ``{doc: fused score}`` table (ties by lower doc)."""
    ids = np.full((len(fused), k), -1, dtype=np.int64)
    scores = np.full((len(fused), k), -np.inf, dtype=np.float32)
    for i, table in enumerate(fused):
        if table:
            docs = np.fromiter(table.keys(), dtype=np.int64, count=len(table))
            fused_scores = np.fromiter(table.values(), dtype=np.float64, count=len(table))
            scores[i], ids[i] = (a[0] for a in topk(fused_scores[None], k, docs[None]))
    return Hits(ids, scores)


def reciprocal_rank_fusion(runs: Sequence[Hits], k: int, *, rrf_k: float = 60.0, weights: Sequence[float] | None = None) -> Hits:
    """Fuse ranked lists by reciprocal rank; returns the top ``k`` (-1 / -inf padded) per query."""
    w = _check(runs, k, weights, "reciprocal_rank_fusion")
    if not rrf_k >= 0:
        raise InvalidInputError(f"reciprocal_rank_fusion: rrf_k must be >= 0, got {rrf_k!r}.")
    fused: list[dict[int, float]] = [{} for _ in range(len(runs[0].ids))]
    for weight, run in zip(w, runs):
        for i, row in enumerate(run.ids):
            table = fused[i]
            rank = 0
            for doc in row:
                if doc < 0:
                    continue
                rank += 1
                table[int(doc)] = table.get(int(doc), 0.0) + weight / (rrf_k + rank)
    return _top(fused, int(k))


def weighted_score_fusion(
    runs: Sequence[Hits],
    k: int,
    *,
    weights: Sequence[float] | None = None,
    normalization: str = "minmax",
) -> Hits:
    """Fuse by a weighted sum of per-query normalised scores; returns the top ``k`` per query."""
    w = _check(runs, k, weights, "weighted_score_fusion")
    check_choice(normalization, NORMALIZATIONS, "weighted_score_fusion", "normalization")
    fused: list[dict[int, float]] = [{} for _ in range(len(runs[0].ids))]
    for weight, run in zip(w, runs):
        for i, (row, sc) in enumerate(zip(run.ids, run.scores)):
            keep = (row >= 0) & np.isfinite(sc)
            row, sc = row[keep], sc[keep].astype(np.float64)
            if not len(row):
                continue
            if normalization == "minmax":
                span = sc.max() - sc.min()
                sc = (sc - sc.min()) / span if span > 0 else np.ones_like(sc)
            elif normalization == "distribution":
                sigma = sc.std()
                sc = (sc - (sc.mean() - 3 * sigma)) / (6 * sigma) if sigma > 0 else np.full_like(sc, 0.5)
            table = fused[i]
            for doc, s in zip(row.tolist(), sc.tolist()):
                table[doc] = table.get(doc, 0.0) + weight * s
    return _top(fused, int(k))


def fuse(runs: Sequence[Hits], k: int, method: str = "rrf", *, weights: Sequence[float] | None = None,
         rrf_k: float = 60.0) -> Hits:
    """Fuse ``runs`` by ``method``: ``"rrf"`` (:func:`reciprocal_rank_fusion`), ``"weighted"`` (min-max
    :func:`weighted_score_fusion`) or ``"dbsf"`` (distribution-normalised :func:`weighted_score_fusion`)."""
    check_choice(method, METHODS, "fuse", "method")
    if method == "rrf":
        return reciprocal_rank_fusion(runs, k, rrf_k=rrf_k, weights=weights)
    return weighted_score_fusion(runs, k, weights=weights,
                                 normalization="minmax" if method == "weighted" else "distribution")


class HybridRetriever:
    """Search two retrievers for ``depth`` candidates each and fuse them.

    ``method`` is a :func:`fuse` method (``"rrf"`` with ``rrf_k``, ``"weighted"``, ``"dbsf"``); ``weight`` is the
    share of ``first`` (``second`` gets ``1 - weight``).
    """

    def __init__(self, first: Retriever, second: Retriever, *, method: str = "rrf", weight: float = 0.5,
                 rrf_k: float = 60.0, depth: int = 100) -> None:
        check_choice(method, METHODS, "HybridRetriever", "method")
        if not 0 <= weight <= 1:
            raise InvalidInputError(f"HybridRetriever: weight must be in [0, 1], got {weight!r}.")
        check_int(depth, "HybridRetriever", "depth")
        for name, r in (("first", first), ("second", second)):
            if not callable(getattr(r, "search", None)):
                raise InvalidInputError(f"HybridRetriever: {name} must have a search(queries, k) method, got {type(r).__name__}.")
        self.first, self.second = first, second
        self.method, self.weight, self.rrf_k, self.depth = method, weight, rrf_k, depth

    def search(self, queries: Sequence[str], k: int) -> Hits:
        """Top-``k`` fused hits per query (corpus positions)."""
        check_int(k, "HybridRetriever.search", "k")
        depth = max(self.depth, int(k))
        runs = [self.first.search(queries, depth), self.second.search(queries, depth)]
        return fuse(runs, k, self.method, weights=(self.weight, 1.0 - self.weight), rrf_k=self.rrf_k)
