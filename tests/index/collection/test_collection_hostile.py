"""Hostile and degenerate input: bounded requests, damaged folders, values that would score wrong, cosmetics.

Every rejection is a house error (``<Owner>.<method>: <param> must be ..., got ....``) and changes nothing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import tracemalloc
import warnings

import numpy as np
import pytest

from embedlab.errors import DataFormatError, InvalidInputError, NotFoundError
from embedlab.index import MAX_K, MAX_RESULTS, Collection
from embedlab.types import MultiVectors

D = 8


@pytest.fixture
def small(tmp_path):
    col = Collection.create(tmp_path / "c", dim=D, index="hnsw", M=8)
    col.add(["a", "b", "c"], np.eye(3, D, dtype=np.float32))
    yield col
    col.close()


def state(col):
    return col.count(), col.search(np.ones((1, D), np.float32), 3).ids.tolist()


# ---------------------------------------------------------------- k and batch bounds
def test_the_largest_k_on_a_tiny_collection_is_small_and_padded(small):
    tracemalloc.start()
    hits = small.search(np.ones((2, D), np.float32), k=MAX_K)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert hits.ids.shape == hits.scores.shape == (2, MAX_K)
    assert sorted(hits.ids[0, :3].tolist()) == ["a", "b", "c"] and set(hits.ids[0, 3:].tolist()) == {None}
    assert np.isneginf(hits.scores[:, 3:]).all()
    assert peak < 8 * 2**20  # the padded result (2 x 10,000) and nothing sized by k beyond it


def test_k_above_the_maximum_and_oversized_batches_are_clear_errors(small):
    before = state(small)
    with pytest.raises(InvalidInputError, match=r"Collection.search: k must be <= 10,000 \(embedlab.index.MAX_K\), "
                                                r"got 100,000,000\. Ask for fewer"):
        small.search(np.ones((1, D), np.float32), k=10**8)
    nq = MAX_RESULTS // 1000 + 1
    with pytest.raises(InvalidInputError, match=rf"queries x k must be <= 4,000,000 per call .*, got {nq:,} x 1,000\. "
                                                r"Split the queries into batches of at most 4,000"):
        small.search(np.ones((nq, D), np.float32), k=1000)
    with pytest.raises(InvalidInputError, match="Collection.plan: k must be <= 10,000"):
        small.plan(k=MAX_K + 1)
    assert state(small) == before


def test_the_largest_k_on_a_small_multivector_collection(tmp_path):
    with Collection.create(tmp_path / "m", dim=D, metric="ip", index="flat",
                           multivector={"k_sim": 2, "r_reps": 2, "d_proj": 4}) as col:
        col.add([1, 2], MultiVectors(np.eye(4, D, dtype=np.float32), np.array([0, 2, 4])))
        hits = col.search(MultiVectors(np.eye(2, D, dtype=np.float32), np.array([0, 2])), k=MAX_K)
        assert hits.ids.shape == (1, MAX_K) and sorted(hits.ids[0, :2].tolist()) == [1, 2]


# ---------------------------------------------------------------- empty batches
def test_an_empty_add_is_a_no_op_and_an_empty_query_batch_gives_empty_hits(tmp_path):
    for metric in ("cosine", "ip", "l2"):
        with Collection.create(tmp_path / metric, dim=D, metric=metric, index="flat") as col:
            col.add([], np.zeros((0, D), np.float32))
            col.upsert([], np.zeros((0, D)))
            assert col.count() == 0
            col.add(["a"], np.ones((1, D), np.float32))
            col.add([], np.zeros((0, D)))
            hits = col.search(np.zeros((0, D), np.float32), k=5)
            assert hits.ids.shape == hits.scores.shape == (0, 5) and col.count() == 1


# ---------------------------------------------------------------- damaged folders
def edit_manifest(path, **changes):
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("changes, pattern", [
    ({"dim": "8"}, r"dim in .*manifest.json must be a positive int, got '8'"),
    ({"dim": -1}, r"dim in .*manifest.json must be a positive int, got -1"),
    ({"dim": True}, r"dim in .*manifest.json must be a positive int, got True"),
    ({"index_params": "fast"}, r"index_params in .*manifest.json must be an object, got 'fast'"),
    ({"index_params": {"M": "many"}}, r"index_params in .*manifest.json must be parameters the 'hnsw' index accepts"),
    ({"index_params": {"nprobe": 3}}, r"index_params in .*manifest.json must be parameters the 'hnsw' index accepts"),
    ({"metric": "dot"}, r"metric in .*manifest.json must be one of \['cosine', 'ip', 'l2'\], got 'dot'"),
    ({"index": "annoy"}, r"index in .*manifest.json must be one of \['flat', 'hnsw', 'ivf'\], got 'annoy'"),
    ({"layer": {"name": "colbert"}}, r"layer in .*manifest.json must be None as the collection was created with"),
    ({"metric": "l2"}, r"metric in .*manifest.json must be 'cosine' as the collection was created with .*, got 'l2'"),
    ({"index": "flat", "index_params": {}}, r"index in .*manifest.json must be 'hnsw' as the collection was created"),
    ({"dim": 16}, r"dim in .*manifest.json must be 8 as the collection was created with"),
])
def test_a_damaged_or_edited_manifest_is_refused(tmp_path, changes, pattern):
    path = tmp_path / "c"
    with Collection.create(path, dim=D, index="hnsw", M=8) as col:
        col.add(["a"], np.ones((1, D), np.float32))
    edit_manifest(path, **changes)
    with pytest.raises(DataFormatError, match="Collection.open: " + pattern):
        Collection.open(path)


def test_a_damaged_layer_configuration_is_refused(tmp_path):
    path = tmp_path / "m"
    Collection.create(path, dim=D, metric="ip", index="flat", multivector={"k_sim": 2, "r_reps": 2}).close()
    edit_manifest(path, layer={"name": "multivector", "candidates": 5})
    with pytest.raises(DataFormatError, match=r"Collection.open: layer in .*manifest.json must be a valid layer "
                                              r"configuration, got an error: 'muvera'"):
        Collection.open(path)


def test_tuning_parameters_may_be_edited(tmp_path):
    path = tmp_path / "c"
    Collection.create(path, dim=D, index="hnsw", M=8).close()
    edit_manifest(path, index_params={"M": 8, "ef_construction": 128, "ef_search": 200})
    Collection.open(path).close()


@pytest.mark.parametrize("sql, pattern", [
    ("DROP TABLE items", r"must hold the tables fields, items and settings, got none named \['items'\]"),
    ("DROP TABLE settings", r"must hold the tables fields, items and settings, got none named \['settings'\]"),
    ("UPDATE settings SET value = 'x' WHERE key = 'n_rows'", r"setting n_rows in .* must be an int >= 0, got 'x'"),
    ("UPDATE settings SET value = -3 WHERE key = 'generation'", r"setting generation in .* must be an int >= 0, got -3"),
    ("ALTER TABLE items DROP COLUMN seq", r"collection.sqlite must be a collection database, got: no such column"),
])
def test_a_damaged_database_is_a_data_format_error_naming_the_file(tmp_path, sql, pattern):
    path = tmp_path / "c"
    with Collection.create(path, dim=D, index="flat") as col:
        col.add(["a"], np.ones((1, D), np.float32))
    conn = sqlite3.connect(path / "collection.sqlite")
    conn.execute("DROP INDEX IF EXISTS items_seq") if "seq" in sql else None
    conn.execute(sql)
    conn.commit()
    conn.close()
    with pytest.raises(DataFormatError, match=r"Collection.open: .*" + pattern):
        Collection.open(path)


def test_bad_paths_are_clear_errors(tmp_path):
    for owner, call in (("Collection.open", lambda p: Collection.open(p)),
                        ("Collection.create", lambda p: Collection.create(p, dim=D))):
        for bad, got in ((None, "NoneType"), (5, "int"), ("", "''")):
            with pytest.raises(InvalidInputError, match=rf"{owner}: path must be a folder path \(str or os.PathLike\), "
                                                        rf"got {got}\."):
                call(bad)
    (tmp_path / "not-a-collection").mkdir()
    (tmp_path / "not-a-collection" / "notes.txt").write_text("hi")
    (tmp_path / "file").write_text("x")
    for p in (tmp_path / "not-a-collection", tmp_path / "file"):
        with pytest.raises(NotFoundError, match="path must be a collection folder with manifest.json"):
            Collection.open(p)


# ---------------------------------------------------------------- values that would score wrong
@pytest.mark.parametrize("value, row", [(np.nan, 2), (np.inf, 0), (1e30, 4)])
def test_non_finite_or_huge_values_in_the_vectors_file_are_refused_on_open(tmp_path, value, row):
    path = tmp_path / "c"
    with Collection.create(path, dim=D, metric="l2", index="hnsw", M=8) as col:
        col.add(list(range(5)), np.random.default_rng(0).normal(size=(5, D)).astype(np.float32))
    vectors = np.memmap(path / "vectors-0.f32", dtype="<f4", mode="r+", shape=(5, D))
    vectors[row, 3] = value
    vectors.flush()
    del vectors
    with pytest.raises(DataFormatError, match=rf"Collection.open: vectors-0.f32 must hold finite float32 values of "
                                              rf"magnitude <= 1e\+15, got NaN, inf or a huge value in row {row}\."):
        Collection.open(path, readonly=True)


def test_a_reader_refuses_damaged_rows_it_catches_up_with(tmp_path):
    path = tmp_path / "c"
    writer = Collection.create(path, dim=D, index="flat")
    writer.add(["a"], np.ones((1, D), np.float32))
    reader = Collection.open(path, readonly=True)
    writer.add(["b"], np.ones((1, D), np.float32))
    vectors = np.memmap(path / "vectors-0.f32", dtype="<f4", mode="r+", shape=(2, D))
    vectors[1, 0] = np.nan
    vectors.flush()
    del vectors
    with pytest.raises(DataFormatError, match="got NaN, inf or a huge value in row 1"):
        reader.search(np.ones((1, D), np.float32), 1)
    reader.close()
    writer.close()


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_vectors_whose_scores_would_overflow_are_rejected_at_add_and_search(tmp_path, metric):
    with Collection.create(tmp_path / "c", dim=D, metric=metric, index="flat") as col:
        col.add(["small"], np.ones((1, D), np.float32))
        big = np.zeros((2, D), np.float32)
        big[1, 0] = 1e30
        with pytest.raises(InvalidInputError, match=rf"Collection.add: vectors must have an L2 norm <= 1e\+15 for "
                                                    rf"metric '{metric}' .*, got 1e\+30 in row 1\. Rescale"):
            col.add(["zero", "huge"], big)
        assert col.count() == 1
        with pytest.raises(InvalidInputError, match=r"Collection.search: queries must have an L2 norm <= 1e\+15"):
            col.search(big, 1)
        col.add(["large"], np.full((1, D), 1e14 / np.sqrt(D), np.float32))  # below the bound: finite scores
        hits = col.search(np.zeros((1, D), np.float32), 2)
        assert set(hits.ids[0].tolist()) == {"small", "large"} and np.isfinite(hits.scores).all()


# ---------------------------------------------------------------- cosmetics
class ChattyEncoder:
    """Warns the way Encoder.encode warns about truncation: at the caller of encode."""

    dim, source = D, "chatty"

    def encode(self, texts):
        warnings.warn("Encoder.encode: 1 text(s) were longer than max_length", UserWarning, stacklevel=2)
        return np.ones((len(texts), D), np.float32)


def test_the_encoder_warning_points_at_the_callers_line(tmp_path):
    with Collection.create(tmp_path / "c", dim=D, index="flat", encoder=ChattyEncoder()) as col:
        with pytest.warns(UserWarning, match="longer than max_length") as caught:
            col.add(["a"], texts=["long text"])
        assert [w.filename for w in caught] == [__file__]
        with pytest.warns(UserWarning, match="longer than max_length") as caught:
            col.search(["long query"], 1)
        assert [w.filename for w in caught] == [__file__]


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_collection_folders_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        Collection.create(tmp_path / "c", dim=D, index="flat").close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "c").st_mode) == 0o777 & ~mask
    assert stat.S_IMODE(os.stat(tmp_path / "c" / "manifest.json").st_mode) == 0o666 & ~mask


def test_encoder_errors_name_the_cli_flag_too(small):
    with pytest.raises(InvalidInputError, match=r"create the collection with encoder=\.\.\. \(CLI: embedlab index "
                                                r"--model\), or open it with encoder=\.\.\. \(CLI: --model\)"):
        small.add(["t"], texts=["some text"])


@pytest.mark.parametrize("damage, pattern", [
    ("nan", r"tokens-0.f16 must hold finite token vectors, got NaN or inf in token 3"),
    ("ends", r"token-ends-0.i64 must hold 2 non-decreasing token ends within tokens-0.f16"),
])
def test_damaged_multivector_token_files_are_refused(tmp_path, damage, pattern):
    path = tmp_path / "m"
    with Collection.create(path, dim=D, metric="ip", index="flat", multivector={"k_sim": 2, "r_reps": 2}) as col:
        col.add([1, 2], MultiVectors(np.eye(4, D, dtype=np.float32), np.array([0, 2, 4])))
    if damage == "nan":
        tokens = np.memmap(path / "tokens-0.f16", dtype=np.float16, mode="r+", shape=(4, D))
        tokens[3, 1] = np.nan
        tokens.flush()
        del tokens
    else:
        np.array([2, 400], np.int64).tofile(path / "token-ends-0.i64")
    with Collection.open(path, readonly=True) as col, pytest.raises(DataFormatError, match=pattern):
        col.search(MultiVectors(np.eye(2, D, dtype=np.float32), np.array([0, 2])), k=2)
