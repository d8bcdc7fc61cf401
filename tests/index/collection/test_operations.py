"""Everyday operations: payloads on hits, offset / min_score, scroll with a cursor, count / delete by filter,
update_metadata, contains — on plain, compressed and multi-vector collections; bad calls change nothing."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.errors import InvalidInputError, NotFoundError, UnsupportedError
from embedlab.index import Collection
from embedlab.index.collection.operations import MAX_SCROLL_LIMIT, MAX_SEARCH_OFFSET
from embedlab.types import MultiVectors

D, N = 16, 60


def vecs(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)


def meta(i):
    return {"cat": f"c{i % 3}", "n": i, "tags": ["odd"] if i % 2 else ["even"]}


def state(col):
    ids = sorted(col._mirror.row_of)
    got = col.get(ids) if ids else []
    hits = col.search(vecs(2, 9), 5)
    return (col.count(), dict(col._meta.schema), [(g["id"], g["metadata"], g["text"]) for g in got],
            hits.ids.tolist(), hits.scores.tolist(), col._seq)


def ids_of(n):
    return [f"d{i:03d}" for i in range(n)]


@pytest.fixture(params=["flat", "hnsw", "int8"])
def col(request, tmp_path):
    params = {"flat": {"index": "flat"}, "hnsw": {"index": "hnsw", "M": 8}, "int8": {"codec": "int8"}}[request.param]
    with Collection.create(tmp_path / "c", dim=D, **params) as c:
        c.add(ids_of(N), vecs(N), texts=[f"text {i}" for i in range(N)], metadata=[meta(i) for i in range(N)])
        yield c


@pytest.fixture
def multi(tmp_path):
    rng = np.random.default_rng(0)
    with Collection.create(tmp_path / "m", dim=D, metric="ip", index="flat",
                           multivector={"candidates": 20, "k_sim": 2, "r_reps": 2, "d_proj": 4}) as c:
        c.add(list(range(20)), MultiVectors(rng.normal(size=(60, D)).astype(np.float32), np.arange(0, 61, 3)),
              texts=[f"t{i}" for i in range(20)], metadata=[meta(i) for i in range(20)])
        yield c


def mquery():
    return MultiVectors(np.random.default_rng(5).normal(size=(4, D)).astype(np.float32), np.array([0, 2, 4]))


# ---------------------------------------------------------------- search: include
def test_include_fills_the_payload_aligned_with_ids(col):
    hits = col.search(vecs(3, 1), 4, filter="n < 50", include=("text", "metadata"))
    plain = col.search(vecs(3, 1), 4, filter="n < 50")
    assert hits.ids.tolist() == plain.ids.tolist() and plain.payload is None
    assert len(hits.payload) == 3 and all(len(p) == 4 for p in hits.payload)
    for qi, q in enumerate(hits.payload):
        for j, p in enumerate(q):
            i = int(hits.ids[qi, j][1:])
            assert p == {"metadata": meta(i), "text": f"text {i}"}
    one = hits[1]
    assert one.payload == hits.payload[1] and len(one.payload) == len(one.ids)


def test_include_vector_and_padding(col):
    hits = col.search(vecs(1, 1), 5, filter='cat == "c0" and n < 6', include=["vector"])  # 2 matches: 0 and 3
    assert hits.ids[0, :2].tolist() in (["d000", "d003"], ["d003", "d000"]) and hits.ids[0, 2:].tolist() == [None] * 3
    assert hits.payload[0][2:] == [None] * 3
    assert np.allclose(hits.payload[0][0]["vector"], col.get([hits.ids[0, 0]])[0]["vector"])
    assert set(hits.payload[0][0]) == {"vector"} and len(hits[0].payload) == 2


@pytest.mark.parametrize("include, error, message", [
    (("txt",), InvalidInputError, r"include must only name \['metadata', 'text', 'vector'\], got 'txt'"),
    ((1,), InvalidInputError, r"include must be a tuple of names from"),
    ({"text": 1}, InvalidInputError, r"include must be a tuple of names from"),
])
def test_bad_include(col, include, error, message):
    with pytest.raises(error, match=r"^Collection.search: " + message):
        col.search(vecs(1), 3, include=include)


def test_include_on_a_multivector_collection(multi):
    hits = multi.search(mquery(), 3, include="metadata")
    assert [[p["metadata"] for p in q] for q in hits.payload] == [[meta(i) for i in q] for q in hits.ids.tolist()]
    with pytest.raises(UnsupportedError, match=r"^Collection.search: include must not ask for 'vector' on a "
                                               r"multi-vector collection"):
        multi.search(mquery(), 3, include=("vector",))


# ---------------------------------------------------------------- search: offset and min_score
def test_offset_pages_through_the_ranking(col):
    q = vecs(2, 3)
    full = col.search(q, 12, ef=64) if col.index_kind == "hnsw" else col.search(q, 12)
    kw = {"ef": 64} if col.index_kind == "hnsw" else {}
    pages = [col.search(q, 4, offset=o, **kw) for o in (0, 4, 8)]
    assert np.concatenate([p.ids for p in pages], axis=1).tolist() == full.ids.tolist()
    assert np.allclose(np.concatenate([p.scores for p in pages], axis=1), full.scores)
    far = col.search(q, 5, offset=N - 2, filter="n >= 0")
    assert far.ids[:, 2:].tolist() == [[None] * 3] * 2 and np.isneginf(far.scores[:, 2:]).all()


def test_offset_on_a_multivector_collection(multi):
    full = multi.search(mquery(), 6)
    assert multi.search(mquery(), 3, offset=3).ids.tolist() == full.ids[:, 3:].tolist()


def test_min_score_turns_weaker_hits_into_padding(col):
    q = vecs(2, 4)
    full = col.search(q, 10)
    cut = float(full.scores[0, 3])
    hits = col.search(q, 10, min_score=cut)
    keep = full.scores >= cut
    assert (hits.ids == np.where(keep, full.ids, None)).all()
    assert np.array_equal(np.isfinite(hits.scores), keep) and hits.scores.dtype == np.float32
    assert col.search(q, 10, min_score=np.inf).ids.tolist() == [[None] * 10] * 2


@pytest.mark.parametrize("kwargs, message", [
    ({"offset": -1}, r"offset must be an int in \[0, 10000\], got -1\. List deeper with Collection.scroll"),
    ({"offset": MAX_SEARCH_OFFSET + 1}, r"offset must be an int in \[0, 10000\], got 10001"),
    ({"offset": 1.0}, r"offset must be an int in"),
    ({"min_score": float("nan")}, r"min_score must be a number \(scores are higher-is-better\) or None, got nan"),
    ({"min_score": "0.5"}, r"min_score must be a number"),
    ({"min_score": True}, r"min_score must be a number"),
])
def test_bad_paging_arguments(col, kwargs, message):
    with pytest.raises(InvalidInputError, match=r"^Collection.search: " + message):
        col.search(vecs(1), 3, **kwargs)


# ---------------------------------------------------------------- scroll
def scroll_all(col, cursor=None, **kwargs):
    out, pages = [], 0
    while True:
        items, cursor = col.scroll(cursor=cursor, **kwargs)
        out += items
        pages += 1
        if cursor is None:
            return out, pages


def test_scroll_lists_every_live_id_once_in_id_order(col):
    col.delete(["d005", "d017"])
    items, pages = scroll_all(col, limit=7)
    assert [i["id"] for i in items] == sorted(set(ids_of(N)) - {"d005", "d017"}) and pages == 9
    assert all(set(i) == {"id"} for i in items)
    items, _ = scroll_all(col, filter='cat == "c1"', limit=4, include=("metadata", "text"))
    assert [i["id"] for i in items] == [f"d{i:03d}" for i in range(N) if i % 3 == 1]
    assert items[0] == {"id": "d001", "metadata": meta(1), "text": "text 1"}
    assert col.scroll(limit=N - 2) == (col.scroll(limit=N)[0], None)  # an exact last page says so


def test_scroll_cursor_survives_concurrent_writes(col):
    page1, cursor = col.scroll(limit=20)
    assert cursor == "d019"
    col.add(["a-before", "z-after"], vecs(2, 7))  # one sorts before the cursor, one after
    col.delete(["d020", "d003"])
    col.upsert(["d030"], vecs(1, 8), metadata=[{"n": 1000}])  # a new row for an id after the cursor
    col.compact()  # renumbers every row
    rest, _ = scroll_all(col, cursor=cursor, limit=15)
    listed = [i["id"] for i in page1 + rest]
    assert len(listed) == len(set(listed))
    assert [i["id"] for i in rest] == sorted({f"d{i:03d}" for i in range(20, N)} - {"d020"} | {"z-after"})


def test_scroll_int_ids_sort_numerically(tmp_path):
    with Collection.create(tmp_path / "c", dim=D, index="flat") as col:
        col.add([10, 2, -5, 33, 7], vecs(5))
        items, cursor = col.scroll(limit=2)
        assert [i["id"] for i in items] == [-5, 2] and cursor == 2
        assert [i["id"] for i in col.scroll(limit=10, cursor=np.int64(2))[0]] == [7, 10, 33]


def test_scroll_an_empty_collection(tmp_path):
    with Collection.create(tmp_path / "c", dim=D, index="flat") as col:
        assert col.scroll() == ([], None)
        assert col.scroll(cursor="x") == ([], None)


def test_scroll_on_a_multivector_collection(multi):
    items, _ = scroll_all(multi, filter="n >= 10", limit=3, include=("text",))
    assert items == [{"id": i, "text": f"t{i}"} for i in range(10, 20)]


@pytest.mark.parametrize("kwargs, message", [
    ({"limit": 0}, r"limit must be an int in \[1, 10000\], got 0"),
    ({"limit": MAX_SCROLL_LIMIT + 1}, r"limit must be an int in \[1, 10000\], got 10001"),
    ({"cursor": 5}, r"cursor must be None or the next_cursor a previous scroll returned \(a str id\), got int 5"),
    ({"cursor": True}, r"cursor must be None or the next_cursor"),
    ({"include": ("ids",)}, r"include must only name"),
    ({"filter": "nope == 1"}, r"filter field must be one of the collection's metadata fields"),
])
def test_bad_scroll_arguments(col, kwargs, message):
    with pytest.raises((InvalidInputError, NotFoundError), match=r"^Collection.scroll: " + message):
        col.scroll(**kwargs)


# ---------------------------------------------------------------- count and delete by filter
def test_count_with_a_filter(col):
    assert col.count() == N and col.count("n < 10") == 10 and col.count('tags contains "odd"') == N // 2
    col.delete(["d001"])
    assert col.count("n < 10") == 9 and col.count({"op": "exists", "field": "cat"}) == N - 1


def test_delete_by_filter_returns_the_number_deleted(col, tmp_path):
    assert col.delete(filter='cat == "c2" and n < 30') == 10
    assert col.count() == N - 10 and col.count('cat == "c2"') == 10
    assert col.delete(filter="n > 1000") == 0
    assert col.delete(["d000", "d001"]) == 2
    left = [i for i in col.search(vecs(1), N, filter='cat == "c2"').ids[0].tolist() if i is not None]
    assert left and all(int(i[1:]) >= 30 for i in left)
    col.close()
    with Collection.open(tmp_path / "c", readonly=True) as again:
        assert again.count() == N - 12


@pytest.mark.parametrize("call, error, message", [
    (lambda c: c.delete(), InvalidInputError, r"give ids or filter, got neither"),
    (lambda c: c.delete(["d001"], filter="n < 3"), InvalidInputError, r"give ids or filter, got both"),
    (lambda c: c.delete(filter="nope < 3"), NotFoundError, r"filter field must be one of"),
    (lambda c: c.delete(filter='n == "x"'), InvalidInputError, r"filter value for 'n' must be an int"),
    (lambda c: c.delete(filter="n <"), InvalidInputError, r"text must be a filter expression"),
])
def test_bad_deletes_change_nothing(col, call, error, message):
    before = state(col)
    with pytest.raises(error, match=r"^(Collection.delete|Filter.parse): " + message):
        call(col)
    assert state(col) == before


def test_delete_by_filter_on_a_multivector_collection(multi):
    assert multi.delete(filter="n < 5") == 5
    assert multi.count() == 15 and not ({0, 1, 2, 3, 4} & set(multi.search(mquery(), 20).ids.ravel().tolist()))


# ---------------------------------------------------------------- update_metadata
def test_update_metadata_merges_removes_and_replaces(col, tmp_path):
    before = col.search(vecs(2, 3), 5)
    col.update_metadata(["d001", "d002"], [{"cat": "new", "extra": True}, {"tags": None}])
    col.update_metadata(["d004"], [{"n": 40.5}], replace=True)
    got = {g["id"]: g["metadata"] for g in col.get(["d001", "d002", "d004"])}
    assert got == {"d001": {**meta(1), "cat": "new", "extra": True}, "d002": {"cat": "c2", "n": 2},
                   "d004": {"n": 40.5}}
    assert col._meta.schema["n"] == "float" and col.count('cat == "new"') == 1 and col.count("extra == true") == 1
    assert col.count('tags contains "even"') == N // 2 - 2  # d002 dropped its tags, d004 replaced them
    after = col.search(vecs(2, 3), 5)
    assert after.ids.tolist() == before.ids.tolist() and np.allclose(after.scores, before.scores)  # vectors kept
    col.close()
    with Collection.open(tmp_path / "c", readonly=True) as again:
        assert {g["id"]: g["metadata"] for g in again.get(["d001", "d002", "d004"])} == got


def test_update_metadata_list_fields_are_rewritten(col):
    col.update_metadata(["d001"], [{"tags": ["x", "y"]}])
    assert col.count('tags contains "odd"') == N // 2 - 1 and col.count('tags contains "y"') == 1
    assert col.get(["d001"])[0]["metadata"]["tags"] == ["x", "y"]


def test_a_reader_sees_metadata_updates(col, tmp_path):
    with Collection.open(tmp_path / "c", readonly=True) as reader:
        assert reader.count('cat == "moved"') == 0
        col.update_metadata(["d003", "d006"], [{"cat": "moved", "tags": ["z"]}, {"n": 0.25}])
        assert reader.count('cat == "moved"') == 1 and reader.count('tags contains "z"') == 1
        assert reader.get(["d006"])[0]["metadata"] == {**meta(6), "n": 0.25}
        assert reader.search(vecs(1), 3, filter='cat == "moved"', include=("metadata",)).payload[0][0]["metadata"] \
            == {"cat": "moved", "n": 3.0, "tags": ["z"]}


@pytest.mark.parametrize("call, error, message", [
    (lambda c: c.update_metadata(["nope"], [{"n": 1}]), NotFoundError, r"ids must exist, got 1 unknown"),
    (lambda c: c.update_metadata(["d001"], [{"n": "x"}]), InvalidInputError, r"metadata\[0\]\['n'\] must be an int"),
    (lambda c: c.update_metadata(["d001", "d002"], [{"n": 1}]), InvalidInputError, r"metadata must be a list of 2"),
    (lambda c: c.update_metadata(["d001"], {"n": 1}), InvalidInputError, r"metadata must be a list of 1 dicts"),
    (lambda c: c.update_metadata(["d001"], [{"bad key": 1}]), InvalidInputError, r"metadata\[0\] keys must be a metadata"),
    (lambda c: c.update_metadata(["d001"], [{"n": 2**64}]), InvalidInputError, r"metadata\[0\]\['n'\] must be an int that"),
    (lambda c: c.update_metadata(["d001"], [{"n": 1}], replace=1), InvalidInputError, r"replace must be a bool"),
    (lambda c: c.update_metadata(["d001", "d001"], [{}, {}]), InvalidInputError, r"ids must be unique"),
])
def test_bad_metadata_updates_change_nothing(col, call, error, message):
    before = state(col)
    with pytest.raises(error, match=r"^Collection.update_metadata: " + message):
        call(col)
    assert state(col) == before


def test_update_metadata_on_a_multivector_collection(multi, tmp_path):
    multi.update_metadata([3], [{"cat": "hot"}])
    assert multi.search(mquery(), 5, filter='cat == "hot"').ids[:, 0].tolist() == [3, 3]
    multi.close()
    with Collection.open(tmp_path / "m", readonly=True) as again:
        assert again.count('cat == "hot"') == 1


def test_update_metadata_needs_a_writer(col, tmp_path):
    with Collection.open(tmp_path / "c", readonly=True) as reader:
        with pytest.raises(UnsupportedError, match=r"^Collection.update_metadata: this collection was opened with "
                                                   r"readonly=True"):
            reader.update_metadata(["d001"], [{"n": 1}])


# ---------------------------------------------------------------- contains
def test_contains_is_a_cheap_existence_check(col):
    col.delete(["d002"])
    assert col.contains(["d001", "d002", "zzz"]).tolist() == [True, False, False]
    assert col.contains([]).dtype == bool and col.contains([]).shape == (0,)
    with pytest.raises(InvalidInputError, match=r"^Collection.contains: ids must be str like the collection's"):
        col.contains([1])
