"""The planner's exact strategy: ``exact_rows`` against ``exact_search`` on the allowed subset, including the
merge across gather chunks and padding when fewer rows than ``k`` are allowed."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.index import exact_search
from embedlab.index.search import planner


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("chunk", [7, 64, 65536])
@pytest.mark.parametrize("k", [1, 10])
def test_exact_rows_equals_exact_search_on_the_subset(rng, monkeypatch, metric, chunk, k):
    monkeypatch.setattr(planner, "GATHER_ROWS", chunk)  # 7: many chunks merged, k > chunk for k=10
    x = rng.normal(size=(300, 12)).astype(np.float32)
    q = rng.normal(size=(25, 12)).astype(np.float32)
    rows = np.sort(rng.choice(len(x), 90, replace=False))
    scores, found = planner.exact_rows(q, x, rows, k, metric)
    want_s, want_p = exact_search(q, x[rows], k, metric=metric)
    np.testing.assert_array_equal(found, rows[want_p])
    np.testing.assert_allclose(scores, want_s, rtol=1e-4, atol=1e-4)


def test_exact_rows_pads_when_fewer_rows_than_k(rng):
    x = rng.normal(size=(50, 8)).astype(np.float32)
    q = rng.normal(size=(3, 8)).astype(np.float32)
    scores, found = planner.exact_rows(q, x, np.array([4, 9, 17]), 5, "ip")
    assert found.shape == (3, 5) and np.all(found[:, 3:] == -1) and np.all(np.isneginf(scores[:, 3:]))
    assert all(set(r[:3]) == {4, 9, 17} for r in found)
    assert np.all(np.diff(scores[:, :3], axis=1) <= 0)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("nq", [1, 3, 7])  # 7: more than IN_PLACE_MAX_NQ, gathered
def test_exact_rows_in_place_equals_exact_search(rng, monkeypatch, kind, metric, nq):
    """Rows scored where the index keeps them (split into several lists per query, across chunks) rank as the
    gathered path and ``exact_search`` do."""
    from embedlab.index.search import faiss_backends
    from embedlab.index.search.faiss_backends import FlatIndex, HNSWIndex

    monkeypatch.setattr(planner, "IN_PLACE_MIN_ROWS", 8)
    monkeypatch.setattr(planner, "GATHER_ROWS", 61)  # several chunks
    monkeypatch.setattr(faiss_backends, "SPLIT_ROWS", 5)  # several lists per query, the last one padded
    x = rng.normal(size=(400, 12)).astype(np.float32)
    q = rng.normal(size=(nq, 12)).astype(np.float32)
    index = FlatIndex(12, metric) if kind == "flat" else HNSWIndex.create(
        12, metric, {"M": 8, "ef_construction": 32, "ef_search": 16}, lambda: x)
    index.add(x)
    assert index.keeps_rows
    rows = np.sort(rng.choice(len(x), 203, replace=False))
    scores, found = planner.exact_rows(q, x, rows, 10, metric, index)
    want_s, want_p = exact_search(q, x[rows], 10, metric=metric)
    np.testing.assert_array_equal(found, rows[want_p])
    np.testing.assert_allclose(scores, want_s, rtol=1e-4, atol=1e-4)
    direct = index.score_rows(q, rows)
    expect = q @ x[rows].T if metric == "ip" else -((q[:, None, :] - x[rows][None]) ** 2).sum(-1)
    np.testing.assert_allclose(direct, expect, rtol=1e-4, atol=1e-4)
    assert index.score_rows(q, rows[:0]).shape == (nq, 0)


def test_in_place_scoring_is_planned_for_few_queries_only():
    """One query against 11k of 117k rows: exact in place (no gather) beats the post-filter walk; a batch of 1,000
    gathers once and shares it; an index without float32 rows (a codec) is never scored in place."""
    from embedlab.index.search.faiss_backends import HNSWIndex

    index = HNSWIndex.create(8, "ip", {"M": 16, "ef_construction": 32, "ef_search": 64}, lambda: None)
    index.add(np.zeros((1, 8), np.float32))
    assert planner._in_place(index, 1, 11187) and not planner._in_place(index, 1000, 11187)
    assert not planner._in_place(index, 1, 100)  # few rows: gathering them is cheaper
    assert planner.plan(index, 10, 117659, 11187, None, 32, nq=1).strategy == "exact"

    class Codes:
        kind, default_ef, keeps_rows = "hnsw", 64, False

    assert planner.plan(Codes(), 10, 117659, 11187, None, 32, nq=1).strategy == "post_filter"
