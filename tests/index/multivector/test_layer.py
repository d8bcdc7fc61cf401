"""Multi-vector collections (Collection.create(..., multivector=...)) against brute-force MaxSim."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.errors import InvalidInputError
from embedlab.index import Collection
from embedlab.index.multivector.maxsim import maxsim_search
from embedlab.types import MultiVectors

D = 32
EXACT = {"k_sim": 3, "d_proj": None, "r_reps": 8, "candidates": 1000}  # every document is re-ranked: exact


def _docs(rng, n, lo=1, hi=10, centers=None) -> MultiVectors:
    items = []
    for _ in range(n):
        m = int(rng.integers(lo, hi))
        x = rng.standard_normal((m, D)).astype(np.float32)
        if centers is not None:
            x = centers[rng.integers(0, len(centers), m)] + 0.4 * x
        items.append(x / np.linalg.norm(x, axis=1, keepdims=True))
    return MultiVectors.from_list(items)


def _expected_ids(queries, docs, ids, k, keep=None):
    allowed = None if keep is None else np.isin(np.arange(len(docs)), keep)
    _, pos = maxsim_search(queries, docs, k, allowed=allowed)
    return np.array([[ids[p] if p >= 0 else None for p in row] for row in pos], dtype=object)


def test_add_search_filter_delete_compact_reopen_match_brute_force(tmp_path, rng):
    docs, queries = _docs(rng, 200), _docs(rng, 8, 1, 5)
    ids = [f"d{i}" for i in range(200)]
    col = Collection.create(tmp_path / "c", dim=D, metric="ip", index="flat", multivector=EXACT)
    col.add(ids, docs, metadata=[{"even": i % 2 == 0} for i in range(200)])
    hits = col.search(queries, 5)
    assert hits.strategy[0].endswith("+rerank")
    np.testing.assert_array_equal(hits.ids, _expected_ids(queries, docs, ids, 5))
    hits = col.search(queries, 5, filter="even == true")
    np.testing.assert_array_equal(hits.ids, _expected_ids(queries, docs, ids, 5, keep=np.arange(0, 200, 2)))
    col.delete(["d0", "d3", "d4"])
    col.compact()
    col.close()
    survivors = np.setdiff1d(np.arange(200), [0, 3, 4])
    with Collection.open(tmp_path / "c") as col:
        assert col.count() == 197
        np.testing.assert_array_equal(col.search(queries, 5).ids, _expected_ids(queries, docs, ids, 5, keep=survivors))
        assert sorted(p.name for p in (tmp_path / "c").glob("tok*")) == ["token-ends-1.i64", "tokens-1.f16"]


def test_fde_candidates_recover_the_exact_top10(tmp_path):
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((20, D)).astype(np.float32)
    docs, queries = _docs(rng, 600, 1, 12, centers), _docs(rng, 20, 1, 6, centers)
    ids = list(range(600))
    options = {"k_sim": 4, "d_proj": None, "r_reps": 40, "candidates": 100, "dtype": "float32"}
    with Collection.create(tmp_path / "c", dim=D, metric="ip", index="hnsw", multivector=options) as col:
        col.add(ids, docs)
        hits = col.search(queries, 10)
    expected = _expected_ids(queries, docs, ids, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(hits.ids, expected)])
    assert recall >= 0.95


def test_texts_are_encoded_into_token_vectors(tmp_path, encoder):
    texts = ["a cat sits on the mat", "stock markets fell sharply today", "the kitten sleeps on a rug"]
    with Collection.create(tmp_path / "c", dim=encoder.dim, metric="ip", index="flat", encoder=encoder,
                           multivector=True) as col:
        col.add(["cat", "stocks", "kitten"], texts=texts)
        hits = col.search(["a small cat on a carpet"], 3)
        assert set(hits.ids[0]) == {"cat", "stocks", "kitten"} and hits.ids[0][-1] == "stocks"
        expected = maxsim_search(encoder.encode_tokens(["a small cat on a carpet"]), encoder.encode_tokens(texts), 3)[0]
        np.testing.assert_allclose(hits.scores[0], expected[0], atol=2e-2)  # tokens stored as float16


def test_a_crashed_batch_is_ignored(tmp_path, rng):
    docs, queries = _docs(rng, 30), _docs(rng, 4, 1, 4)
    col = Collection.create(tmp_path / "c", dim=D, metric="ip", index="flat", multivector=EXACT)
    col.add(list(range(30)), docs)
    junk = _docs(rng, 5, 20, 30)
    col._layer.append(30, junk)  # written past the committed rows, never committed
    col.close()
    with Collection.open(tmp_path / "c") as col:
        more = _docs(rng, 10)
        col.add(list(range(30, 40)), more)
        everything = MultiVectors.from_list([*docs, *more])
        np.testing.assert_array_equal(col.search(queries, 6).ids, _expected_ids(queries, everything, list(range(40)), 6))


def test_bad_input(tmp_path, rng):
    with pytest.raises(InvalidInputError, match=r"Collection.create: metric must be 'ip' for a multivector collection.*got 'cosine'"):
        Collection.create(tmp_path / "a", dim=D, multivector=True)
    with pytest.raises(InvalidInputError, match=r"Collection.create: multivector options must be among .* got unknown \['kappa'\]"):
        Collection.create(tmp_path / "b", dim=D, metric="ip", multivector={"kappa": 1})
    with pytest.raises(InvalidInputError, match=r"Muvera: r_reps \(the number of repetitions\) must be a positive int, got 0"):
        Collection.create(tmp_path / "c", dim=D, metric="ip", multivector={"r_reps": 0})
    col = Collection.create(tmp_path / "d", dim=D, metric="ip", index="flat", multivector=EXACT)
    col.add(["x"], _docs(rng, 1))
    with pytest.raises(InvalidInputError, match=r"Collection.add: vectors must have token vectors of dimension 32, got 16"):
        col.add(["y"], MultiVectors.from_list([np.ones((2, 16), np.float32)]))
    with pytest.raises(InvalidInputError, match=r"Collection.add: every item of vectors must have at least one token vector"):
        col.add(["y", "z"], MultiVectors(np.ones((2, D), np.float32), np.array([0, 2, 2])))
    with pytest.raises(InvalidInputError, match=r"Collection.add: vectors must hold one item per id \(2\), got 1"):
        col.add(["y", "z"], _docs(rng, 1))
    with pytest.raises(InvalidInputError, match=r"Collection.add: vectors must be MultiVectors .* got ndarray"):
        col.add(["y"], np.ones((1, D), np.float32))
    with pytest.raises(InvalidInputError, match=r"Collection.search: every item of queries must have at least one token vector"):
        col.search(MultiVectors(np.ones((1, D), np.float32), np.array([0, 0, 1])), 1)
    with pytest.raises(InvalidInputError, match=r"Collection.add: texts need the collection's encoder"):
        col.add(["t"], texts=["no encoder here"])
    assert col.count() == 1 and col.search(_docs(rng, 1), 3).ids[0].tolist() == ["x", None, None]
    col.close()
