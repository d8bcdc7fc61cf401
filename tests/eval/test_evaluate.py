"""STS and retrieval evaluation end to end on real data slices, and the LIMIT generator."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from embedlab.errors import InvalidInputError
from embedlab.eval import evaluate_retrieval, evaluate_sts, load_beir, load_sts
from embedlab.eval.limit import generate
from embedlab.index import exact_search


def test_sts_on_a_slice_correlates_with_gold(encoder, data_dir):
    pairs = load_sts(data_dir / "stsbenchmark", "test")[:300]
    result = evaluate_sts(encoder, pairs)
    assert result["n"] == 300 and 0.7 < result["spearman"] < 0.95


def test_sts_needs_pairs(encoder):
    with pytest.raises(InvalidInputError, match="at least 2 pairs"):
        evaluate_sts(encoder, [])


def test_retrieval_on_limit_small(encoder, data_dir):
    ds = load_beir(data_dir / "limit-small")
    m = evaluate_retrieval(encoder, ds, split="test", k_values=(2, 10, 46))
    assert 0.05 < m["recall@2"] < 0.5          # single vectors struggle here
    assert m["recall@46"] == pytest.approx(1.0)  # every document retrieved at k = n


def test_retrieval_rejects_wrong_corpus_embeddings(encoder, data_dir):
    ds = load_beir(data_dir / "limit-small")
    with pytest.raises(InvalidInputError, match="must have 46 rows"):
        evaluate_retrieval(encoder, ds, corpus_embeddings=np.zeros((3, 384), np.float32))


def test_exact_search_matches_a_full_sort(rng):
    x = rng.standard_normal((500, 16)).astype(np.float32)
    q = rng.standard_normal((7, 16)).astype(np.float32)
    for metric in ("ip", "cosine", "l2"):
        scores, pos = exact_search(q, x, 10, metric=metric, query_chunk=3)
        if metric == "ip":
            full = q @ x.T
        elif metric == "cosine":
            full = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T
        else:
            full = -((q[:, None, :] - x[None]) ** 2).sum(-1)
        np.testing.assert_array_equal(pos, np.argsort(-full, axis=1, kind="stable")[:, :10])
        np.testing.assert_allclose(scores, np.take_along_axis(full, pos, 1), rtol=1e-4, atol=1e-3)
    scores, pos = exact_search(q, x[:3], 5)
    assert (pos[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()


def test_limit_generator_covers_every_pair(tmp_path):
    ds = load_beir(generate(tmp_path / "limit", n_docs=8, k=2, seed=3))
    ids, texts, qrels = ds.split("test")
    answer_sets = {frozenset(rel) for rel in qrels.values()}
    assert answer_sets == {frozenset(p) for p in itertools.combinations(ds.corpus_ids, 2)}
    assert all(t.startswith("Who likes ") for t in texts)
    for qid, text in zip(ids, texts):  # each relevant document's text names the attribute
        attribute = text[len("Who likes "):-1]
        for doc in qrels[qid]:
            assert attribute in ds.corpus_texts[ds.corpus_ids.index(doc)]
    again = load_beir(generate(tmp_path / "again", n_docs=8, k=2, seed=3))
    assert again.corpus_texts == ds.corpus_texts


def test_limit_generator_distractors_and_bad_sizes(tmp_path):
    from embedlab.eval.limit import statistics

    path = generate(tmp_path / "d", n_docs=5, k=2, n_attributes=14, attributes_per_doc=6, seed=0)
    stats = statistics(path)  # every document padded with distractors to the same count
    assert stats["attributes_per_doc"] == [6, 6] and stats["problems"] == []
    with pytest.raises(InvalidInputError, match="core must be an int with k=2 < core <= n_docs=2"):
        generate(tmp_path / "x", n_docs=2, k=2)
    with pytest.raises(InvalidInputError, match="n_attributes must be >= 12"):
        generate(tmp_path / "y", n_docs=5, k=2, n_attributes=3, attributes_per_doc=6)
