"""Metadata typing: int fields widen to float (durably, visibly to readers, one meaning for filters), ints beyond
int64 are refused, field names in any script."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.errors import InvalidInputError
from embedlab.index import Collection

D = 8


def vecs(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)


def state(col):
    ids = sorted(col._mirror.row_of)
    return (col.count(), dict(col._meta.schema), [(g["id"], g["metadata"]) for g in col.get(ids)] if ids else [],
            col._seq)


@pytest.fixture
def col(tmp_path):
    with Collection.create(tmp_path / "c", dim=D, index="flat") as c:
        yield c


def test_an_inferred_int_field_widens_to_float_across_batches(col, tmp_path):
    col.add(["a", "b", "c"], vecs(3), metadata=[{"n": 1}, {"n": 2}, {}])
    before = {f: col.count(f) for f in ("n == 2", "n < 2.5", "n >= 1", "exists(n)", "n != 1")}
    col.add(["d"], vecs(1, 1), metadata=[{"n": 2.5}])
    assert col._meta.schema["n"] == "float"
    got = {g["id"]: g["metadata"] for g in col.get(["a", "b", "c", "d"])}
    assert got == {"a": {"n": 1.0}, "b": {"n": 2.0}, "c": {}, "d": {"n": 2.5}}
    assert type(got["a"]["n"]) is float
    assert {f: col.count(f) for f in before} == {"n == 2": 1, "n < 2.5": 2, "n >= 1": 3, "exists(n)": 3, "n != 1": 2}
    assert before == {"n == 2": 1, "n < 2.5": 2, "n >= 1": 2, "exists(n)": 2, "n != 1": 1}
    col.add(["e"], vecs(1, 2), metadata=[{"n": 7}])  # later ints are stored as floats
    col.close()
    with Collection.open(tmp_path / "c", readonly=True) as again:  # durable
        assert again._meta.schema["n"] == "float"
        assert again.get(["e"])[0]["metadata"] == {"n": 7.0} and again.count("n == 2.5") == 1


def test_widening_within_one_batch(col):
    col.add(["a", "b"], vecs(2), metadata=[{"n": 1}, {"n": 0.5}])
    assert col._meta.schema["n"] == "float" and col.count("n > 0.7") == 1


def test_a_reader_follows_the_widening(col, tmp_path):
    col.add(["a"], vecs(1), metadata=[{"n": 1}])
    with Collection.open(tmp_path / "c", readonly=True) as reader:
        assert reader._meta.schema["n"] == "int"
        col.add(["b"], vecs(1, 1), metadata=[{"n": 1.5}])
        assert reader.count("n > 1.2") == 1 and reader._meta.schema["n"] == "float"
        assert reader.get(["a"])[0]["metadata"] == {"n": 1.0}


def test_widening_survives_compaction(col):
    col.add(["a", "b", "c"], vecs(3), metadata=[{"n": 1}, {"n": 2}, {"n": 3}])
    col.add(["d"], vecs(1, 1), metadata=[{"n": 0.5}])
    col.delete(["b"])
    col.compact()
    assert col._meta.schema["n"] == "float" and col.count("n < 2") == 2
    col.add(["e"], vecs(1, 2), metadata=[{"n": 9.75}])
    assert col.get(["e"])[0]["metadata"] == {"n": 9.75}


def test_a_declared_int_field_does_not_widen(tmp_path):
    with Collection.create(tmp_path / "c", dim=D, index="flat", schema={"year": "int"}) as col:
        col.add(["a"], vecs(1), metadata=[{"year": 2020}])
        before = state(col)
        with pytest.raises(InvalidInputError, match=r"^Collection.add: metadata\[0\]\['year'\] must be an int \(the "
                                                    r"field's type\), got float 2020.5\."):
            col.add(["b"], vecs(1, 1), metadata=[{"year": 2020.5}])
        assert state(col) == before
    with Collection.open(tmp_path / "c") as col:  # the declaration is remembered
        with pytest.raises(InvalidInputError, match=r"must be an int \(the field's type\)"):
            col.add(["b"], vecs(1, 1), metadata=[{"year": 2020.5}])


def test_widening_is_refused_when_a_stored_int_would_round(col):
    col.add(["a"], vecs(1), metadata=[{"n": 2**53 + 1}])
    before = state(col)
    with pytest.raises(InvalidInputError, match=r"^Collection.add: metadata\[1\]\['n'\] must be an int \(the field "
                                                r"holds 9007199254740993, which a float would round"):
        col.add(["b", "c"], vecs(2, 1), metadata=[{"n": 3}, {"n": 0.5}])
    assert state(col) == before and col._meta.schema["n"] == "int"


@pytest.mark.parametrize("value", [2**70, -(2**63) - 1, 2**63])
def test_ints_beyond_int64_are_refused_and_nothing_changes(col, value):
    col.add(["a"], vecs(1), metadata=[{"n": 1}])
    before = state(col)
    for metadata in ([{"n": value}], [{"m": value}]):  # an existing int field, and a new field
        with pytest.raises(InvalidInputError, match=r"^Collection.add: metadata\[0\]\['\w'\] must be an int that fits "
                                                    r"in int64 \(\[-2\*\*63, 2\*\*63 - 1\]\), got int -?\d+\. "
                                                    r"Store it as a float \(e.g. 1e23\) or a str\."):
            col.add(["b"], vecs(1, 1), metadata=metadata)
        assert state(col) == before
    col.add(["b"], vecs(1, 1), metadata=[{"n": 2**63 - 1}])
    assert col.get(["b"])[0]["metadata"] == {"n": 2**63 - 1}


def test_a_float_field_takes_a_large_int_as_a_float(col):
    col.add(["a"], vecs(1), metadata=[{"w": 0.5}])
    col.add(["b"], vecs(1, 1), metadata=[{"w": 2**70}])
    assert col.get(["b"])[0]["metadata"] == {"w": float(2**70)}


def test_unicode_field_names(col, tmp_path):
    col.add(["a", "b"], vecs(2), metadata=[{"año": 2024, "größe": "groß", "名前": ["x"]}, {"año": 1999}])
    assert col.count('año >= 2000 and größe == "groß" and 名前 contains "x"') == 1
    assert col.search(vecs(1), 2, filter="año < 2000").ids[0, 0] == "b"
    col.close()
    with Collection.open(tmp_path / "c", readonly=True) as again:
        assert again.get(["a"])[0]["metadata"] == {"año": 2024, "größe": "groß", "名前": ["x"]}


def test_a_bad_field_name_names_the_call_not_filter_exists(col):
    with pytest.raises(InvalidInputError, match=r"^Collection.add: metadata\[1\] keys must be a metadata field name "
                                                r"\(a letter or '_', then .*\), got 'bad name'\."):
        col.add(["a", "b"], vecs(2), metadata=[{"ok": 1}, {"bad name": 1}])
    assert col.count() == 0 and col._meta.schema == {}
    with pytest.raises(InvalidInputError, match=r"^Collection.create: schema keys must be a metadata field name"):
        Collection.create(col.path.parent / "d", dim=D, schema={"1x": "int"})
