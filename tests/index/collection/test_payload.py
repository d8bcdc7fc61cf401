"""Payload indexes (:mod:`embedlab.index.collection.payload`): the rows they select are exactly the scan's on random
filters, through every kind of write; ``plan()`` says how each field was used; ``payload.npz`` is adopted when
current, ignored when stale, and rebuilt with a warning when damaged; ``indexes=`` is validated."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

from embedlab.errors import InvalidInputError, UnsupportedError
from embedlab.index import Collection, Filter
from embedlab.index.collection import payload

_spec = importlib.util.spec_from_file_location("filter_cases", Path(__file__).with_name("filter_cases.py"))
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)


def scan_rows(col, f) -> np.ndarray:
    """The reference: every row's metadata evaluated, minus deleted rows."""
    return np.flatnonzero(col._meta.evaluate(f, col._n, "test") & col._mirror.alive.view())


@pytest.fixture(scope="module", params=["all", "some", "none"])
def col(request, tmp_path_factory):
    """240 items with every field type and some deletes; every field indexed, two of them, or none."""
    x, meta = cases._items()
    indexes = {"all": None, "some": ["s", "n"], "none": []}[request.param]
    c = Collection.create(tmp_path_factory.mktemp("payload") / "c", dim=cases.D, index="flat", schema=cases.SCHEMA,
                          indexes=indexes)
    c.add([f"d{i:03d}" for i in range(len(x))], x, metadata=meta)
    c.delete([f"d{i:03d}" for i in range(0, 240, 7)])
    yield c
    c.close()


@settings(max_examples=150, deadline=None)
@given(f=cases.filters())
def test_random_filters_select_exactly_what_the_scan_selects(col, f):
    allowed = col._allowed(f, "test")
    np.testing.assert_array_equal(allowed.rows, scan_rows(col, f))
    assert allowed.count == len(allowed.rows) == col.count(f)
    p = col.plan(10, filter=f)
    assert p["allowed"] == allowed.count  # the planner decides on the exact count


def test_writes_of_every_kind_keep_the_indexes_exact(tmp_path):
    x, meta = cases._items(120, seed=1)
    ids = [f"d{i:03d}" for i in range(120)]
    probes = [Filter.eq("s", "noun"), Filter.in_("s", ["verb", "año"]), Filter.range("n", ge=0, lt=8),
              Filter.eq("n", 7), Filter.range("f", gt=-1.25, le=3.0), Filter.contains("tags", "日本"),
              Filter.eq("b", True), Filter.eq("s", "noun") & Filter.range("n", ge=1)]
    with Collection.create(tmp_path / "c", dim=cases.D, index="hnsw", schema=cases.SCHEMA) as c:
        def check():
            for f in probes:
                np.testing.assert_array_equal(c._allowed(f, "test").rows, scan_rows(c, f), err_msg=repr(f))

        c.add(ids[:60], x[:60], metadata=meta[:60])
        check()
        c.add(ids[60:], x[60:], metadata=meta[60:])
        check()
        c.upsert(ids[:10], x[:10], metadata=[{"s": "noun", "n": 7, "tags": ["日本", "日本"]}] * 10)
        check()
        c.update_metadata(ids[10:20], [{"s": "verb", "b": True}] * 10)
        c.update_metadata(ids[20:25], [{"tags": None, "n": 3}] * 5, replace=True)
        check()
        c.delete(filter=Filter.eq("n", 3))
        check()
        c.compact()
        check()
        c.upsert(["new"], x[:1], metadata=[{"n": 7, "extra": "z"}])  # a field inferred after the first writes
        probes.append(Filter.eq("extra", "z"))
        check()


def test_an_inferred_int_field_that_widens_to_float_is_reindexed(tmp_path):
    with Collection.create(tmp_path / "c", dim=2, index="flat") as c:
        c.add(["a", "b"], np.eye(2, dtype=np.float32), metadata=[{"n": 1}, {"n": 3}])
        assert c.count(Filter.range("n", gt=1.5)) == 1
        c.add(["c"], np.ones((1, 2), np.float32), metadata=[{"n": 2.5}])
        assert c.schema["n"] == "float"
        assert c.count(Filter.range("n", gt=1.5)) == 2 and c.count(Filter.eq("n", 2.5)) == 1


def test_plan_says_which_fields_used_an_index(tmp_path):
    x, meta = cases._items(3000)
    meta[5]["tags"] = ["rare"]
    with Collection.create(tmp_path / "c", dim=cases.D, index="flat", schema=cases.SCHEMA,
                           indexes=["s", "tags"]) as c:
        c.add([f"d{i:03d}" for i in range(len(x))], x, metadata=meta)
        rare = Filter.contains("tags", "rare") & Filter.range("n", ge=0)  # tags narrows, n is checked on its rows
        assert c.plan(10, filter=rare)["filter"] == {"tags": "index", "n": "checked"}
        assert c.plan(10, filter=Filter.range("n", ge=0))["filter"] == {"n": "scan"}  # n has no index: scan
        assert c.plan(10, filter=Filter.ne("s", "noun"))["filter"] == {"s": "scan"}  # != is answered by a scan
        assert c.plan(10)["filter"] == {}


def test_a_filter_matching_most_rows_is_scanned_not_gathered(tmp_path):
    n = 400
    with Collection.create(tmp_path / "c", dim=2, index="flat") as c:
        c.add(list(range(n)), np.ones((n, 2), np.float32), metadata=[{"k": i % 2, "r": i % 100} for i in range(n)])
        assert c.plan(10, filter="k == 1")["filter"] == {"k": "scan"}  # half the rows: one vectorised scan
        assert c.plan(10, filter="r == 5")["filter"] == {"r": "index"}  # 1%: read from the sorted index
        assert c.count("k == 1") == 200 and c.count("r == 5") == 4


def test_close_saves_the_indexes_and_open_adopts_them(tmp_path):
    x, meta = cases._items()
    path = tmp_path / "c"
    with Collection.create(path, dim=cases.D, index="flat", schema=cases.SCHEMA) as c:
        c.add([f"d{i:03d}" for i in range(len(x))], x, metadata=meta)
        want = {f: c._allowed(f, "t").rows for f in (Filter.eq("s", "noun"), Filter.range("n", ge=1))}
    assert (path / payload.FILE).exists()
    with Collection.open(path, readonly=True) as c:
        assert set(c._payload.built) == set(cases.SCHEMA)  # adopted from the file, not rebuilt
        for f, rows in want.items():
            np.testing.assert_array_equal(c._allowed(f, "t").rows, rows)


def test_a_stale_file_is_ignored(tmp_path):
    path = tmp_path / "c"
    with Collection.create(path, dim=2, index="flat") as c:
        c.add(["a"], np.ones((1, 2), np.float32), metadata=[{"k": "x"}])
    writer = Collection.open(path)  # a later write that never reached a close (as after a crash)
    writer.add(["b"], np.ones((1, 2), np.float32), metadata=[{"k": "x"}])
    with Collection.open(path, readonly=True) as c:
        assert not c._payload.built  # the file's key is older than the database: not adopted
        assert c.count("k == 'x'") == 2
    writer.close()


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "rows_out_of_range"])
def test_a_damaged_file_is_rebuilt_with_a_warning_never_a_wrong_answer(tmp_path, damage):
    x, meta = cases._items()
    path = tmp_path / "c"
    with Collection.create(path, dim=cases.D, index="flat", schema=cases.SCHEMA) as c:
        c.add([f"d{i:03d}" for i in range(len(x))], x, metadata=meta)
        f = Filter.eq("s", "noun") | Filter.range("n", le=1)
        want = c._allowed(f, "t").rows
    file = path / payload.FILE
    data = bytearray(file.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "garbage":
        data = bytearray(b"not a zip file at all")
    else:  # a well-formed file whose rows point outside the collection
        with np.load(file) as z:
            arrays = dict(z)
        arrays["0_rows"] = arrays["0_rows"] + 10_000
        import io
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = bytearray(buf.getvalue())
    file.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"payload\.npz is damaged .* rebuilt from the metadata"):
        c = Collection.open(path, readonly=True)
    with c:
        np.testing.assert_array_equal(c._allowed(f, "t").rows, want)


def test_bad_indexes_arguments_are_clear_errors(tmp_path):
    with pytest.raises(InvalidInputError, match=r"indexes must name fields declared in schema= \(\['s'\]\), got 'nope'"):
        Collection.create(tmp_path / "a", dim=2, schema={"s": "str"}, indexes=["nope"])
    with pytest.raises(InvalidInputError, match="indexes must be a list of field names or None .* got str 's'"):
        Collection.create(tmp_path / "b", dim=2, schema={"s": "str"}, indexes="s")
    with pytest.raises(UnsupportedError, match="indexes= chooses embedlab's payload indexes, got it with backend='milvus'"):
        Collection.create(tmp_path / "c", dim=2, schema={"s": "str"}, indexes=["s"], backend="milvus")
    assert not any((tmp_path / p).exists() for p in ("a", "b", "c"))
