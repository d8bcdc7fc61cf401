"""Property-based tests (hypothesis) over the public Collection API and the filter language.

- Random sequences of add / upsert / delete / compact / reopen / search, valid and invalid, against a plain
  in-memory model: an accepted call matches the model; a rejected call raises an embedlab error and changes
  nothing (count, get and search results identical).
- Random filter ASTs: the string form parses back to the same AST, and a filtered search over a collection
  returns exactly the rows a Python evaluation of the same AST keeps.

Bounded by the ``ci`` profile in ``tests/conftest.py`` (examples, steps, no deadline); ``benchmarks/reliability.py``
runs the same machine for longer.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from embedlab.errors import EmbedlabError
from embedlab.index import Collection, Filter

DIM = 4
IDS = [f"d{i}" for i in range(24)]
POS = ("noun", "verb", "adj")
TAGS = ("a", "b", "c")

# ---------------------------------------------------------------- metadata and filters
metadata_rows = st.fixed_dictionaries({}, optional={
    "pos": st.sampled_from(POS),
    "n": st.integers(0, 4),
    "w": st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
    "flag": st.booleans(),
    "tags": st.lists(st.sampled_from(TAGS), max_size=3, unique=True),
})

leaves = st.one_of(
    st.builds(Filter.eq, st.just("pos"), st.sampled_from(POS)),
    st.builds(Filter.ne, st.just("pos"), st.sampled_from(POS)),
    st.builds(Filter.in_, st.just("pos"), st.lists(st.sampled_from(POS), min_size=1, max_size=3)),
    st.builds(Filter.eq, st.just("n"), st.integers(0, 4)),
    st.builds(Filter.in_, st.just("n"), st.lists(st.integers(0, 4), min_size=1, max_size=3)),
    st.builds(Filter.eq, st.just("flag"), st.booleans()),
    st.builds(lambda lo, hi: Filter.range("n", ge=lo, lt=hi), st.integers(0, 4), st.integers(0, 5)),
    st.builds(lambda lo: Filter.range("w", gt=lo), st.sampled_from([0.0, 0.3, 0.5, 0.9])),
    st.builds(lambda hi: Filter.range("w", le=hi), st.sampled_from([0.0, 0.25, 0.6, 1.0])),
    st.builds(Filter.contains, st.just("tags"), st.sampled_from(TAGS)),
    st.builds(Filter.exists, st.sampled_from(["pos", "n", "w", "flag", "tags"])),
)
filters = st.recursive(leaves, lambda inner: st.one_of(
    st.builds(lambda a, b: a & b, inner, inner),
    st.builds(lambda a, b: a | b, inner, inner),
    st.builds(lambda a: ~a, inner),
), max_leaves=8)


def evaluate(node: dict, meta: dict) -> bool:
    """The reference meaning of a filter (its ``to_dict`` form) on one metadata dict, written independently."""
    op = node["op"]
    if op == "and":
        return all(evaluate(c, meta) for c in node["children"])
    if op == "or":
        return any(evaluate(c, meta) for c in node["children"])
    if op == "not":
        return not evaluate(node["child"], meta)
    field = node["field"]
    if field not in meta:
        return False  # a comparison on a missing field is false (exists included)
    value = meta[field]
    if op == "exists":
        return True
    if op == "==":
        return type(value) is type(node["value"]) and value == node["value"]
    if op == "!=":
        return not (type(value) is type(node["value"]) and value == node["value"])
    if op == "in":
        return any(type(value) is type(v) and value == v for v in node["values"])
    if op == "contains":
        return node["value"] in value
    if op == "range":
        ok = True
        if node["lower"] is not None:
            ok &= value >= node["lower"] if node["include_lower"] else value > node["lower"]
        if node["upper"] is not None:
            ok &= value <= node["upper"] if node["include_upper"] else value < node["upper"]
        return ok
    raise AssertionError(f"unknown op {op}")


@given(filters, st.lists(metadata_rows, min_size=1, max_size=8))
def test_filter_text_and_dict_forms_round_trip(f, rows):
    assert Filter.from_dict(f.to_dict()) == f
    text = Filter.parse(f.to_text())  # the same meaning; one-sided ranges of a field and-ed together read back as one Range
    assert Filter.parse(text.to_text()) == text
    assert [evaluate(text.to_dict(), m) for m in rows] == [evaluate(f.to_dict(), m) for m in rows]


@pytest.fixture(scope="module")
def tagged():
    """A flat collection of 40 rows with random (partly missing) metadata of every field type."""
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(40):
        meta = {}
        if rng.random() < 0.8:
            meta["pos"] = POS[rng.integers(3)]
        if rng.random() < 0.8:
            meta["n"] = int(rng.integers(0, 5))
        if rng.random() < 0.8:
            meta["w"] = float(rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]))
        if rng.random() < 0.7:
            meta["flag"] = bool(rng.random() < 0.5)
        if rng.random() < 0.7:
            meta["tags"] = sorted({TAGS[j] for j in rng.integers(0, 3, size=int(rng.integers(0, 3)))})
        rows.append(meta)
    folder = Path(tempfile.mkdtemp()) / "tagged"
    schema = {"pos": "str", "n": "int", "w": "float", "flag": "bool", "tags": "list[str]"}
    col = Collection.create(folder, dim=DIM, metric="ip", index="flat", schema=schema)
    col.add([f"r{i}" for i in range(40)], rng.normal(size=(40, DIM)).astype(np.float32), metadata=rows)
    yield col, rows
    col.close()
    shutil.rmtree(folder.parent)


@given(filters)
def test_filtered_search_keeps_exactly_what_python_keeps(tagged, f):
    col, rows = tagged
    want = {f"r{i}" for i, meta in enumerate(rows) if evaluate(f.to_dict(), meta)}
    hits = col.search(np.ones((1, DIM), np.float32), k=len(rows), filter=f)
    assert set(hits[0].ids.tolist()) == want
    assert set(col.search(np.ones((1, DIM), np.float32), k=len(rows), filter=f.to_text())[0].ids.tolist()) == want


# ---------------------------------------------------------------- the Collection API against a model
vectors_of = st.lists(st.integers(-3, 3), min_size=DIM, max_size=DIM).map(lambda v: np.array(v, np.float32))


class CollectionMachine(RuleBasedStateMachine):
    """One flat ``ip`` collection driven by random calls; ``model`` is what it must hold."""

    @initialize()
    def start(self):
        self.folder = Path(tempfile.mkdtemp()) / "c"
        self.col = Collection.create(self.folder, dim=DIM, metric="ip", index="flat")
        self.model: dict[str, tuple[np.ndarray, dict]] = {}

    def teardown(self):
        self.col.close()
        shutil.rmtree(self.folder.parent, ignore_errors=True)

    # -- helpers
    def snapshot(self):
        ids = sorted(self.model)
        got = self.col.get(ids) if ids else []
        hits = self.col.search(np.ones((1, DIM), np.float32), k=5)
        return (self.col.count(), [(g["id"], g["vector"].tolist(), g["metadata"]) for g in got],
                hits.ids.tolist(), hits.scores.tolist())

    def rejected(self, call):
        before = self.snapshot()
        with pytest.raises(EmbedlabError):
            call()
        assert self.snapshot() == before

    # -- writes that must succeed
    @rule(batch=st.lists(st.tuples(st.sampled_from(IDS), vectors_of, metadata_rows), min_size=1, max_size=4,
                         unique_by=lambda t: t[0]))
    def add(self, batch):
        if any(i in self.model for i, _, _ in batch):
            self.rejected(lambda: self.col.add([b[0] for b in batch], np.stack([b[1] for b in batch]),
                                               metadata=[b[2] for b in batch]))
            return
        self.col.add([b[0] for b in batch], np.stack([b[1] for b in batch]), metadata=[b[2] for b in batch])
        self.model.update({i: (v, m) for i, v, m in batch})

    @rule(batch=st.lists(st.tuples(st.sampled_from(IDS), vectors_of, metadata_rows), min_size=1, max_size=4,
                         unique_by=lambda t: t[0]))
    def upsert(self, batch):
        self.col.upsert([b[0] for b in batch], np.stack([b[1] for b in batch]), metadata=[b[2] for b in batch])
        self.model.update({i: (v, m) for i, v, m in batch})

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete(self, data):
        ids = data.draw(st.lists(st.sampled_from(sorted(self.model)), min_size=1, max_size=3, unique=True))
        self.col.delete(ids)
        for i in ids:
            del self.model[i]

    @rule()
    def compact(self):
        self.col.compact()

    @rule()
    def reopen(self):
        self.col.close()
        self.col = Collection.open(self.folder)

    # -- writes that must be rejected, leaving everything as it was
    @rule(i=st.sampled_from(IDS), v=vectors_of)
    def duplicate_ids_in_one_batch(self, i, v):
        self.rejected(lambda: self.col.upsert([i, i], np.stack([v, v])))

    @rule(i=st.sampled_from(IDS), bad=st.sampled_from([np.nan, np.inf, -np.inf]))
    def non_finite_vector(self, i, bad):
        v = np.ones((1, DIM), np.float32)
        v[0, 1] = bad
        self.rejected(lambda: self.col.upsert([i], v))

    @rule(i=st.sampled_from(IDS), width=st.sampled_from([DIM - 1, DIM + 1]))
    def wrong_width(self, i, width):
        self.rejected(lambda: self.col.upsert([i], np.ones((1, width), np.float32)))

    @rule(i=st.sampled_from(IDS), v=vectors_of)
    def rows_and_ids_disagree(self, i, v):
        self.rejected(lambda: self.col.upsert([i], np.stack([v, v])))

    @rule(i=st.sampled_from([f"x{j}" for j in range(3)]))
    def delete_unknown(self, i):
        self.rejected(lambda: self.col.delete([i]))

    @rule(text=st.sampled_from(['pos ==', 'n >>= 2', '(pos == "noun"', 'nope == 1 and', '"a" == pos']))
    def malformed_filter(self, text):
        with pytest.raises(EmbedlabError):
            self.col.search(np.ones((1, DIM), np.float32), k=3, filter=text)

    # -- what must always hold
    @invariant()
    def matches_the_model(self):
        if not hasattr(self, "col"):
            return
        assert self.col.count() == len(self.model)
        ids = sorted(self.model)
        for got in self.col.get(ids) if ids else []:
            vector, meta = self.model[got["id"]]
            np.testing.assert_array_equal(got["vector"], vector)
            assert got["metadata"] == meta
        query = np.array([[1, 2, -1, 0.5]], np.float32)
        k = 5
        hits = self.col.search(query, k=k)[0]
        scores = {i: float(v @ query[0]) for i, (v, _) in self.model.items()}
        best = sorted(scores.values(), reverse=True)[:k]
        assert len(hits.ids) == len(best)
        for i, s in zip(hits.ids.tolist(), hits.scores.tolist()):  # a valid top-k: right scores, k best values
            assert s == pytest.approx(scores[i], abs=1e-5)
        np.testing.assert_allclose(sorted(hits.scores.tolist(), reverse=True), best, atol=1e-5)


TestCollectionMachine = CollectionMachine.TestCase
TestCollectionMachine.settings = settings(stateful_step_count=30)
