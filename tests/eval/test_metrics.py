"""Metrics: hand-computed tables and equality with pytrec_eval on randomised runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embedlab.eval import evaluate_run

pytrec_eval = pytest.importorskip("pytrec_eval")


def test_hand_computed_table():
    qrels = {"q": {"a": 1, "c": 2, "z": 1}}
    run = {"q": {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.1}}
    m = evaluate_run(run, qrels, k_values=(1, 3))
    assert m["precision@1"] == 1.0 and m["precision@3"] == pytest.approx(2 / 3)
    assert m["recall@3"] == pytest.approx(2 / 3)
    assert m["mrr@3"] == 1.0
    assert m["map@3"] == pytest.approx((1 / 1 + 2 / 3) / 3)
    dcg = 1 / math.log2(2) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@3"] == pytest.approx(dcg / idcg)


def test_ties_are_broken_by_document_id_descending_like_trec_eval():
    qrels = {"q": {"a": 1}}
    run = {"q": {"a": 0.5, "b": 0.5}}
    assert evaluate_run(run, qrels, k_values=(1,))["recall@1"] == 0.0  # "b" ranks first


def _random_case(rng, n_queries=40, n_docs=60, ties=False):
    qrels, run = {}, {}
    for q in range(n_queries):
        docs = rng.choice(n_docs, size=rng.integers(1, 8), replace=False)
        qrels[f"q{q}"] = {f"d{d}": int(rng.integers(0, 4)) for d in docs}
        if not any(qrels[f"q{q}"].values()):
            qrels[f"q{q}"][f"d{docs[0]}"] = 1
        retrieved = rng.choice(n_docs, size=rng.integers(1, 40), replace=False)
        scores = rng.integers(0, 5, len(retrieved)) / 4 if ties else rng.random(len(retrieved))
        run[f"q{q}"] = {f"d{d}": float(s) for d, s in zip(retrieved, scores)}
    return qrels, run


@pytest.mark.parametrize("seed, ties", [(0, False), (1, False), (2, True), (3, True)])
def test_equal_to_pytrec_eval(seed, ties):
    rng = np.random.default_rng(seed)
    qrels, run = _random_case(rng, ties=ties)
    ks = (1, 3, 5, 10, 20)
    measures = {f"ndcg_cut.{','.join(map(str, ks))}", f"recall.{','.join(map(str, ks))}",
                f"P.{','.join(map(str, ks))}", f"map_cut.{','.join(map(str, ks))}", "recip_rank"}
    ref = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    ours = evaluate_run(run, qrels, k_values=ks)
    for k in ks:
        for name, key in (("ndcg", "ndcg_cut"), ("recall", "recall"), ("precision", "P"), ("map", "map_cut")):
            expected = np.mean([ref[q][f"{key}_{k}"] for q in ref])
            assert ours[f"{name}@{k}"] == pytest.approx(expected, abs=1e-6), (name, k)
    # MRR@k equals trec_eval's recip_rank on runs truncated to their top k.
    for k in ks:
        truncated = {q: dict(sorted(r.items(), key=lambda x: (x[1], x[0]), reverse=True)[:k]) for q, r in run.items()}
        ref_k = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(truncated)
        expected = np.mean([ref_k[q]["recip_rank"] if q in ref_k else 0.0 for q in qrels])
        assert ours[f"mrr@{k}"] == pytest.approx(expected, abs=1e-6)
