"""BM25 retriever and hybrid fusion (RRF, weighted score fusion) against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.errors import InvalidInputError, NotFittedError
from embedlab.index.retrievers.bm25 import BM25
from embedlab.index.retrievers.fusion import HybridRetriever, fuse, reciprocal_rank_fusion, weighted_score_fusion
from embedlab.types import Hits

DOCS = ["the cat sat on the mat", "dogs chase cats", "a cat and a dog", "stock market news today"]


def test_bm25_ranks_matching_documents_and_pads():
    bm = BM25().fit(DOCS)
    hits = bm.search(["cat", "market today", "zebra"], 3)
    assert hits.ids.shape == (3, 3) and hits.ids.dtype == np.int64 and hits.scores.dtype == np.float32
    assert set(hits.ids[0][hits.ids[0] >= 0]) == {0, 2}  # "cats" is another token without a stemmer
    assert hits.ids[1, 0] == 3 and (hits.ids[1, 1:] == -1).all() and np.isneginf(hits.scores[1, 1:]).all()
    assert (hits.ids[2] == -1).all()  # no shared token: nothing returned, never a score-0 guess
    assert np.all(np.diff(hits.scores[0][np.isfinite(hits.scores[0])]) <= 0)
    wide = bm.search(["cat"], 10)  # k > n pads
    assert wide.ids.shape == (1, 10) and (wide.ids[0, 4:] == -1).all()


def test_bm25_scores_match_the_okapi_formula():
    docs = ["apple banana", "apple apple cherry", "cherry date elderberry fig"]
    bm = BM25(k1=1.2, b=0.75, method="lucene", stopwords=None).fit(docs)
    hits = bm.search(["apple"], 3)
    lengths = np.array([2, 3, 4])
    avg = lengths.mean()
    tf = np.array([1, 2, 0])
    idf = np.log(1 + (3 - 2 + 0.5) / (2 + 0.5))  # Lucene's idf, df(apple) = 2
    expected = idf * tf / (tf + 1.2 * (1 - 0.75 + 0.75 * lengths / avg))
    order = np.argsort(-expected)[:2]
    np.testing.assert_array_equal(hits.ids[0, :2], order)
    np.testing.assert_allclose(hits.scores[0, :2], expected[order], rtol=1e-5)


def test_bm25_bad_input():
    with pytest.raises(InvalidInputError, match=r"method must be one of \['robertson', 'lucene'"):
        BM25(method="okapi")
    with pytest.raises(InvalidInputError, match="b must be in \\[0, 1\\], got 2"):
        BM25(b=2)
    with pytest.raises(NotFittedError, match="Call fit\\(documents\\) first"):
        BM25().search(["x"], 1)
    with pytest.raises(InvalidInputError, match="documents must be a list of strings, got str"):
        BM25().fit("one text")
    with pytest.raises(InvalidInputError, match="documents must hold at least one text"):
        BM25().fit([])
    with pytest.raises(InvalidInputError, match="k must be a positive int, got 0"):
        BM25().fit(DOCS).search(["cat"], 0)


def _hits(ids, scores):
    return Hits(np.array(ids, dtype=np.int64), np.array(scores, dtype=np.float32))


def test_rrf_by_hand():
    a = _hits([[0, 1, 2]], [[3.0, 2.0, 1.0]])
    b = _hits([[2, 0, -1]], [[9.0, 8.0, -np.inf]])
    fused = reciprocal_rank_fusion([a, b], 3, rrf_k=60)
    expected = {0: 1 / 61 + 1 / 62, 1: 1 / 62, 2: 1 / 63 + 1 / 61}
    order = sorted(expected, key=lambda d: (-expected[d], d))
    np.testing.assert_array_equal(fused.ids[0], order)
    np.testing.assert_allclose(fused.scores[0], [expected[d] for d in order], rtol=1e-6)
    weighted = reciprocal_rank_fusion([a, b], 2, weights=[1.0, 0.0])
    np.testing.assert_array_equal(weighted.ids[0], [0, 1])


def test_weighted_score_fusion_by_hand():
    a = _hits([[0, 1, 2]], [[3.0, 2.0, 1.0]])  # min-max: 1, 0.5, 0
    b = _hits([[2, 3, -1]], [[0.9, 0.1, -np.inf]])  # min-max: 1, 0
    fused = weighted_score_fusion([a, b], 4, weights=[0.3, 0.7])
    expected = {0: 0.3, 1: 0.15, 2: 0.7, 3: 0.0}
    order = sorted(expected, key=lambda d: (-expected[d], d))
    np.testing.assert_array_equal(fused.ids[0], order)
    np.testing.assert_allclose(fused.scores[0], [expected[d] for d in order], atol=1e-6)
    raw = weighted_score_fusion([a, b], 1, normalization="none")
    assert raw.ids[0, 0] == 0 and raw.scores[0, 0] == pytest.approx(3.0)


def test_distribution_score_fusion_by_hand():
    a = _hits([[0, 1, 2]], [[3.0, 2.0, 1.0]])
    b = _hits([[2, 3]], [[10.0, 0.0]])
    mu_a, sd_a = 2.0, np.std([3.0, 2.0, 1.0])
    norm_a = {d: (s - (mu_a - 3 * sd_a)) / (6 * sd_a) for d, s in zip([0, 1, 2], [3.0, 2.0, 1.0])}
    norm_b = {2: (10 - (5 - 15)) / 30, 3: (0 - (5 - 15)) / 30}
    want = {d: 0.4 * norm_a.get(d, 0) + 0.6 * norm_b.get(d, 0) for d in range(4)}
    fused = fuse([a, b], 4, "dbsf", weights=[0.4, 0.6])
    order = sorted(want, key=lambda d: -want[d])
    assert fused.ids[0].tolist() == order
    np.testing.assert_allclose(fused.scores[0], [want[d] for d in order], rtol=1e-6)
    assert fuse([a, b], 4, "weighted").ids.tolist() == weighted_score_fusion([a, b], 4).ids.tolist()
    assert fuse([a, b], 4, "rrf").ids.tolist() == reciprocal_rank_fusion([a, b], 4).ids.tolist()


def test_fusion_bad_input():
    a = _hits([[0, 1]], [[1.0, 0.5]])
    with pytest.raises(InvalidInputError, match="runs must hold at least 2 Hits to fuse, got 1"):
        reciprocal_rank_fusion([a], 2)
    with pytest.raises(InvalidInputError, match="same number of queries"):
        reciprocal_rank_fusion([a, _hits([[0], [1]], [[1.0], [1.0]])], 2)
    with pytest.raises(InvalidInputError, match="weights must be 2 non-negative finite numbers"):
        weighted_score_fusion([a, a], 2, weights=[1, -1])
    with pytest.raises(InvalidInputError, match=r"normalization must be one of \['minmax', 'distribution', 'none'\], got 'z'"):
        weighted_score_fusion([a, a], 2, normalization="z")
    with pytest.raises(InvalidInputError, match=r"method must be one of \['rrf', 'weighted', 'dbsf'\], got 'max'"):
        HybridRetriever(BM25(), BM25(), method="max")
    with pytest.raises(InvalidInputError, match="second must have a search\\(queries, k\\) method, got int"):
        HybridRetriever(BM25(), 3)


class _Fixed:
    """A retriever that always returns the same ranking."""

    def __init__(self, ranking):
        self.ranking = ranking

    def search(self, queries, k):
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        top = self.ranking[:k]
        ids[:, : len(top)] = top
        scores[:, : len(top)] = np.linspace(1, 0.5, len(top))
        return Hits(ids, scores)


def test_hybrid_retriever_fuses_two_retrievers():
    hybrid = HybridRetriever(_Fixed([0, 1, 2]), _Fixed([2, 1, 0]), method="rrf", depth=3)
    hits = hybrid.search(["q1", "q2"], 2)
    # 1/61 + 1/63 (documents 0 and 2, tied: lower position first) just beats 2/62 (document 1)
    np.testing.assert_array_equal(hits.ids, [[0, 2], [0, 2]])
    only_first = HybridRetriever(_Fixed([0, 1, 2]), _Fixed([2, 1, 0]), method="weighted", weight=1.0)
    np.testing.assert_array_equal(only_first.search(["q"], 3).ids[0], [0, 1, 2])


def test_hybrid_bm25_plus_dense_on_limit_small(encoder, data_dir):
    from embedlab.eval import load_beir
    from embedlab.index.retrievers.dense import DenseRetriever

    data = load_beir(data_dir / "limit-small")
    ids, texts, qrels = data.split("test")
    texts, ids = texts[:60], ids[:60]
    bm = BM25().fit(data.corpus_texts)
    dense = DenseRetriever(encoder).fit(data.corpus_texts)
    hybrid = HybridRetriever(bm, dense, method="weighted", depth=46).search(texts, 2)

    def recall(hits):
        return np.mean([len({data.corpus_ids[p] for p in row if p >= 0} & set(qrels[q])) / 2 for q, row in zip(ids, hits.ids)])

    assert recall(bm.search(texts, 2)) >= 0.9  # the paper's BM25: 97.8 recall@2 on LIMIT-small
    assert recall(dense.search(texts, 2)) <= 0.5
    assert recall(hybrid) > recall(dense.search(texts, 2))
