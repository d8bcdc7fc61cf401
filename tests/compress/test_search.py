"""Code search and rescoring against the exact answer."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.compress import CodeSearcher, codec, rescore, search_codes
from embedlab.compress.search import kernel_of
from embedlab.errors import InvalidInputError
from embedlab.index import exact_search

D = 32


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    centers = rng.standard_normal((100, D))

    def sample(n):
        x = centers[rng.integers(0, 100, n)] + 0.5 * rng.standard_normal((n, D))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return sample(1500), sample(3000), sample(60)  # fit sample, database, queries


def recall(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(approx, exact)]))


@pytest.mark.parametrize("spec,kernel", [("float32", "decode"), ("int8", "decode"), ("binary", "hamming"),
                                         ("binary:query=float", "decode"),
                                         ("pq:8,8", "adc"), ("opq:8,8,niter=3", "adc"), ("truncate:16+binary", "hamming"),
                                         ("truncate:16+pq:8,6", "adc")])
def test_kernel_scores_equal_decoded_inner_products(spec, kernel, data):
    """Each kernel ranks exactly like brute force over transform_queries(q) @ decode(codes).T."""
    fit_x, x, q = data
    c = codec(spec).fit(fit_x)
    assert kernel_of(c) == kernel
    codes = c.encode(x)
    scores, pos = search_codes(c, codes, q, 10)
    if kernel == "hamming":
        bits = np.unpackbits(codes, axis=1, count=c.output_dim).astype(np.float32) * 2 - 1
        qbits = (c.transform_queries(q) > 0).astype(np.float32) * 2 - 1
        ref_s, _ = exact_search(qbits, bits, 10)
    else:
        ref_s, _ = exact_search(c.transform_queries(q), c.decode(codes), 10)
    np.testing.assert_allclose(scores, ref_s, rtol=1e-4, atol=1e-4)
    assert pos.dtype == np.int64 and scores.dtype == np.float32
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


@pytest.mark.parametrize("spec,floor,floor_rescored", [("float16", 0.99, 1.0), ("int8", 0.95, 1.0), ("int4", 0.72, 0.99),
                                                       ("binary", 0.45, 0.9), ("binary:query=float", 0.55, 0.95),
                                                       ("pq:16,8", 0.7, 0.99),
                                                       ("truncate:16+int8", 0.5, 0.85)])
def test_recall_against_exact_with_and_without_rescoring(spec, floor, floor_rescored, data, tmp_path):
    fit_x, x, q = data
    _, exact = exact_search(q, x, 10)
    c = codec(spec).fit(fit_x)
    searcher = CodeSearcher(c, c.encode(x))
    _, pos = searcher.search(q, 10)
    assert recall(pos, exact) >= floor
    np.save(tmp_path / "x.npy", x)
    on_disk = np.load(tmp_path / "x.npy", mmap_mode="r")
    _, cand = searcher.search(q, 40)
    scores, pos = rescore(q, cand, on_disk, 10)
    assert recall(pos, exact) >= floor_rescored
    np.testing.assert_allclose(scores, np.take_along_axis(q @ x.T, pos, 1), rtol=1e-5, atol=1e-6)


def test_rescore_with_int8_codes_on_disk(data, tmp_path):
    fit_x, x, q = data
    int8 = codec("int8").fit(fit_x)
    np.save(tmp_path / "codes.npy", int8.encode(x))
    cand = search_codes(codec("binary").fit(fit_x), codec("binary").fit(fit_x).encode(x), q, 40)[1]
    _, pos = rescore(q, cand, np.load(tmp_path / "codes.npy", mmap_mode="r"), 10, codec=int8)
    _, float_pos = rescore(q, cand, x, 10)
    assert recall(pos, float_pos) >= 0.95


def test_rescore_of_all_candidates_is_exact(data):
    _, x, q = data
    everything = np.tile(np.arange(len(x)), (len(q), 1))
    scores, pos = rescore(q, everything, x, 10)
    ref_s, ref_p = exact_search(q, x, 10)
    np.testing.assert_array_equal(pos, ref_p)
    np.testing.assert_allclose(scores, ref_s, rtol=1e-5)


@pytest.mark.parametrize("spec", [None, "int8"])
def test_one_query_rescoring_agrees_with_a_block_of_queries(spec, data):
    fit_x, x, q = data
    c = codec(spec).fit(fit_x) if spec else None
    rows = c.encode(x) if c else x
    cand = np.random.default_rng(1).integers(-1, len(x), (12, 30))  # shared candidates and padding across queries
    block_s, block_p = rescore(q[:12], cand, rows, 10, codec=c)
    for i in range(12):
        one_s, one_p = rescore(q[i : i + 1], cand[i : i + 1], rows, 10, codec=c)
        np.testing.assert_array_equal(one_p[0], block_p[i])
        np.testing.assert_allclose(one_s[0], block_s[i], rtol=1e-5, atol=1e-6)


def test_padding_when_k_exceeds_n_and_when_empty(data):
    fit_x, x, q = data
    for spec in ("int8", "binary", "pq:8,6"):
        c = codec(spec).fit(fit_x)
        scores, pos = search_codes(c, c.encode(x[:5]), q[:2], 8)
        assert (pos[:, :5] >= 0).all() and (pos[:, 5:] == -1).all() and np.isneginf(scores[:, 5:]).all()
        scores, pos = CodeSearcher(c).search(q[:2], 3)
        assert (pos == -1).all() and np.isneginf(scores).all()
    cand = np.array([[3, -1, 1, -1]])
    scores, pos = rescore(q[:1], cand, x, 3)
    assert set(pos[0, :2]) == {1, 3} and pos[0, 2] == -1 and np.isneginf(scores[0, 2])


@pytest.mark.parametrize("spec", ["binary", "pq:8,6", "int8"])
def test_subset_restricts_search(spec, data):
    fit_x, x, q = data
    c = codec(spec).fit(fit_x)
    searcher = CodeSearcher(c, c.encode(x))
    subset = np.arange(0, len(x), 7)
    _, pos = searcher.search(q, 10, subset=subset)
    assert np.isin(pos, subset).all()
    _, ref = search_codes(c, c.encode(x[subset]), q, 10)
    np.testing.assert_array_equal(pos, subset[ref])
    mask = np.zeros(len(x), bool)
    mask[subset] = True
    np.testing.assert_array_equal(searcher.search(q, 10, subset=mask)[1], pos)
    assert (searcher.search(q, 3, subset=np.array([], np.int64))[1] == -1).all()
    np.testing.assert_array_equal(searcher.codes, c.encode(x))


def test_add_appends_positions(data):
    fit_x, x, q = data
    c = codec("pq:8,6").fit(fit_x)
    searcher = CodeSearcher(c, c.encode(x[:1000]))
    searcher.add(c.encode(x[1000:]))
    np.testing.assert_array_equal(searcher.search(q, 5)[1], search_codes(c, c.encode(x), q, 5)[1])


def test_bad_input(data):
    fit_x, x, q = data
    c = codec("int8").fit(fit_x)
    searcher = CodeSearcher(c, c.encode(x))
    with pytest.raises(InvalidInputError, match=r"CodeSearcher.add: codes must be uint8 of shape \(n, 32\), got uint8 \(2, 31\)"):
        searcher.add(c.encode(x[:2])[:, :31])
    with pytest.raises(InvalidInputError, match=r"CodeSearcher.search: k must be a positive int, got 0"):
        searcher.search(q, 0)
    with pytest.raises(InvalidInputError, match=r"Int8Codec.transform_queries: vectors must have shape \(n, 32\), got \(60, 16\)"):
        searcher.search(q[:, :16], 3)
    with pytest.raises(InvalidInputError, match=r"rescore: vectors must have shape \(n, 32\), got \(3000, 16\)"):
        rescore(q, np.zeros((60, 4), np.int64), x[:, :16], 3)
    with pytest.raises(InvalidInputError, match=r"rescore: candidates must be positions below 3000, got 3000"):
        rescore(q, np.full((60, 4), 3000), x, 3)
    with pytest.raises(InvalidInputError, match=r"CodeSearcher: codec must be a fitted Codec"):
        CodeSearcher(codec("int8"))
