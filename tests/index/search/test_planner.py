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
