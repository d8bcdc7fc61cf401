"""Retrieval evaluation: encode a BEIR split, search, score with trec_eval's metrics."""

from __future__ import annotations

import os

import numpy as np

from embedlab.errors import InvalidInputError
from embedlab.eval.data import BeirDataset
from embedlab.eval.metrics import Run, evaluate_run
from embedlab.index import exact_search


def run_from_positions(query_ids: list[str], corpus_ids: list[str], scores: np.ndarray,
                       positions: np.ndarray) -> Run:
    """Turn ``[nq, k]`` search results over corpus positions into a trec-style run (padding dropped)."""
    return {
        qid: {corpus_ids[p]: float(s) for p, s in zip(pos, sc) if p >= 0}
        for qid, pos, sc in zip(query_ids, positions, scores)
    }


def exact_metrics(queries: np.ndarray, corpus: np.ndarray, query_ids: list[str], corpus_ids: list[str], qrels,
                  k_values=(10,)) -> dict[str, float]:
    """trec_eval metrics of exact search of ``queries [nq, d]`` over ``corpus [n_docs, d]`` (rows named by
    ``query_ids`` and ``corpus_ids``) at each k of ``k_values``."""
    scores, positions = exact_search(queries, corpus, max(k_values))
    return evaluate_run(run_from_positions(query_ids, corpus_ids, scores, positions), qrels, k_values)


def evaluate_retrieval(
    encoder,
    dataset: BeirDataset,
    *,
    split: str = "test",
    k_values=(1, 3, 5, 10, 100),
    batch_size: int = 64,
    corpus_embeddings: np.ndarray | str | os.PathLike | None = None,
    query_prompt: str | None = None,
    **encode_options,
) -> dict[str, float]:
    """Exact-search retrieval metrics (``"ndcg@10"``, ``"recall@10"``, ``"mrr@10"`` ...) on ``split``.

    ``corpus_embeddings`` (float32 ``[n_docs, d]`` in corpus order, e.g. from an embedding cache)
    skips encoding the corpus; a shard folder written by :func:`embedlab.scale.encode_corpus` is read in corpus order
    (its model must be ``encoder``: the fingerprint is checked). ``encode_options`` (``dim``, ``layers``) apply to
    both sides.
    """
    if not k_values or min(k_values) < 1:
        raise InvalidInputError(f"evaluate_retrieval: k_values must be positive ints, got {k_values!r}.")
    query_ids, query_texts, qrels = dataset.split(split)
    if not query_ids:
        raise InvalidInputError(f"evaluate_retrieval: split {split!r} must judge at least one query, got none.")
    if isinstance(corpus_embeddings, (str, os.PathLike)):
        from embedlab.scale.transfer import shard_matrix

        corpus_embeddings = shard_matrix(corpus_embeddings, dataset.corpus_ids, fingerprint=encoder.fingerprint)
    if corpus_embeddings is None:
        corpus_embeddings = encoder.encode(dataset.corpus_texts, batch_size=batch_size, **encode_options)
    elif corpus_embeddings.shape[0] != len(dataset.corpus_ids):
        raise InvalidInputError(
            f"evaluate_retrieval: corpus_embeddings must have {len(dataset.corpus_ids)} rows (one per document), "
            f"got {corpus_embeddings.shape[0]}."
        )
    q = encoder.encode(query_texts, batch_size=batch_size, prompt=query_prompt, **encode_options)
    return exact_metrics(q, corpus_embeddings, query_ids, dataset.corpus_ids, qrels, k_values)
