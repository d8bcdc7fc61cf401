"""The Milvus backend (``Collection.create(..., backend="milvus")``) on a real embedded Milvus Lite, and on a real
``milvus-lite server`` on loopback: filter translation checked against the local evaluator on random filters, the
lifecycle next to a local collection, codec mapping, multi-vector search, and the failure paths (an address that
does not answer, what Milvus cannot express)."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given

from embedlab.errors import ConflictError, InvalidInputError, NotFoundError, UnavailableError, UnsupportedError
from embedlab.index import Collection, Filter
from embedlab.index.filters.ast import And, Not, Or
from embedlab.index.filters.milvus import to_milvus

_spec = importlib.util.spec_from_file_location("filter_cases", Path(__file__).with_name("filter_cases.py"))
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)
D, SCHEMA, _items, filters = cases.D, cases.SCHEMA, cases._items, cases.filters


@pytest.fixture(scope="module", params=["typed", "json"])
def pair(request, tmp_path_factory):
    """The same items in a local collection and a Milvus one, whose fields are declared (typed columns) or not
    (one JSON field; the types are inferred from the first batch, as locally)."""
    root = tmp_path_factory.mktemp("pair")
    x, meta = _items()
    schema = SCHEMA if request.param == "typed" else None
    cols = [Collection.create(root / name, dim=D, index="flat", schema=schema, **extra)
            for name, extra in (("local", {}), ("milvus", {"backend": "milvus"}))]
    for c in cols:
        c.add([f"d{i:03d}" for i in range(len(x))], x, metadata=meta)
    assert cols[0].schema == cols[1].schema == SCHEMA
    assert bool(cols[1]._columns) == (request.param == "typed")
    yield cols
    for c in cols:
        c.close()


def _ids(col, f):
    items, cursor = col.scroll(f, limit=1000)
    assert cursor is None
    return [i["id"] for i in items]


@given(filters())
def test_random_filters_select_what_the_local_evaluator_selects(pair, f):
    local, milvus = pair
    assert _ids(milvus, f) == _ids(local, f), to_milvus(f)
    assert milvus.count(f) == local.count(f)


def test_negation_keeps_items_without_the_field_as_the_local_backend_does(pair):
    local, milvus = pair
    f = ~Filter.eq("s", "noun")
    missing = sum("s" not in m for m in _items()[1])
    assert milvus.count(f) == local.count(f) and milvus.count(~Filter.exists("s")) == missing > 0
    assert isinstance(f, Not) and isinstance(Filter.eq("s", "a") & Filter.eq("n", 1), And)
    assert isinstance(Filter.eq("s", "a") | Filter.eq("n", 1), Or)


def test_what_milvus_cannot_express_is_refused_never_dropped(pair):
    _, milvus = pair
    q = np.ones((1, D), np.float32)
    with pytest.raises(UnsupportedError, match="filter values must be finite for the Milvus backend, got inf"):
        milvus.search(q, 3, filter=Filter.range("f", lt=float("inf")))
    with pytest.raises(UnsupportedError, match="the query plan is Milvus's own"):
        milvus.plan(3)
    with pytest.raises(NotFoundError, match="filter field must be one of the collection's metadata fields"):
        milvus.count("nope == 1")
    with pytest.raises(InvalidInputError, match=r"filter value for 'n' must be an int"):
        milvus.search(q, 3, filter='n == "x"')


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_search_scores_payloads_and_paging_match_the_local_backend(tmp_path, metric):
    x, meta = _items(200, seed=1)
    q = np.random.default_rng(5).standard_normal((6, D)).astype(np.float32)
    cols = [Collection.create(tmp_path / b, dim=D, metric=metric, index="flat", backend=b) for b in ("local", "milvus")]
    for c in cols:
        c.add(list(range(200)), x, metadata=meta, texts=[f"text {i}" for i in range(200)])
    local, milvus = cols
    middle = float(np.median(local.search(q, 7).scores))
    for kwargs in ({}, {"filter": 'b == true'}, {"offset": 3}, {"min_score": middle}, {"include": ("text", "metadata", "vector")}):
        a, b = milvus.search(q, 7, **kwargs), local.search(q, 7, **kwargs)
        assert a.ids.tolist() == b.ids.tolist() and isinstance(a.ids[0, 0], int)
        assert np.isinf(a.scores).any() == ("min_score" in kwargs)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-5)
        if "include" in kwargs:
            assert [[p["text"] for p in row] for row in a.payload] == [[p["text"] for p in row] for row in b.payload]
            assert [[p["metadata"] for p in row] for row in a.payload] == [[p["metadata"] for p in row] for row in b.payload]
            np.testing.assert_allclose(a.payload[0][0]["vector"], b.payload[0][0]["vector"], rtol=1e-6)
        assert set(a.strategy) == {"milvus"}
    assert milvus.search(q[:0], 4).ids.shape == (0, 4)
    for c in cols:
        c.close()


def test_lifecycle_upsert_delete_update_scroll_reopen(tmp_path):
    x, _ = _items(50, seed=2)
    path = tmp_path / "m"
    with Collection.create(path, dim=D, backend="milvus", schema={"g": "int"}) as col:
        assert col.count() == 0 and col.search(x[:2], 3).ids.tolist() == [[None] * 3] * 2
        assert col.scroll() == ([], None) and col.id_kind is None
        col.add([f"k{i:02d}" for i in range(40)], x[:40], metadata=[{"g": i % 4} for i in range(40)])
        with pytest.raises(ConflictError, match=r"ids must not exist yet, got 1 existing \(first: 'k03'\)"):
            col.add(["new", "k03"], x[:2])
        assert not col.contains(["new"]).any()  # the refused batch left nothing behind
        col.upsert(["k00", "zz"], x[40:42], metadata=[{"g": 9}, {"g": 9, "extra": "yes"}])
        assert col.get(["k00"])[0]["metadata"] == {"g": 9}
        np.testing.assert_allclose(col.get(["k00"])[0]["vector"], x[40] / np.linalg.norm(x[40]), rtol=1e-5)
        assert col.delete(["k01", "k02"]) == 2 and col.delete(filter="g == 3") == 10
        with pytest.raises(NotFoundError, match=r"Collection.delete: ids must exist, got 1 unknown \(first: 'k01'\)"):
            col.delete(["k01"])
        col.update_metadata(["k04"], [{"g": None, "note": "kept"}])
        assert col.get(["k04"])[0]["metadata"] == {"note": "kept"}
        assert col.schema == {"g": "int", "extra": "str", "note": "str"}
        assert col.contains(["k04", "k01", "zz"]).tolist() == [True, False, True]
        pages, cursor = [], None
        while True:
            items, cursor = col.scroll(limit=7, cursor=cursor)
            pages.append([i["id"] for i in items])
            if cursor is None:
                break
        flat = [i for p in pages for i in p]
        assert flat == sorted(flat) and len(flat) == col.count() == 40 - 2 - 10 + 1 and max(map(len, pages)) == 7
        before = col.search(x[:5], 5, filter="g >= 1").ids.tolist()
    with Collection.open(path) as col:
        assert col.count() == 29 and col.schema["note"] == "str" and col.id_kind == "str"
        assert col.search(x[:5], 5, filter="g >= 1").ids.tolist() == before
        col.compact()
        assert col.count() == 29
    with Collection.open(path, readonly=True) as col:
        with pytest.raises(UnsupportedError, match="opened with readonly=True"):
            col.delete(["k04"])
        assert "Milvus Lite" in repr(col)


def test_codecs_map_to_milvus_index_types_or_are_refused(tmp_path):
    x, _ = _items(300, seed=3)
    for kind, params, index_type in (("hnsw", {"codec": "int8"}, "HNSW_SQ"), ("ivf", {"codec": "int8", "nlist": 8}, "IVF_SQ8"),
                                     ("hnsw", {}, "HNSW"), ("ivf", {"nlist": 8}, "IVF_FLAT"), ("flat", {}, "FLAT")):
        with Collection.create(tmp_path / f"{kind}{len(params)}", dim=D, index=kind, backend="milvus", **params) as col:
            col.add(list(range(300)), x)
            described = col._client.describe_index(col._name, "vector")
            assert described["index_type"] == index_type == col.stats()["index_type"]
            assert col.search(x[:20], 1).ids[:, 0].tolist() == list(range(20))  # each row finds itself
    for params, pattern in (({"codec": "pq:4,4"}, "codec must be one Milvus has an index for"),
                            ({"codec": "binary"}, "PQ, binary, float16, int4 and truncation codecs are local only"),
                            ({"codec": "int8", "index": "flat"}, "Milvus has no flat SQ8 index"),
                            ({"codec": "int8", "rescore": True, "index": "hnsw"}, "'rescore' is not available")):
        params = {"index": "hnsw", **params}
        with pytest.raises(UnsupportedError, match=pattern):
            Collection.create(tmp_path / "bad", dim=D, backend="milvus", **params)
        assert not (tmp_path / "bad").exists()
    with pytest.raises(InvalidInputError, match="uri, name and timeout are Milvus settings"):
        Collection.create(tmp_path / "bad", dim=D, uri="http://127.0.0.1:1")
    with pytest.raises(InvalidInputError, match=r"backend must be one of \['local', 'milvus'\]"):
        Collection.create(tmp_path / "bad", dim=D, backend="qdrant")


def test_multivector_collections_search_fdes_in_milvus_and_rerank_by_maxsim(tmp_path):
    from embedlab.types import MultiVectors

    rng = np.random.default_rng(4)
    lengths = rng.integers(3, 9, 120)
    tokens = rng.standard_normal((int(lengths.sum()), D)).astype(np.float32)
    tokens /= np.linalg.norm(tokens, axis=1, keepdims=True)
    docs = MultiVectors(tokens, np.concatenate([[0], np.cumsum(lengths)]))
    queries = MultiVectors(docs.vectors[: int(lengths[:4].sum())], docs.offsets[:5])
    options = {"k_sim": 3, "r_reps": 4, "candidates": 40, "seed": 1}
    cols = [Collection.create(tmp_path / b, dim=D, metric="ip", index="flat", multivector=options, backend=b)
            for b in ("local", "milvus")]
    for c in cols:
        c.add(list(range(120)), docs, metadata=[{"half": i < 60} for i in range(120)])
    local, milvus = cols
    for f in (None, "half == false"):
        a, b = milvus.search(queries, 5, filter=f), local.search(queries, 5, filter=f)
        assert a.ids.tolist() == b.ids.tolist()
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)
        assert set(a.strategy) == {"milvus+rerank"}
    assert milvus.search(queries, 1).ids[:, 0].tolist() == [0, 1, 2, 3]  # each query is a document: MaxSim finds it
    milvus.upsert([0], MultiVectors(docs.vectors[100:105], np.array([0, 5])))
    assert milvus.search(queries, 1).ids[0, 0] != 0 or milvus.count() == 120
    for c in cols:
        c.close()
    with Collection.open(tmp_path / "milvus") as col:  # the token rows come back from the manifest
        assert col.search(queries, 1).ids[1:, 0].tolist() == [1, 2, 3]


def test_ids_and_texts_longer_than_milvus_holds_are_refused(tmp_path):
    with Collection.create(tmp_path / "m", dim=D, backend="milvus") as col:
        with pytest.raises(InvalidInputError, match=r"texts\[0\] must be at most 65535 UTF-8 bytes"):
            col.add(["a"], np.ones((1, D), np.float32), texts=["é" * 40_000])
        assert col.count() == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_that_does_not_answer_fails_within_the_timeout(tmp_path):
    t = time.monotonic()
    with pytest.raises(UnavailableError, match=r"uri must name a Milvus server that answers within 2 s, got 'http://127.0.0.1:\d+'"):
        Collection.create(tmp_path / "refused", dim=D, backend="milvus", uri=f"http://127.0.0.1:{_free_port()}", timeout=2)
    assert time.monotonic() - t < 5 and not (tmp_path / "refused").exists()
    silent = socket.socket()  # accepts connections and never says a word
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        t = time.monotonic()
        with pytest.raises(UnavailableError, match="answers within 2 s"):
            Collection.create(tmp_path / "silent", dim=D, backend="milvus",
                              uri=f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=2)
        assert time.monotonic() - t < 8 and not (tmp_path / "silent").exists()
    finally:
        stop.set()
        thread.join()
        for c in held:
            c.close()
        silent.close()


def test_a_milvus_server_on_loopback_is_the_one_line_change(tmp_path):
    """``uri=`` pointed at a real ``milvus-lite server`` (the gRPC server a cluster speaks) instead of the embedded file."""
    port, log = _free_port(), tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(tmp_path / "data"),
                                   "--host", "127.0.0.1", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        uri, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
        while True:
            try:
                col = Collection.create(tmp_path / "c", dim=D, backend="milvus", uri=uri, name="served", timeout=5)
                break
            except UnavailableError:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.3)
        x, meta = _items(60, seed=6)
        col.add([f"d{i}" for i in range(60)], x, metadata=meta)
        assert col.search(x[:3], 1).ids[:, 0].tolist() == ["d0", "d1", "d2"]
        assert col.stats()["uri"] == uri and not (tmp_path / "c" / "milvus.db").exists()
        col.close()
        with pytest.raises(ConflictError, match="name must be a new Milvus collection, got 'served'"):
            Collection.create(tmp_path / "c2", dim=D, backend="milvus", uri=uri, name="served")
        with Collection.open(tmp_path / "c") as col:
            assert col.count() == 60
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_selective_filters_are_planned_exactly_and_broad_ones_on_the_graph(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3000, D)).astype(np.float32)
    q = rng.standard_normal((20, D)).astype(np.float32)
    with Collection.create(tmp_path / "m", dim=D, index="hnsw", M=8, backend="milvus") as col:
        col.add(list(range(3000)), x, metadata=[{"g": i % 100} for i in range(3000)])
        narrow = col.search(q, 10, filter="g == 3")  # 30 allowed: gathered and scored exactly
        one_by_one = [col.search(q[i : i + 1], 10, filter="g < 90") for i in range(len(q))]  # no gather to share
        assert col.search(q, 10, filter="g < 90").strategy == ("milvus_exact",) * len(q)  # 20 queries share one
    broad = type(narrow)(np.concatenate([h.ids for h in one_by_one]), np.concatenate([h.scores for h in one_by_one]),
                         tuple(s for h in one_by_one for s in h.strategy))
    assert set(narrow.strategy) == {"milvus_exact"} and set(broad.strategy) <= {"milvus", "milvus+exact"}
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    qu = q / np.linalg.norm(q, axis=1, keepdims=True)
    for hits, allowed in ((narrow, np.arange(3, 3000, 100)), (broad, np.flatnonzero(np.arange(3000) % 100 < 90))):
        truth = allowed[np.argsort(-(qu @ unit[allowed].T), axis=1)[:, :10]]
        found = np.array(hits.ids.tolist())
        assert np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]) >= 0.95
        assert np.isin(found, allowed).all()
