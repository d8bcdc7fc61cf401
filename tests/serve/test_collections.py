"""Collections over HTTP: the library's behaviour, its errors as 4xx, and nothing changed by a failed call."""

from __future__ import annotations

import numpy as np
import pytest

PAPERS = [("nv-embed", "NV-Embed trains LLMs as generalist embedding models", 2024, ["training"]),
          ("limit", "theoretical limits of embedding-based retrieval", 2025, ["theory"]),
          ("binary", "binary and scalar quantization of embeddings", 2024, ["compression"]),
          ("cats", "a cat sat on the mat", 2019, ["pets"])]


def add_papers(c, name="papers", **create):
    r = c.post("/v1/collections", json={"name": name, "dim": 384, **create})
    assert r.status_code == 201, r.text
    r = c.post(f"/v1/collections/{name}/documents", json={
        "ids": [p[0] for p in PAPERS], "texts": [p[1] for p in PAPERS],
        "metadata": [{"year": p[2], "tags": p[3]} for p in PAPERS]})
    assert r.status_code == 200 and r.json() == {"count": 4, "total": 4}, r.text


def search(c, name="papers", **body):
    r = c.post(f"/v1/collections/{name}/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_lifecycle_and_filtered_search_match_the_library(client, encoder, tmp_path):
    from embedlab import Collection

    add_papers(client)
    info = client.get("/v1/collections/papers").json()
    assert info["count"] == 4 and info["model"] == "all-MiniLM-L6-v2" and info["index"] == "hnsw"
    assert [c["name"] for c in client.get("/v1/collections").json()["collections"]] == ["papers"]
    (res,) = search(client, queries=["compressing vectors"], k=2, filter='year >= 2024 and not tags contains "theory"')
    with Collection.create(tmp_path / "lib", dim=384, index="hnsw", encoder=encoder) as col:
        col.add([p[0] for p in PAPERS], texts=[p[1] for p in PAPERS],
                metadata=[{"year": p[2], "tags": p[3]} for p in PAPERS])
        want = col.search(["compressing vectors"], k=2, filter='year >= 2024 and not tags contains "theory"')
    assert [h["id"] for h in res["hits"]] == list(want.ids[0])
    np.testing.assert_allclose([h["score"] for h in res["hits"]], want.scores[0], atol=1e-5)
    assert res["hits"][0]["text"] == "binary and scalar quantization of embeddings"
    assert res["hits"][0]["metadata"] == {"year": 2024, "tags": ["compression"]} and res["strategy"]
    assert client.delete("/v1/collections/papers").status_code == 204
    assert client.get("/v1/collections/papers").status_code == 404
    assert client.get("/v1/collections").json() == {"collections": []}


def test_vectors_upsert_get_and_delete(client, encoder):
    vectors = encoder.encode(["alpha", "beta", "gamma"])
    assert client.post("/v1/collections", json={"name": "v", "dim": 384, "index": "flat"}).status_code == 201
    r = client.post("/v1/collections/v/documents", json={"ids": [1, 2, 3], "vectors": vectors.tolist(),
                                                         "metadata": [{"n": 1}, {"n": 2}, {"n": 3}]})
    assert r.json() == {"count": 3, "total": 3}
    (res,) = search(client, "v", vectors=[vectors[1].tolist()], k=1)
    assert res["hits"][0]["id"] == 2 and res["hits"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    (res,) = search(client, "v", queries=["gamma"], k=1)  # texts through the collection's model
    assert res["hits"][0]["id"] == 3
    r = client.post("/v1/collections/v/documents", json={"ids": [2], "texts": ["delta"], "upsert": True})
    assert r.json() == {"count": 1, "total": 3}
    assert client.get("/v1/collections/v/documents/2").json() == {"id": 2, "text": "delta", "metadata": {}}
    r = client.post("/v1/collections/v/delete", json={"filter": "n >= 3"})
    assert r.json() == {"count": 1, "total": 2}
    r = client.post("/v1/collections/v/delete", json={"ids": [1]})
    assert r.json() == {"count": 1, "total": 1}


def test_a_failed_write_changes_nothing(client):
    add_papers(client)
    before = client.get("/v1/collections/papers").json()["count"]
    cases = [
        ({"ids": ["x"], "vectors": [[0.1] * 383]}, 400, "must have shape (1, 384), got (1, 383)"),
        ({"ids": ["limit"], "texts": ["again"]}, 409, "limit"),
        ({"ids": ["x", "y"], "texts": ["one"]}, 400, "texts must hold one entry per id (2), got 1"),
        ({"ids": ["x"], "texts": ["t"], "vectors": [[0.0] * 384]}, 400, "exactly one of texts or vectors"),
        ({"ids": ["x"], "texts": ["t"], "metadata": [{"year": "not a year"}]}, 400, "year"),
        ({"ids": ["x"], "texts": ["t"], "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
    ]
    for body, status, match in cases:
        r = client.post("/v1/collections/papers/documents", json=body)
        assert r.status_code == status, (body, r.text)
        assert match in r.json()["error"]["message"], r.json()
    assert client.get("/v1/collections/papers").json()["count"] == before
    (res,) = search(client, queries=["theory"], k=10)
    assert sorted(h["id"] for h in res["hits"]) == sorted(p[0] for p in PAPERS)


@pytest.mark.parametrize("body, status, match", [
    ({"queries": ["x"], "filter": "year >>= 3"}, 400, "Filter.parse"),
    ({"queries": ["x"], "filter": "colour == 'red'"}, 400, "colour"),
    ({"queries": ["x"], "k": 10**6}, 400, "k must be"),
    ({"vectors": [[0.0] * 3]}, 400, "384"),
    ({"vectors": [[0.0] * 384, [0.0] * 383]}, 400, "equally long rows"),
    ({"queries": ["x"], "vectors": [[0.0] * 384]}, 400, "exactly one of queries"),
    ({"queries": ["x"], "k": 0}, 422, "k"),
])
def test_bad_searches_get_clear_errors(client, body, status, match):
    add_papers(client)
    r = client.post("/v1/collections/papers/search", json=body)
    assert r.status_code == status, r.text
    assert match in r.json()["error"]["message"]


def test_create_errors(client):
    assert client.post("/v1/collections", json={"name": "a", "dim": 384}).status_code == 201
    r = client.post("/v1/collections", json={"name": "a", "dim": 384})
    assert r.status_code == 409 and "already exists" in r.json()["error"]["message"]
    r = client.post("/v1/collections", json={"name": "../etc", "dim": 384})
    assert r.status_code == 422 and r.json()["error"]["param"] == "name"
    r = client.post("/v1/collections", json={"name": "b", "dim": 384, "params": {"M": -1}})
    assert r.status_code == 400 and "M" in r.json()["error"]["message"]
    r = client.post("/v1/collections", json={"name": "c", "dim": 384, "model": "nope"})
    assert r.status_code == 404
    r = client.post("/v1/collections", json={"name": "d", "dim": 384, "schema": {"s": "str"}, "indexes": ["t"]})
    assert r.status_code == 400 and "indexes must name fields declared in schema=" in r.json()["error"]["message"]
    assert [c["name"] for c in client.get("/v1/collections").json()["collections"]] == ["a"]
    r = client.post("/v1/collections", json={"name": "e", "dim": 384, "schema": {"s": "str"}, "indexes": []})
    assert r.status_code == 201  # no payload index: filters scan


def test_vector_only_collection_of_another_width(client):
    assert client.post("/v1/collections", json={"name": "small", "dim": 8, "index": "flat"}).status_code == 201
    assert client.get("/v1/collections/small").json()["model"] is None
    client.post("/v1/collections/small/documents", json={"ids": ["a"], "vectors": [[1.0] + [0.0] * 7]})
    r = client.post("/v1/collections/small/search", json={"queries": ["text"]})
    assert r.status_code == 400 and "has no model this server serves" in r.json()["error"]["message"]


def test_compressed_and_multivector_collections(client, encoder):
    add_papers(client, "binary", index="flat", params={"codec": "binary", "rescore": "float32", "oversample": 4})
    (res,) = search(client, "binary", queries=["compressing vectors"], k=1)
    assert res["hits"][0]["id"] == "binary"
    assert client.get("/v1/collections/binary").json()["stats"]["ram_bytes_per_vector"] < 384 * 4
    add_papers(client, "late", index="flat", metric="ip", multivector={"candidates": 10})
    assert client.get("/v1/collections/late").json()["multivector"] is True
    (res,) = search(client, "late", queries=["compressing vectors"], k=2, filter="year >= 2024")
    assert res["hits"][0]["id"] == "binary" and res["strategy"].endswith("+rerank")
    assert {h["metadata"]["year"] >= 2024 for h in res["hits"]} == {True}


def test_collections_survive_a_restart(make_app, tmp_path):
    from fastapi.testclient import TestClient

    with TestClient(make_app()) as c:
        add_papers(c)
    with TestClient(make_app()) as c:  # the same data folder, opened again
        assert c.get("/v1/collections/papers").json()["count"] == 4
        (res,) = search(c, queries=["a cat"], k=1)
        assert res["hits"][0]["id"] == "cats"


def test_a_500_never_leaks_internals(make_app, monkeypatch, caplog):
    from fastapi.testclient import TestClient

    app = make_app()
    monkeypatch.setattr(app.state.server.store, "get",
                        lambda name: (_ for _ in ()).throw(RuntimeError("secret /etc/passwd")))
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/v1/collections/papers")
    assert r.status_code == 500
    assert r.json() == {"error": {"type": "server_error", "message": "internal server error; the server log has the "
                                  "details.", "param": None}}
    assert "secret" in caplog.text  # the traceback goes to the log


def test_funnel_collection_over_http(client):
    """A funnel collection created with its params, searched with a per-request oversample, against exact search."""
    import numpy as np

    from embedlab.index import exact_search

    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    r = client.post("/v1/collections", json={"name": "f", "dim": 16, "index": "flat",
                                             "params": {"funnel": [4, 16], "oversample": 2}})
    assert r.status_code == 201, r.text
    assert client.post("/v1/collections/f/documents", json={"ids": list(range(200)), "vectors": x.tolist()}).status_code in (200, 201)
    _, exact = exact_search(x[:2], x, 3)
    r = client.post("/v1/collections/f/search", json={"vectors": x[:2].tolist(), "k": 3, "oversample": 67})
    assert r.status_code == 200, r.text
    assert [[h["id"] for h in res["hits"]] for res in r.json()["results"]] == exact.tolist()
    r = client.post("/v1/collections", json={"name": "g", "dim": 16, "params": {"funnel": [16, 16]}})
    assert r.status_code == 400 and "smaller than the full dimension" in r.json()["error"]["message"]
    r = client.post("/v1/collections/f/search", json={"vectors": x[:1].tolist(), "oversample": 0})
    assert r.status_code == 422
    r = client.post("/v1/collections", json={"name": "h", "dim": 16, "index": "flat"})
    r = client.post("/v1/collections/h/search", json={"vectors": x[:1].tolist(), "oversample": 4})
    assert r.status_code == 400 and "oversample applies" in r.json()["error"]["message"]


def test_hybrid_search_over_http_matches_the_library(client, encoder, tmp_path):
    """A text_index collection written with texts; sparse and hybrid searches equal the library's on the same folder."""
    from embedlab.index import Collection

    texts = ["a red apple on the table", "green banana bread", "the apple tree grows", "quantum field theory",
             "bread and butter", "a theory of everything"]
    r = client.post("/v1/collections", json={"name": "h", "dim": encoder.dim, "index": "flat", "text_index": True})
    assert r.status_code == 201, r.text
    r = client.post("/v1/collections/h/documents", json={"ids": list(range(6)), "texts": texts})
    assert r.status_code == 200, r.text
    got = {}
    for mode in ("sparse", "hybrid"):
        r = client.post("/v1/collections/h/search", json={"queries": ["apple theory"], "k": 3, "mode": mode,
                                                          "fusion": "dbsf", "weights": [0.5, 0.5]} if mode == "hybrid"
                        else {"queries": ["apple theory"], "k": 3, "mode": mode})
        assert r.status_code == 200, r.text
        got[mode] = r.json()["results"][0]
    assert got["sparse"]["strategy"] == "bm25" and got["hybrid"]["strategy"].startswith("hybrid:dbsf(")
    root = client.app.state.server.store.root
    with Collection.open(root / "h", readonly=True, encoder=encoder) as col:
        sparse = col.search(["apple theory"], 3, mode="sparse")
        hybrid = col.search(["apple theory"], 3, mode="hybrid", fusion="dbsf",
                            weights=(0.5, 0.5))
    assert [h["id"] for h in got["sparse"]["hits"]] == [i for i in sparse.ids[0] if i is not None]
    assert [h["id"] for h in got["hybrid"]["hits"]] == [i for i in hybrid.ids[0] if i is not None]
    r = client.post("/v1/collections/h/search", json={"queries": ["x"], "mode": "hybrid", "weights": [1, 2, 3]})
    assert r.status_code == 400 and "weights must be 2" in r.json()["error"]["message"]
    r = client.post("/v1/collections/h/search", json={"queries": ["x"], "mode": "lexical"})
    assert r.status_code == 422
    client.post("/v1/collections", json={"name": "plain", "dim": encoder.dim, "index": "flat"})
    r = client.post("/v1/collections/plain/search", json={"queries": ["x"], "mode": "sparse"})
    assert r.status_code == 400 and "text_index=True" in r.json()["error"]["message"]


def test_reranked_search_over_http_matches_the_library(make_app, encoder, cross_encoder):
    """A served cross-encoder named in rerank: the same hits and scores as Collection.search(rerank=) on the same
    folder, from texts or from vectors beside their texts; clear 4xx for what it cannot do."""
    from fastapi.testclient import TestClient

    from embedlab.index import Collection
    from embedlab.serve import ModelSpec

    texts = ["a red apple on the table", "green banana bread", "the apple tree grows", "quantum field theory",
             "bread and butter", "a theory of everything"]
    app = make_app(rerankers={"ce": ModelSpec()}, max_rerank_pairs=12, reranker_models={"ce": cross_encoder})
    with TestClient(app) as c:
        assert c.post("/v1/collections", json={"name": "r", "dim": encoder.dim, "index": "flat"}).status_code == 201
        assert c.post("/v1/collections/r/documents", json={"ids": list(range(6)), "texts": texts}).status_code == 200
        cards = {m["id"]: m for m in c.get("/v1/models").json()["data"]}
        assert cards["ce"]["task"] == "rerank" and cards["all-MiniLM-L6-v2"]["task"] == "embed"
        query = "apple theory"
        by_text = search(c, "r", queries=[query], k=3, rerank="ce", rerank_candidates=6)[0]
        q = encoder.encode([query], prompt_name="query") if "query" in (encoder.prompts or {}) else encoder.encode([query])
        by_vector = search(c, "r", queries=[query], vectors=q.tolist(), k=3, rerank="ce", rerank_candidates=6)[0]
        with Collection.open(app.state.server.store.root / "r", readonly=True, encoder=encoder) as col:
            lib = col.search([query], 3, rerank=cross_encoder, rerank_candidates=6)
        want = [i for i in lib.ids[0] if i is not None]
        assert by_text["strategy"] == lib.strategy[0] and by_text["strategy"].endswith("+rerank(CrossEncoder)")
        for got in (by_text, by_vector):
            assert [h["id"] for h in got["hits"]] == want
            np.testing.assert_allclose([h["score"] for h in got["hits"]], lib.scores[0][: len(want)], rtol=1e-5)
        plain = search(c, "r", queries=[query], k=3)[0]
        assert not plain["strategy"].endswith("+rerank(CrossEncoder)")
        fused = search(c, "r", queries=[query], k=3, rerank="ce", rerank_candidates=6, rerank_weights=[0.6, 0.4])[0]
        with Collection.open(app.state.server.store.root / "r", readonly=True, encoder=encoder) as col:
            lib = col.search([query], 3, rerank=cross_encoder, rerank_candidates=6, rerank_weights=(0.6, 0.4))
        assert fused["strategy"] == lib.strategy[0] and fused["strategy"].endswith("+rerank-fused(CrossEncoder)")
        assert [h["id"] for h in fused["hits"]] == [i for i in lib.ids[0] if i is not None]
        np.testing.assert_allclose([h["score"] for h in fused["hits"]], lib.scores[0][: len(fused["hits"])], rtol=1e-5)

        def error(body, status):
            r = c.post("/v1/collections/r/search", json=body)
            assert r.status_code == status, r.text
            return r.json()["error"]["message"]

        assert "served rerankers (['ce'])" in error({"queries": [query], "rerank": "nope"}, 404)
        assert "needs the query texts" in error({"vectors": q.tolist(), "rerank": "ce"}, 400)
        assert "at most 12 (query, candidate) pairs" in error({"queries": [query] * 2, "rerank": "ce",
                                                               "rerank_candidates": 7}, 413)
        assert error({"queries": [query], "rerank": "ce", "rerank_candidates": 0}, 422)
        assert "without rerank" in error({"queries": [query], "rerank_weights": [1, 1]}, 400)
        assert "rerank_weights must be 2" in error({"queries": [query], "rerank": "ce", "rerank_candidates": 6,
                                                     "rerank_weights": [1, -1]}, 400)
        assert c.get("/v1/collections/r").json()["count"] == 6
