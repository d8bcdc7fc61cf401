"""Retrieval metrics with trec_eval's definitions (checked against ``pytrec_eval`` in the tests).

Runs are ``{query id: {document id: score}}``; ranking sorts by score descending, ties broken by
document id descending, as trec_eval does. A document is relevant when its qrel is >= 1. Gains
in nDCG are the graded qrels (linear, trec_eval's ``ndcg_cut``). Each function returns the
per-query values; :func:`evaluate_run` averages them over the judged queries.
"""

from __future__ import annotations

import math

import numpy as np

from embedlab.eval.data import Qrels

Run = dict[str, dict[str, float]]
METRICS = ("ndcg", "recall", "precision", "mrr", "map")


def _ranked(scores: dict[str, float]) -> list[str]:
    return [d for d, _ in sorted(scores.items(), key=lambda x: (x[1], x[0]), reverse=True)]


def _one_query(ranking: list[str], rel: dict[str, int], k: int) -> dict[str, float]:
    relevant = {d for d, r in rel.items() if r > 0}
    top = ranking[:k]
    hits = [d in relevant for d in top]
    n_rel = len(relevant)
    dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(top) if rel.get(d, 0) > 0)
    ideal = sorted((r for r in rel.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    first = next((i for i, h in enumerate(hits) if h), None)
    precisions = [sum(hits[: i + 1]) / (i + 1) for i, h in enumerate(hits) if h]
    return {
        "ndcg": dcg / idcg if idcg > 0 else 0.0,
        "recall": sum(hits) / n_rel if n_rel else 0.0,
        "precision": sum(hits) / k,
        "mrr": 1.0 / (first + 1) if first is not None else 0.0,
        "map": sum(precisions) / n_rel if n_rel else 0.0,
    }


def per_query(run: Run, qrels: Qrels, k_values=(1, 3, 5, 10, 100)) -> dict[str, dict[str, float]]:
    """``{"ndcg@10": {qid: value}, ...}`` for every judged query with at least one relevant document."""
    out: dict[str, dict[str, float]] = {f"{m}@{k}": {} for m in METRICS for k in k_values}
    for qid, rel in qrels.items():
        if not any(r > 0 for r in rel.values()):
            continue
        ranking = _ranked(run.get(qid, {}))
        for k in k_values:
            for m, v in _one_query(ranking, rel, k).items():
                out[f"{m}@{k}"][qid] = v
    return out


def evaluate_run(run: Run, qrels: Qrels, k_values=(1, 3, 5, 10, 100)) -> dict[str, float]:
    """Mean of every metric over the judged queries: ``{"ndcg@10": 0.71, "recall@10": ...}``."""
    return {name: float(np.mean(list(v.values()))) if v else 0.0
            for name, v in per_query(run, qrels, k_values).items()}
