"""Compressed collections (codes in RAM + rescoring from the memory-mapped float rows) against exact search."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.errors import InvalidInputError, UnsupportedError
from embedlab.index import Collection, exact_search

D = 32


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((100, D))
    x = centers[rng.integers(0, 100, 3000)] + 0.5 * rng.standard_normal((3000, D))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    q = x[:40] + 0.1 * rng.standard_normal((40, D)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q


def recall(ids: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(ids.astype(np.int64), exact)]))


def build(path, x, **params) -> Collection:
    col = Collection.create(path, dim=D, index="flat", **params)
    col.add(list(range(len(x))), x, metadata=[{"g": i % 4} for i in range(len(x))])
    return col


@pytest.mark.parametrize("params,floor", [
    ({"codec": "binary"}, 0.8),  # rescore="float32", oversample=4 by default; 32 bits only
    ({"codec": "binary", "rescore": None}, 0.45),
    ({"codec": "binary", "rescore": "int8", "oversample": 8}, 0.85),
    ({"codec": "int8", "rescore": None}, 0.95),
    ({"codec": "pq:8,6", "rescore": True}, 0.95),
])
def test_recall_against_exact(params, floor, data, tmp_path):
    x, q = data
    _, exact = exact_search(q, x, 10)
    with build(tmp_path / "c", x, **params) as col:
        hits = col.search(q, 10)
        assert recall(hits.ids, exact) >= floor
        assert col._index.trained


def test_float32_rescoring_returns_exact_scores(data, tmp_path):
    x, q = data
    with build(tmp_path / "c", x, codec="binary", oversample=8) as col:
        hits = col.search(q, 5)
        rows = hits.ids.astype(np.int64)
        np.testing.assert_allclose(hits.scores, np.einsum("qd,qkd->qk", q, x[rows]), rtol=1e-5, atol=1e-6)
        stats = col.stats()
        assert stats["ram_bytes_per_vector"] == D // 8  # the sign bits only; float rows stay on disk
        col.close()  # the checkpoint holds the codes: disk = float32 rows + codes + ids, metadata, manifest
        with Collection.open(tmp_path / "c") as again:
            stats = again.stats()
        assert stats["count"] == len(x) and 4 * D + D // 8 < stats["disk_bytes_per_vector"] < 4 * D + D // 8 + 200


def test_filter_is_honoured(data, tmp_path):
    x, q = data
    with build(tmp_path / "c", x, codec="binary") as col:
        hits = col.search(q, 10, filter="g != 0")  # selectivity 0.75: the planner scans the codes with a bitmap
        assert set(hits.strategy) <= {"flat_scan", "flat_scan+exact"}
        assert all(i % 4 != 0 for i in hits.ids.ravel())
        _, exact = exact_search(q, x[np.arange(len(x)) % 4 != 0], 10)
        allowed = np.flatnonzero(np.arange(len(x)) % 4 != 0)
        assert recall(hits.ids, allowed[exact]) >= 0.8


def test_untrained_is_exact_then_trains_and_survives_reopen(data, tmp_path):
    x, q = data
    col = Collection.create(tmp_path / "c", dim=D, index="flat", codec="pq:8,6", codec_train_size=1000)
    col.add(list(range(500)), x[:500])
    assert not col._index.trained
    _, exact = exact_search(q, x[:500], 10)
    assert recall(col.search(q, 10).ids, exact) == 1.0
    col.add(list(range(500, 3000)), x[500:])
    assert col._index.trained and col._index.ntotal == 3000
    before = col.search(q, 10)
    col.close()
    with Collection.open(tmp_path / "c") as again:
        assert again._index.trained  # loaded from the checkpoint: codec state and codes
        after = again.search(q, 10)
    np.testing.assert_array_equal(after.ids, before.ids)
    np.testing.assert_allclose(after.scores, before.scores, rtol=1e-6)


def test_rows_past_the_checkpoint_are_encoded_on_open(data, tmp_path):
    x, q = data
    col = build(tmp_path / "c", x[:2000], codec="int8", rescore=None)
    col.close()
    col = Collection.open(tmp_path / "c")
    col.add(list(range(2000, 3000)), x[2000:])
    expected = col.search(q, 10)
    col._lock.release()  # simulate a crash: no checkpoint of the last 1000 rows
    col._db.close()
    with Collection.open(tmp_path / "c") as again:
        got = again.search(q, 10)
    np.testing.assert_array_equal(got.ids, expected.ids)


@pytest.mark.parametrize("params,error,message", [
    ({"codec": "pq:5"}, InvalidInputError, r"Collection.create: codec 'pq:5,8': m must divide the dimension 32, got m=5"),
    ({"codec": "truncate:64+int8"}, InvalidInputError, r"codec 'truncate:64\+int8': vectors must have at least dim=64 columns, got 32"),
    ({"codec": "int9"}, InvalidInputError, r"codec: spec must name a known codec, got 'int9'"),
    ({"codec": 8}, InvalidInputError, r"Collection.create: codec must be a codec spec string"),
    ({"codec": "binary", "rescore": "int4"}, InvalidInputError, r"Collection.create: rescore must be one of \['float32', 'int8', None\]"),
    ({"codec": "binary", "oversample": 0}, InvalidInputError, r"Collection.create: oversample must be a positive int, got 0"),
    ({"codec": "binary", "rescore": None, "oversample": 4}, InvalidInputError, r"oversample must be 1 without rescoring"),
    ({"codec": "pq:8,8", "codec_train_size": 100}, InvalidInputError, r"codec_train_size must be >= 256 for 'pq:8,8'"),
    ({"rescore": "float32"}, InvalidInputError, r"Collection.create: codec must be a codec spec string .* got None"),
])
def test_bad_parameters(params, error, message, tmp_path):
    with pytest.raises(error, match=message):
        Collection.create(tmp_path / "c", dim=D, index="flat", **params)
    assert not (tmp_path / "c").exists()


def test_codec_without_an_index_defaults_to_the_code_scan(tmp_path, rng):
    x = rng.standard_normal((30, D)).astype(np.float32)
    with Collection.create(tmp_path / "c", dim=D, codec="binary", rescore="float32") as col:
        col.add(list(range(30)), x)
        hits = col.search(x[:3], k=1)
    assert [row[0] for row in hits.ids] == [0, 1, 2]


def test_codec_needs_flat_index_and_inner_product(tmp_path):
    with pytest.raises(UnsupportedError, match=r"Collection.create: codec= needs index='flat' .* got index='hnsw'"):
        Collection.create(tmp_path / "c", dim=D, index="hnsw", codec="binary")
    with pytest.raises(UnsupportedError, match=r"Collection.create: metric must be 'cosine' or 'ip' with codec=, got 'l2'"):
        Collection.create(tmp_path / "c", dim=D, index="flat", metric="l2", codec="binary")
    assert not (tmp_path / "c").exists()
