"""Second-stage reranking of a collection's candidates by their stored texts (``Collection.search(..., rerank=)``).

A reranker is anything with ``predict(pairs: list[tuple[str, str]]) -> float [n]`` (higher is better) and
``unreadable(texts) -> float`` (the share of the texts' words its tokenizer maps to its unknown token):
:class:`embedlab.models.CrossEncoder` (monoBERT, Nogueira & Cho 2019), or :class:`MaxSimReranker`, which scores
with the late interaction of ColBERT (Khattab & Zaharia 2020) from token vectors encoded on the fly.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from embedlab.errors import InvalidInputError
from embedlab.index.retrievers.fusion import fuse
from embedlab.params import check_int, check_weight_pair
from embedlab.types import Hits

MAX_RERANK_CANDIDATES = 1000
UNREADABLE_MAX = 0.5  # a reranker that cannot read more than this share of the candidates' words is refused


class MaxSimReranker:
    """Rerank by MaxSim between the token vectors of query and document: ``sum_q max_d <q, d>`` over an
    :class:`~embedlab.models.Encoder`'s (unit) token outputs (``encode_tokens``; its ``token_projection`` if it has
    one), computed for each (query, document) pair given."""

    def __init__(self, encoder: Any, *, batch_size: int = 32) -> None:
        if not callable(getattr(encoder, "encode_tokens", None)):
            raise InvalidInputError(f"MaxSimReranker: encoder must be an Encoder with encode_tokens, got "
                                    f"{type(encoder).__name__}.")
        self.encoder, self.batch_size = encoder, batch_size

    def predict(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """float32 ``[len(pairs)]`` MaxSim scores."""
        from embedlab.index.multivector.maxsim import maxsim

        queries = sorted({q for q, _ in pairs})
        docs = sorted({d for _, d in pairs})
        if not pairs:
            return np.zeros(0, np.float32)
        q_tok = self.encoder.encode_tokens(queries, batch_size=self.batch_size)
        d_tok = self.encoder.encode_tokens(docs, batch_size=self.batch_size)
        table = maxsim(q_tok, d_tok)  # [nq, nd]
        qi, di = {q: i for i, q in enumerate(queries)}, {d: i for i, d in enumerate(docs)}
        return np.array([table[qi[q], di[d]] for q, d in pairs], np.float32)

    def unreadable(self, texts: Sequence[str]) -> float:
        from embedlab.models.cross_encoder import unknown_share

        return unknown_share(self.encoder.tokenizer, texts)


def check_reranker(reranker: Any, candidates: Any, k: int, owner: str) -> int:
    """The number of first-stage candidates to rerank (at least ``k``)."""
    if not callable(getattr(reranker, "predict", None)):
        raise InvalidInputError(f"{owner}: rerank must be a reranker with predict(pairs) (embedlab.models.CrossEncoder "
                                f"or embedlab.index.MaxSimReranker), got {type(reranker).__name__}.")
    candidates = check_int(candidates, owner, "rerank_candidates", high=MAX_RERANK_CANDIDATES)
    return max(candidates, k)


def check_rerank_weights(weights: Any, reranker: Any, owner: str) -> tuple[float, float] | None:
    """``rerank_weights`` as 2 non-negative floats (first stage, reranker) with a positive sum, or ``None``."""
    if weights is None:
        return None
    if reranker is None:
        raise InvalidInputError(f"{owner}: rerank_weights= weighs the first stage against a reranker, got it without "
                                "rerank=. Drop rerank_weights, or pass rerank=.")
    return check_weight_pair(weights, owner, "rerank_weights", "first stage, reranker")


def rerank(reranker: Any, queries: list[str], scores: np.ndarray, rows: np.ndarray,
           texts_of: Callable[[list[int]], dict[int, str | None]], owner: str,
           weights: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Re-order each query's candidate ``rows`` (int64 ``[nq, c]``, ``-1`` padded) by ``reranker`` scores of
    (query, stored text). Returns ``(scores float32 [nq, c], rows int64 [nq, c], notes)``: reranked rows first, by
    the reranker's score; candidates without a stored text after them, in their first-stage order, with the
    first-stage score (``notes[i]`` says how many). Pairs are scored in one batched call.

    ``weights = (first, reranker)``: the order and the returned scores are instead the distribution-based score
    fusion (DBSF, :mod:`embedlab.index.retrievers.fusion`) of the first-stage and reranker scores over each query's
    candidates: an interpolation of the two stages, for a reranker that alone ranks worse than the first stage but
    errs differently. A candidate without a stored text has the first stage's share only."""
    flat = sorted({int(r) for r in rows.ravel() if r >= 0})
    texts = texts_of(flat) if flat else {}
    readable = [t for t in texts.values() if t]
    if readable and callable(getattr(reranker, "unreadable", None)):
        share = reranker.unreadable(readable)
        if share > UNREADABLE_MAX:
            raise InvalidInputError(
                f"{owner}: the reranker's tokenizer must read the stored texts, got {share:.0%} of their tokens unknown "
                f"to it (at most {UNREADABLE_MAX:.0%} allowed). Use a reranker trained on this language / vocabulary.")
    pairs, where = [], []
    for i, row in enumerate(rows):
        for j, r in enumerate(row):
            text = texts.get(int(r)) if r >= 0 else None
            if text is not None:
                pairs.append((queries[i], text))
                where.append((i, j))
    predicted = np.asarray(reranker.predict(pairs), np.float32) if pairs else np.zeros(0, np.float32)
    if predicted.shape != (len(pairs),):
        raise InvalidInputError(f"{owner}: the reranker must return one score per pair, got shape {predicted.shape} "
                                f"for {len(pairs)} pairs.")
    new = np.full(rows.shape, np.nan, np.float32)
    for (i, j), s in zip(where, predicted):
        new[i, j] = s
    if weights is not None:
        scored = ~np.isnan(new)
        fused = fuse([Hits(rows, scores), Hits(np.where(scored, rows, -1), np.where(scored, new, -np.inf))],
                     rows.shape[1], "dbsf", weights=weights)
        missing = ((rows >= 0) & ~scored).sum(axis=1)
        return fused.scores, fused.ids, [f" ({c} without text: first stage only)" if c else "" for c in missing.tolist()]
    out_scores = np.full(rows.shape, -np.inf, np.float32)
    out_rows = np.full(rows.shape, -1, np.int64)
    notes = []
    for i in range(len(rows)):
        scored = np.flatnonzero(~np.isnan(new[i]))
        rest = [j for j in range(rows.shape[1]) if rows[i, j] >= 0 and np.isnan(new[i, j])]
        order = scored[np.argsort(-new[i, scored], kind="stable")]
        both = len(order) + len(rest)
        out_rows[i, :both] = np.concatenate([rows[i, order], rows[i, rest]]) if both else []
        out_scores[i, : len(order)] = new[i, order]
        if rest:
            out_scores[i, len(order) : both] = scores[i, rest]
        notes.append(f" ({len(rest)} without text: first-stage order)" if rest else "")
    return out_scores, out_rows, notes
