"""MUVERA fixed dimensional encodings: exact special cases, approximation quality, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.errors import InvalidInputError
from embedlab.index.multivector.maxsim import maxsim
from embedlab.index.multivector.fde import Muvera
from embedlab.types import MultiVectors


def _unit_cloud(rng, n, lo, hi, d=32) -> MultiVectors:
    items = []
    for _ in range(n):
        x = rng.standard_normal((int(rng.integers(lo, hi)), d)).astype(np.float32)
        items.append(x / np.linalg.norm(x, axis=1, keepdims=True))
    return MultiVectors.from_list(items)


def test_default_shape_dtype_and_seeded_reproducibility(rng):
    docs = _unit_cloud(rng, 5, 1, 9)
    a = Muvera(seed=3).encode_documents(docs)
    assert a.shape == (5, 10_240) and a.dtype == np.float32
    np.testing.assert_array_equal(a, Muvera(seed=3).encode_documents(docs))
    assert not np.array_equal(a, Muvera(seed=4).encode_documents(docs))
    final = Muvera(seed=3, final_dim=256)
    assert final.encode_queries(docs).shape == (5, 256) and final.dim == 256
    assert Muvera(k_sim=3, d_proj=8, r_reps=2).dim == 2 * 8 * 8


def test_float16_input_matches_float32(rng):
    docs = _unit_cloud(rng, 4, 1, 9)
    half = MultiVectors(docs.vectors.astype(np.float16), docs.offsets)
    m = Muvera(seed=1)
    np.testing.assert_allclose(m.encode_documents(half), m.encode_documents(
        MultiVectors(half.vectors.astype(np.float32), docs.offsets)), rtol=1e-6, atol=1e-6)


def test_single_partition_is_query_sum_dot_document_mean(rng):
    queries, docs = _unit_cloud(rng, 3, 1, 6), _unit_cloud(rng, 7, 1, 9)
    m = Muvera(k_sim=0, d_proj=None, r_reps=1)
    expected = np.stack([q.sum(0) for q in queries]) @ np.stack([p.mean(0) for p in docs]).T
    np.testing.assert_allclose(m.encode_queries(queries) @ m.encode_documents(docs).T, expected, rtol=1e-5, atol=1e-5)


def test_one_token_documents_fill_every_partition_and_give_exact_chamfer(rng):
    queries, docs = _unit_cloud(rng, 4, 1, 8), _unit_cloud(rng, 6, 1, 2)
    m = Muvera(k_sim=4, d_proj=None, r_reps=3)
    fde = m.encode_documents(docs)
    assert (np.abs(fde.reshape(6, 3 * 16, 32)).sum(axis=2) > 0).all()  # no empty block left
    np.testing.assert_allclose(m.encode_queries(queries) @ fde.T, 3 * maxsim(queries, docs), rtol=1e-4, atol=1e-4)


def test_empty_partitions_are_zero_without_filling_and_filled_from_nearest_token(rng):
    docs = _unit_cloud(rng, 1, 2, 3)  # two tokens: at most 2 of 32 partitions are occupied
    plain = Muvera(k_sim=5, d_proj=None, r_reps=1, fill_empty_partitions=False).encode_documents(docs).reshape(32, 32)
    filled = Muvera(k_sim=5, d_proj=None, r_reps=1).encode_documents(docs).reshape(32, 32)
    occupied = np.abs(plain).sum(1) > 0
    assert 1 <= occupied.sum() <= 2
    np.testing.assert_allclose(filled[occupied], plain[occupied])
    tokens = docs[0]
    for block in filled[~occupied]:  # every filled block is one of the document's own tokens
        assert min(np.abs(block - t).max() for t in tokens) < 1e-6
    queries = Muvera(k_sim=5, d_proj=None, r_reps=1).encode_queries(docs).reshape(32, 32)
    assert (np.abs(queries).sum(1) > 0).sum() == occupied.sum()  # queries are never filled


def test_fde_inner_products_approximate_chamfer_better_with_more_repetitions(rng):
    queries, docs = _unit_cloud(rng, 20, 3, 10), _unit_cloud(rng, 150, 5, 30)
    chamfer = maxsim(queries, docs).ravel()

    def corr(r_reps):
        m = Muvera(k_sim=3, d_proj=16, r_reps=r_reps, seed=1)
        return np.corrcoef((m.encode_queries(queries) @ m.encode_documents(docs).T).ravel(), chamfer)[0, 1]

    low, high = corr(1), corr(20)
    assert high > low + 0.1 and high > 0.6


def test_bad_parameters(rng):
    with pytest.raises(InvalidInputError, match=r"Muvera: r_reps \(the number of repetitions\) must be a positive int, got 0"):
        Muvera(r_reps=0)
    with pytest.raises(InvalidInputError, match=r"Muvera: d_proj .* must be a positive int, got 0"):
        Muvera(d_proj=0)
    with pytest.raises(InvalidInputError, match=r"Muvera: final_dim .* must be a positive int, got 0"):
        Muvera(final_dim=0)
    with pytest.raises(InvalidInputError, match=r"Muvera: k_sim must be at most 20, got 21"):
        Muvera(k_sim=21)
    with pytest.raises(InvalidInputError, match=r"Muvera: the encoding dimension .* must be at most 16,777,216, got 335,544,320"):
        Muvera(k_sim=20, r_reps=20, d_proj=16)
    with pytest.warns(UserWarning, match=r"Muvera: the encoding dimension is 1,310,720 .* above 65,536"):
        Muvera(k_sim=12)
    with pytest.raises(InvalidInputError, match=r"Muvera: fill_empty_partitions must be a bool, got str"):
        Muvera(fill_empty_partitions="yes")


def test_bad_inputs(rng):
    m = Muvera()
    empty_query = MultiVectors(np.ones((2, 32), np.float32), np.array([0, 0, 2]))
    with pytest.raises(InvalidInputError, match=r"Muvera.encode_queries: every item of queries must have at least one token vector, got 1 empty item\(s\) \(first at index 0\)"):
        m.encode_queries(empty_query)
    m.encode_documents(_unit_cloud(rng, 2, 1, 3, d=32))
    with pytest.raises(InvalidInputError, match=r"Muvera.encode_queries: queries must have token vectors of dimension 32, got 16"):
        m.encode_queries(_unit_cloud(rng, 2, 1, 3, d=16))
