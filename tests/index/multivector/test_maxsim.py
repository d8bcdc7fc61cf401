"""Exact Chamfer / MaxSim kernels against a plain loop."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.errors import InvalidInputError
from embedlab.index.multivector.maxsim import maxsim, maxsim_rerank, maxsim_search
from embedlab.types import MultiVectors


def _cloud(rng, n, lo, hi, d=16, dtype=np.float32) -> MultiVectors:
    return MultiVectors.from_list([rng.standard_normal((int(rng.integers(lo, hi)), d)).astype(dtype) for _ in range(n)])


def _naive(queries: MultiVectors, documents: MultiVectors) -> np.ndarray:
    return np.array([[(q.astype(np.float64) @ p.astype(np.float64).T).max(axis=1).sum() for p in documents]
                     for q in queries])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_maxsim_matches_loop_across_blocks(rng, dtype):
    queries, documents = _cloud(rng, 9, 1, 8), _cloud(rng, 60, 1, 25, dtype=dtype)
    expected = _naive(queries, documents)
    for block_bytes in (1 << 26, 3000):  # one block, and many tiny ones
        got = maxsim(queries, documents, block_bytes=block_bytes)
        assert got.dtype == np.float32 and got.shape == (9, 60)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_one_token_documents_are_plain_inner_product_sums(rng):
    queries, documents = _cloud(rng, 4, 1, 6), _cloud(rng, 10, 1, 2)
    expected = np.stack([q.sum(axis=0) for q in queries]) @ documents.vectors.T
    np.testing.assert_allclose(maxsim(queries, documents), expected, rtol=1e-5, atol=1e-5)


def test_maxsim_search_is_the_exact_ranking_and_honours_allowed(rng):
    queries, documents = _cloud(rng, 5, 2, 6), _cloud(rng, 40, 1, 10)
    full = _naive(queries, documents)
    scores, positions = maxsim_search(queries, documents, 7)
    np.testing.assert_array_equal(positions, np.argsort(-full, axis=1, kind="stable")[:, :7])
    np.testing.assert_allclose(scores, np.sort(full, axis=1)[:, ::-1][:, :7], rtol=1e-4, atol=1e-4)
    allowed = np.zeros(40, dtype=bool)
    allowed[[3, 9, 17]] = True
    scores, positions = maxsim_search(queries, documents, 5, allowed=allowed)
    assert set(positions[:, :3].ravel()) <= {3, 9, 17}
    assert (positions[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()


def test_rerank_of_every_document_equals_brute_force_and_ignores_padding(rng):
    queries, documents = _cloud(rng, 6, 1, 7), _cloud(rng, 30, 1, 12, dtype=np.float16)
    exact_s, exact_p = maxsim_search(queries, documents, 5)
    everything = np.tile(np.arange(30), (6, 1))
    s, p = maxsim_rerank(queries, documents, everything, 5)
    np.testing.assert_array_equal(p, exact_p)
    np.testing.assert_allclose(s, exact_s, rtol=1e-5)
    short = np.full((6, 4), -1)
    short[:, 0] = 2
    short[:, 1] = 2  # duplicates are scored once
    s, p = maxsim_rerank(queries, documents, short, 3)
    assert (p[:, 0] == 2).all() and (p[:, 1:] == -1).all() and np.isneginf(s[:, 1:]).all()


def test_zero_token_query_is_rejected(rng):
    queries = MultiVectors(rng.standard_normal((3, 16)).astype(np.float32), np.array([0, 3, 3]))
    with pytest.raises(InvalidInputError, match=r"maxsim: every item of queries must have at least one token vector, got 1 empty item\(s\) \(first at index 1\)"):
        maxsim(queries, _cloud(rng, 3, 1, 4))


def test_mismatched_dimensions_are_rejected(rng):
    with pytest.raises(InvalidInputError, match=r"maxsim_search: documents must have token vectors of dimension 16, got 8"):
        maxsim_search(_cloud(rng, 2, 1, 3), _cloud(rng, 3, 1, 4, d=8), 2)


def test_non_monotone_offsets_are_rejected(rng):
    with pytest.raises(InvalidInputError, match=r"offsets must start at 0, never decrease and end at N=4.*monotone=False"):
        MultiVectors(np.zeros((4, 16), np.float32), np.array([0, 3, 1, 4]))


def test_bad_k_candidates_and_types(rng):
    queries, documents = _cloud(rng, 2, 1, 3), _cloud(rng, 3, 1, 4)
    with pytest.raises(InvalidInputError, match=r"maxsim_search: k must be a positive int, got 0"):
        maxsim_search(queries, documents, 0)
    with pytest.raises(InvalidInputError, match=r"maxsim_rerank: candidates must be an int array of shape \(2, c\)"):
        maxsim_rerank(queries, documents, np.zeros((3, 2), dtype=np.int64), 1)
    with pytest.raises(InvalidInputError, match=r"maxsim_rerank: candidates must be document positions in \[0, 3\) or -1"):
        maxsim_rerank(queries, documents, np.array([[0, 3], [1, 2]]), 1)
    with pytest.raises(InvalidInputError, match=r"maxsim: queries must be MultiVectors .* got ndarray"):
        maxsim(np.zeros((2, 16), np.float32), documents)
    with pytest.raises(InvalidInputError, match=r"maxsim_search: allowed must be a bool array of shape \(3,\)"):
        maxsim_search(queries, documents, 1, allowed=np.ones(2, bool))
