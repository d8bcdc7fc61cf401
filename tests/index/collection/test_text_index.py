"""Hybrid search in collections: the BM25 text index against a fresh bm25s fit of the live texts, fusion, filters on
both sides, rerank, and the errors of bad calls."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedlab.errors import InvalidInputError, UnsupportedError
from embedlab.index import BM25, Collection
from embedlab.index.collection.text_index import TextIndex
from embedlab.index.retrievers.rerank import rerank
from embedlab.index.retrievers.fusion import fuse
from embedlab.types import Hits

WORDS = ["apple", "banana", "cherry", "delta", "echo", "fox", "golf", "hotel", "india", "juliet", "kilo", "lima"]
DIM = 8


def _texts(rng, n):
    return [" ".join(rng.choice(WORDS, size=rng.integers(1, 8))) for _ in range(n)]


def _same_ranking(scores, rows, ref: Hits, live_rows=None):
    """Scores equal at every rank; rows equal wherever the score is not tied with a neighbour."""
    ref_rows = ref.ids if live_rows is None else np.where(ref.ids >= 0, live_rows[np.clip(ref.ids, 0, None)], -1)
    np.testing.assert_allclose(np.where(np.isfinite(scores), scores, 0), np.where(np.isfinite(ref.scores), ref.scores, 0),
                               rtol=1e-5, atol=1e-5)
    assert (np.isfinite(scores) == np.isfinite(ref.scores)).all()
    for i in range(len(rows)):
        for j in range(rows.shape[1]):
            if not np.isfinite(scores[i, j]):
                continue
            tied = any(np.isfinite(scores[i, m]) and abs(scores[i, j] - scores[i, m]) < 1e-4
                       for m in (j - 1, j + 1) if 0 <= m < rows.shape[1])
            if not tied:
                assert rows[i, j] == ref_rows[i, j]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 60), chunks=st.integers(1, 4))
def test_text_index_equals_bm25s_fitted_on_the_live_texts(seed, n, chunks):
    rng = np.random.default_rng(seed)
    docs = _texts(rng, n)
    queries = _texts(rng, 5)
    index = TextIndex()
    for part in np.array_split(np.arange(n), chunks):  # appended in several writes
        index.add(index.rows, [docs[i] for i in part])
    live = rng.random(n) < 0.7
    if not live.any():
        live[0] = True
    k = 5
    scores, rows = index.search(queries, k, live, live, key=seed)
    keep = np.flatnonzero(live)
    _same_ranking(scores, rows, BM25().fit([docs[i] for i in keep]).search(queries, k), keep)
    compacted = TextIndex.compact(index, keep)
    everything = np.ones(len(keep), bool)
    c_scores, c_rows = compacted.search(queries, k, everything, everything, key=0)
    _same_ranking(c_scores, c_rows, BM25().fit([docs[i] for i in keep]).search(queries, k))


def _collection(tmp_path, n=60, *, text_index=True, seed=0):
    rng = np.random.default_rng(seed)
    docs = _texts(rng, n)
    vecs = rng.normal(size=(n, DIM)).astype(np.float32)
    col = Collection.create(tmp_path / "col", dim=DIM, index="flat", text_index=text_index)
    col.add(list(range(n)), vecs, texts=docs, metadata=[{"g": i % 3} for i in range(n)])
    return col, docs, vecs


def _bm25_ids(docs, ids, queries, k):
    hits = BM25().fit([docs[i] for i in ids]).search(queries, k)
    return hits.scores, np.where(hits.ids >= 0, np.asarray(ids)[np.clip(hits.ids, 0, None)], -1)


def _as_rows(hits):
    return np.array([[-1 if i is None else i for i in row] for row in hits.ids], dtype=np.int64)


def test_sparse_follows_adds_upserts_deletes_compaction_and_reopen(tmp_path):
    col, docs, vecs = _collection(tmp_path)
    queries = ["apple banana", "golf", "lima kilo juliet"]
    live = list(range(60))

    def check(c):
        hits = c.search(queries, 5, mode="sparse")
        ref_scores, ref_ids = _bm25_ids(docs, live, queries, 5)
        _same_ranking(hits.scores, _as_rows(hits), Hits(ref_ids, ref_scores))
        assert set(hits.strategy) == {"bm25"}

    check(col)
    col.add([60, 61], vecs[:2], texts=["apple apple apple", "golf hotel"])
    docs += ["apple apple apple", "golf hotel"]
    live += [60, 61]
    check(col)
    col.upsert([3], vecs[3:4], texts=["lima lima kilo"])
    docs[3] = "lima lima kilo"
    check(col)
    col.delete([0, 5, 60])
    live = [i for i in live if i not in (0, 5, 60)]
    check(col)
    col.compact()
    check(col)
    col.close()
    with Collection.open(tmp_path / "col", readonly=True) as again:  # rebuilt from the stored texts
        check(again)
        with Collection.open(tmp_path / "col") as writer:  # another handle writes; the reader catches up
            writer.add([99], vecs[:1], texts=["juliet juliet kilo"])
        docs += [None] * (99 - len(docs)) + ["juliet juliet kilo"]
        live.append(99)
        check(again)


def test_filters_apply_to_both_sides_and_hybrid_equals_fusing_the_two_sides(tmp_path):
    col, docs, vecs = _collection(tmp_path)
    queries = ["apple banana", "golf india"]
    q = vecs[:2] + 0.1
    for fusion in ("rrf", "weighted", "dbsf"):
        hits = col.search(q, 5, mode="hybrid", query_texts=queries, filter="g == 1", fusion=fusion, weights=(0.3, 0.7))
        assert all(i % 3 == 1 for row in hits.ids for i in row if i is not None)
        dense = col.search(q, 100, filter="g == 1")
        sparse = col.search(q, 100, mode="sparse", query_texts=queries, filter="g == 1")
        ref = fuse([Hits(_as_rows(dense), dense.scores), Hits(_as_rows(sparse), sparse.scores)], 5, fusion,
                   weights=(0.3, 0.7))
        np.testing.assert_array_equal(_as_rows(hits), ref.ids)
        np.testing.assert_allclose(hits.scores, ref.scores, rtol=1e-6)
        assert hits.strategy[0] == f"hybrid:{fusion}({dense.strategy[0]}+bm25)"


def test_items_without_text_are_found_by_the_dense_side_only_and_said_so(tmp_path):
    col, docs, vecs = _collection(tmp_path, n=20)
    own = np.random.default_rng(9).normal(size=(1, DIM)).astype(np.float32)
    col.add([100], own)  # no text; the query vector is its own
    hits = col.search(own, 3, mode="hybrid", query_texts=["apple"], fusion="weighted", weights=(1, 0))
    assert 100 in list(hits.ids[0])
    assert hits.strategy[0].endswith("(1 without text: dense only)")
    assert 100 not in list(col.search(["apple"], 21, mode="sparse").ids[0])


class WordOverlap:
    """A reranker for tests: the number of query words in the document."""

    def __init__(self):
        self.calls = 0

    def predict(self, pairs):
        self.calls += 1
        return np.array([len(set(q.split()) & set(d.split())) for q, d in pairs], np.float32)

    def unreadable(self, texts):
        return 0.0


def test_rerank_reorders_the_candidates_by_the_reranker_in_one_batched_call(tmp_path):
    col, docs, vecs = _collection(tmp_path)
    queries = ["apple banana cherry", "golf hotel"]
    reranker = WordOverlap()
    hits = col.search(vecs[:2], 4, query_texts=queries, rerank=reranker, rerank_candidates=30, include=("text",))
    assert reranker.calls == 1
    first = col.search(vecs[:2], 30)
    for i, q in enumerate(queries):
        cand = [docs[j] for j in first.ids[i]]
        best = sorted((len(set(q.split()) & set(d.split())) for d in cand), reverse=True)[:4]
        np.testing.assert_array_equal(hits.scores[i], best)
        assert [t["text"] for t in hits.payload[i]] == [docs[j] for j in hits.ids[i]]
    assert hits.strategy[0] == f"{first.strategy[0]}+rerank(WordOverlap)"
    hybrid = col.search(queries, 3, mode="sparse", rerank=reranker)
    assert hybrid.strategy[0] == "bm25+rerank(WordOverlap)"


def test_rerank_keeps_candidates_without_text_after_the_reranked_ones():
    rows = np.array([[4, 7, 9, -1]])
    scores = np.array([[0.9, 0.8, 0.7, -np.inf]], np.float32)
    texts = {4: "a b", 7: None, 9: "a"}
    out_scores, out_rows, notes = rerank(WordOverlap(), ["a b"], scores, rows, lambda r: {i: texts[i] for i in r}, "t")
    np.testing.assert_array_equal(out_rows, [[4, 9, 7, -1]])
    np.testing.assert_array_equal(out_scores, np.array([[2, 1, 0.8, -np.inf]], np.float32))
    assert "1 without text" in notes[0]


def test_fused_rerank_is_the_dbsf_of_the_two_stages_over_the_candidates(tmp_path):
    col, docs, vecs = _collection(tmp_path)
    queries = ["apple banana cherry", "golf hotel"]
    first = col.search(vecs[:2], 30)
    rows = np.vectorize(lambda i: col._mirror.row_of[i], otypes=[np.int64])(first.ids)
    overlap = np.array([[len(set(q.split()) & set(docs[j].split())) for j in first.ids[i]]
                        for i, q in enumerate(queries)], np.float32)
    for weights in ((0.5, 0.5), (0.8, 0.2), (0.0, 1.0)):
        hits = col.search(vecs[:2], 5, query_texts=queries, rerank=WordOverlap(), rerank_candidates=30,
                          rerank_weights=weights)
        ref = fuse([Hits(rows, first.scores), Hits(rows, overlap)], 30, "dbsf", weights=weights)
        found = np.vectorize(lambda i: col._mirror.row_of[i], otypes=[np.int64])(hits.ids)
        _same_ranking(hits.scores, found, Hits(ref.ids[:, :5], ref.scores[:, :5]))
        assert hits.strategy[0] == f"{first.strategy[0]}+rerank-fused(WordOverlap)"
    # the first stage's share alone keeps the first stage's order
    alone = col.search(vecs[:2], 5, query_texts=queries, rerank=WordOverlap(), rerank_candidates=30,
                       rerank_weights=(1, 0))
    _same_ranking(alone.scores, np.vectorize(lambda i: col._mirror.row_of[i], otypes=[np.int64])(alone.ids),
                  fuse([Hits(rows, first.scores), Hits(rows, first.scores)], 5, "dbsf", weights=(1, 0)))
    assert list(alone.ids[0]) == list(first.ids[0, :5])


def test_fused_rerank_gives_candidates_without_text_the_first_stage_share_only():
    rows = np.array([[4, 7, 9, -1]])
    scores = np.array([[0.9, 0.8, 0.1, -np.inf]], np.float32)
    texts = {4: "x", 7: None, 9: "a b"}
    out_scores, out_rows, notes = rerank(WordOverlap(), ["a b"], scores, rows, lambda r: {i: texts[i] for i in r}, "t",
                                         (0.5, 0.5))
    ref = fuse([Hits(rows, scores), Hits(np.array([[4, -1, 9, -1]]), np.array([[0, -np.inf, 2, -np.inf]]))], 4,
               "dbsf", weights=(0.5, 0.5))
    np.testing.assert_array_equal(out_rows, ref.ids)
    np.testing.assert_allclose(out_scores, ref.scores)
    assert "1 without text: first stage only" in notes[0]


def test_bad_hybrid_calls_say_what_to_do(tmp_path):
    col, _, vecs = _collection(tmp_path)
    with pytest.raises(InvalidInputError, match="query texts"):
        col.search(vecs[:1], 3, mode="hybrid")
    with pytest.raises(InvalidInputError, match="weights must be 2"):
        col.search(vecs[:1], 3, mode="hybrid", query_texts=["a"], weights=(1, 2, 3))
    with pytest.raises(InvalidInputError, match="weights= weighs"):
        col.search(vecs[:1], 3, weights=(1, 1))
    with pytest.raises(InvalidInputError, match="mode"):
        col.search(vecs[:1], 3, mode="lexical")
    with pytest.raises(InvalidInputError, match="fusion"):
        col.search(vecs[:1], 3, mode="hybrid", query_texts=["a"], fusion="max")
    with pytest.raises(InvalidInputError, match="one text per query"):
        col.search(vecs[:2], 3, mode="hybrid", query_texts=["a"])
    with pytest.raises(InvalidInputError, match="predict"):
        col.search(vecs[:1], 3, query_texts=["a"], rerank=object())
    with pytest.raises(InvalidInputError, match="rerank_candidates"):
        col.search(vecs[:1], 3, query_texts=["a"], rerank=WordOverlap(), rerank_candidates=10**6)
    with pytest.raises(InvalidInputError, match="without rerank="):
        col.search(vecs[:1], 3, query_texts=["a"], rerank_weights=(1, 1))
    for bad in ((1, 2, 3), (-1, 1), (0, 0), ("a", 1), (np.nan, 1)):
        with pytest.raises(InvalidInputError, match="rerank_weights must be 2"):
            col.search(vecs[:1], 3, query_texts=["a"], rerank=WordOverlap(), rerank_weights=bad)

    class Unreadable(WordOverlap):
        def unreadable(self, texts):
            return 0.9

    with pytest.raises(InvalidInputError, match="tokenizer must read the stored texts"):
        col.search(vecs[:1], 3, query_texts=["a"], rerank=Unreadable())

    class Short(WordOverlap):
        def predict(self, pairs):
            return np.zeros(1, np.float32)

    with pytest.raises(InvalidInputError, match="one score per pair"):
        col.search(vecs[:1], 3, query_texts=["a"], rerank=Short())
    before = col.count()
    col.close()
    plain, _, _ = _collection(tmp_path / "plain", text_index=False)
    with pytest.raises(InvalidInputError, match="text_index=True"):
        plain.search(["apple"], 3, mode="sparse")
    assert plain.search(vecs[:1], 3).ids.shape == (1, 3)  # dense still works
    plain.close()
    with Collection.open(tmp_path / "col") as again:
        assert again.count() == before
    with pytest.raises(InvalidInputError, match="text_index must be True or False"):
        Collection.create(tmp_path / "bad", dim=DIM, text_index="yes")
    with pytest.raises(UnsupportedError, match="text_index"):
        Collection.create(tmp_path / "milvus", dim=DIM, backend="milvus", text_index=True)
