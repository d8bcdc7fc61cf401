"""Funnel collections (a prefix index, rescored with the full rows) against exact search: recall on nested data,
exactness when the first stage returns every row, filters, deletes, reopen and compaction, per-search oversample,
and every bad setting as a clear error (the HTTP path: tests/serve/test_collections.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from embedlab.errors import InvalidInputError, UnsupportedError
from embedlab.index import Collection, exact_search

D, FIRST, N = 48, 12, 3000

pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def nested(n: int, seed: int) -> np.ndarray:
    """Unit rows whose first ``FIRST`` coordinates carry most of the signal (what Matryoshka training does)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((60, D))
    centers[:, FIRST:] *= 0.3
    x = centers[rng.integers(0, 60, n)] + 0.3 * rng.standard_normal((n, D))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    x = nested(N + 40, 5)
    return x[:N], x[N:]


def recall(ids: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(ids.astype(np.int64), exact)]))


def build(path, x, **params) -> Collection:
    col = Collection.create(path, dim=D, **params)
    col.add(list(range(len(x))), x, metadata=[{"g": i % 4} for i in range(len(x))])
    return col


@pytest.mark.parametrize("index", ["hnsw", "flat", "ivf"])
def test_funnel_recall_against_exact_and_scores_are_the_full_vectors(tmp_path, data, index):
    x, q = data
    _, exact = exact_search(q, x, 10)
    with build(tmp_path / "c", x, index=index, funnel=[FIRST, D], oversample=8) as col:
        hits = col.search(q, 10)
        assert recall(hits.ids, exact) >= 0.95
        found = hits.ids.astype(np.int64)
        np.testing.assert_allclose(hits.scores, np.einsum("qd,qkd->qk", q, x[found]), atol=1e-5)  # full-width scores
        assert np.all(np.diff(hits.scores, axis=1) <= 1e-6)
        assert recall(col.search(q, 10, oversample=1).ids, exact) < recall(hits.ids, exact)  # oversample matters
        stats = col.stats()
    with build(tmp_path / "full", x, index=index) as full:
        saved = full.stats()["ram_bytes_per_vector"] - stats["ram_bytes_per_vector"]
        assert saved == pytest.approx(4 * (D - FIRST), abs=16)  # the prefix rows in RAM; the full rows are mapped


def test_a_first_stage_returning_every_row_is_exact(tmp_path, data):
    x, q = data
    scores, exact = exact_search(q, x, 5)
    with build(tmp_path / "c", x, index="flat", funnel=[4, D], oversample=1) as col:
        hits = col.search(q, 5, oversample=N // 5)
        np.testing.assert_array_equal(hits.ids.astype(np.int64), exact)
        np.testing.assert_allclose(hits.scores, scores, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 60), k=st.integers(1, 12), first=st.integers(1, 7), seed=st.integers(0, 10_000),
       metric=st.sampled_from(["cosine", "ip"]))
def test_funnel_with_every_row_as_candidate_equals_exact_search(tmp_path_factory, n, k, first, seed, metric):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    q = rng.standard_normal((3, 8)).astype(np.float32)
    folder = tmp_path_factory.mktemp("prop")
    with Collection.create(folder / "c", dim=8, metric=metric, index="flat", funnel=[first, 8],
                           oversample=60) as col:
        col.add(list(range(n)), x)
        hits = col.search(q, k)
        stored = np.stack([g["vector"] for g in col.get(list(range(n)))])
    qq = q / np.linalg.norm(q, axis=1, keepdims=True) if metric == "cosine" else q
    scores, rows = exact_search(qq, stored, min(k, n))
    np.testing.assert_allclose(hits.scores[:, : min(k, n)], scores, atol=1e-5)
    assert np.all(hits.ids[:, min(k, n):] == None)  # noqa: E711 - padding is None
    for got, want, s in zip(hits.ids[:, : min(k, n)].astype(np.int64), rows, scores):
        distinct = len(set(np.round(s, 5))) == len(s)  # ties may order either way
        assert not distinct or np.array_equal(got, want)


def test_filters_deletes_reopen_and_compact(tmp_path, data):
    x, q = data
    path = tmp_path / "c"
    with build(path, x, funnel=[FIRST, D]) as col:
        hits = col.search(q, 10, filter="g == 1")
        assert all(int(i) % 4 == 1 for i in hits.ids.ravel())
        for strategy in ("filtered_ann", "exact"):
            sel = "g == 1" if strategy == "filtered_ann" else "g == 1 and g != 1 or g == 2"
            assert col.search(q[:2], 5, filter=sel).ids.shape == (2, 5)
        top = [int(i) for i in col.search(q[:1], 3).ids[0]]
        assert col.delete(top) == 3
        assert not set(top) & {int(i) for i in col.search(q[:1], 10).ids[0]}
        before = col.search(q, 10)
    with Collection.open(path) as col:
        assert col.index_params["funnel"] == [FIRST, D] and col.index_params["oversample"] == 8
        again = col.search(q, 10)
        np.testing.assert_array_equal(again.ids, before.ids)
        col.compact()
        assert col.count() == N - 3
        np.testing.assert_array_equal(col.search(q, 10).ids, before.ids)


def test_bad_settings_are_clear_errors(tmp_path, data):
    x, q = data
    cases = [
        ({"funnel": [D, D]}, InvalidInputError, "smaller than the full dimension"),
        ({"funnel": [60, D]}, InvalidInputError, "smaller than the full dimension"),
        ({"funnel": [FIRST]}, InvalidInputError, "two ints"),
        ({"funnel": [FIRST, 64]}, InvalidInputError, "end at the collection's dim 48"),
        ({"funnel": "12"}, InvalidInputError, "two ints"),
        ({"funnel": [FIRST, D], "oversample": 0}, InvalidInputError, "oversample"),
        ({"funnel": [FIRST, D], "metric": "l2"}, UnsupportedError, "metric must be 'cosine' or 'ip'"),
        ({"funnel": [FIRST, D], "index": "flat", "codec": "int8"}, UnsupportedError, "codec parameters"),
        ({"funnel": [FIRST, D], "M": 0}, InvalidInputError, "M"),
        ({"funnel": [FIRST, D], "multivector": True}, UnsupportedError, "multivector"),
    ]
    for i, (params, error, match) in enumerate(cases):
        with pytest.raises(error, match=match):
            Collection.create(tmp_path / f"bad{i}", dim=D, **params)
        assert not (tmp_path / f"bad{i}").exists()
    with build(tmp_path / "plain", x[:50], index="hnsw") as col:
        with pytest.raises(InvalidInputError, match="oversample applies to collections that rescore"):
            col.search(q, 10, oversample=4)
    with build(tmp_path / "f", x[:50], funnel=[FIRST, D]) as col:
        for bad in (0, 2000, 1.5, True):
            with pytest.raises(InvalidInputError, match="oversample"):
                col.search(q, 10, oversample=bad)


def test_milvus_collections_refuse_funnel_settings():
    from embedlab.index.collection.milvus import check_index

    with pytest.raises(UnsupportedError, match="funnel search is local only"):
        check_index("hnsw", {"funnel": [FIRST, D]}, "Collection.create")
