"""MuveraIndex: FDE candidates + exact rerank against brute-force MaxSim; filters; persistence; bad input."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.errors import InvalidInputError
from embedlab.index.multivector.fde import Muvera
from embedlab.index.multivector.index import MuveraIndex
from embedlab.types import MultiVectors

D = 32


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((20, D)).astype(np.float32)

    def cloud(n):
        x = centers[rng.integers(0, 20, n)] + 0.4 * rng.standard_normal((n, D)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    docs = MultiVectors.from_list([cloud(int(rng.integers(1, 12))) for _ in range(600)])
    queries = MultiVectors.from_list([cloud(int(rng.integers(1, 6))) for _ in range(30)])
    return docs, queries


def _recall(exact, approx) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(exact.ids, approx.ids)]))


def _index(docs, **kwargs) -> MuveraIndex:
    index = MuveraIndex(D, muvera=Muvera(k_sim=4, d_proj=None, r_reps=40, seed=0), **kwargs)
    index.add(docs)
    return index


@pytest.fixture(scope="module")
def built(data):
    """``built(kind, codec)``: one index over the module's documents per (kind, codec), built once; tests that
    change an index build their own."""
    cache = {}

    def get(kind, codec):
        if (kind, codec) not in cache:
            cache[kind, codec] = _index(data[0], index=kind, fde_codec=codec)
        return cache[kind, codec]

    return get


@pytest.mark.parametrize("kind,codec", [("flat", "float32"), ("flat", "float16"), ("hnsw", "float16"), ("flat", "int8")])
def test_generous_parameters_recover_the_exact_chamfer_top10(data, built, kind, codec):
    docs, queries = data
    index = built(kind, codec)
    exact, approx = index.search_exact(queries, 10), index.search(queries, 10, candidates=100)
    assert _recall(exact, approx) >= 0.95
    assert approx.strategy == ("muvera",) * 30
    hit = approx.ids == exact.ids
    np.testing.assert_allclose(approx.scores[hit], exact.scores[hit], rtol=1e-5)


def test_default_muvera_candidates_and_more_candidates_help(data):
    docs, queries = data
    index = MuveraIndex(D, dtype="float32")
    index.add(docs)
    exact = index.search_exact(queries, 10)
    few, many = _recall(exact, index.search(queries, 10, candidates=20)), _recall(exact, index.search(queries, 10, candidates=200))
    assert many >= few and many >= 0.95
    assert index.candidates_for(queries, 50).shape == (30, 50)


@pytest.mark.parametrize("kind,codec", [("flat", "float32"), ("flat", "float16"), ("hnsw", "float16")])
def test_filters_are_honoured_in_both_strategies(data, built, kind, codec):
    docs, queries = data
    index = built(kind, codec)
    allowed = np.zeros(600, dtype=bool)
    allowed[::3] = True
    hits = index.search(queries, 10, allowed=allowed, candidates=50)
    exact = index.search_exact(queries, 10, allowed=allowed)
    assert allowed[hits.ids].all() and hits.strategy[0] == "muvera"
    assert _recall(exact, hits) >= 0.9
    few = np.zeros(600, dtype=bool)
    few[[5, 50, 500]] = True
    hits = index.search(queries, 10, allowed=few)
    assert hits.strategy[0] == "exact" and set(hits.ids[:, :3].ravel()) <= {5, 50, 500}
    assert (hits.ids[:, 3:] == -1).all()
    none = index.search(queries, 4, allowed=np.zeros(600, dtype=bool))
    assert (none.ids == -1).all() and none.strategy[0] == "empty"


@pytest.mark.parametrize("kind,codec", [("hnsw", "float16"), ("flat", "float16")])
def test_save_load_is_identical_and_memory_mapped(data, built, tmp_path, kind, codec):
    docs, queries = data
    index = built(kind, codec)
    before = index.search(queries, 10, candidates=60)
    index.save(tmp_path / "mv")
    loaded = MuveraIndex.load(tmp_path / "mv")
    after = loaded.search(queries, 10, candidates=60)
    np.testing.assert_array_equal(after.ids, before.ids)
    np.testing.assert_allclose(after.scores, before.scores)
    assert loaded.documents.vectors.dtype == np.float16
    assert isinstance(loaded._chunks[0], np.memmap)
    assert loaded.get_params() == index.get_params()
    sizes = loaded.bytes_per_document()
    assert sizes["tokens"] == pytest.approx((docs.offsets[-1] * D * 2 + 8 * 601) / 600)
    loaded.add(MultiVectors.from_list([docs[0]]))  # appending after load works
    assert len(loaded) == 601 and loaded.search(MultiVectors.from_list([docs[0]]), 2).ids[0, 0] in (0, 600)


def test_bad_input_leaves_the_index_unchanged(data, rng):
    docs, queries = data
    index = _index(MultiVectors.from_list([docs[i] for i in range(20)]))
    with pytest.raises(InvalidInputError, match=r"MuveraIndex.add: documents must have token vectors of dimension 32, got 8"):
        index.add(MultiVectors.from_list([rng.standard_normal((3, 8)).astype(np.float32)]))
    bad = MultiVectors(np.ones((2, D), np.float32), np.array([0, 2, 2]))
    with pytest.raises(InvalidInputError, match=r"MuveraIndex.add: every item of documents must have at least one token vector"):
        index.add(bad)
    assert len(index) == 20 and index._fde.ntotal == 20 and index.documents.offsets[-1] == docs.offsets[20]
    with pytest.raises(InvalidInputError, match=r"MuveraIndex.search: every item of queries must have at least one token vector"):
        index.search(MultiVectors(np.ones((1, D), np.float32), np.array([0, 0, 1])), 3)
    with pytest.raises(InvalidInputError, match=r"MuveraIndex.search: allowed must be a bool array of shape \(20,\)"):
        index.search(queries, 3, allowed=np.ones(5, bool))
    with pytest.raises(InvalidInputError, match=r"MuveraIndex.search: candidates must be a positive int, got 0"):
        index.search(queries, 3, candidates=0)
    with pytest.raises(InvalidInputError, match=r"MuveraIndex: index must be one of \['flat', 'hnsw'\], got 'ivf'"):
        MuveraIndex(D, index="ivf")
    with pytest.raises(InvalidInputError, match=r"MuveraIndex: fde_codec must be one of \['float32', 'float16', 'int8'\], got 'pq'"):
        MuveraIndex(D, fde_codec="pq")


def test_empty_index_and_k_larger_than_n(data):
    docs, queries = data
    empty = MuveraIndex(D)
    assert (empty.search(queries, 3).ids == -1).all()
    assert (empty.search_exact(queries, 3).ids == -1).all()
    small = _index(MultiVectors.from_list([docs[0], docs[1]]))
    hits = small.search(queries, 5)
    assert (hits.ids[:, 2:] == -1).all() and set(hits.ids[:, :2].ravel()) == {0, 1}
