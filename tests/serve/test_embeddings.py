"""POST /v1/embeddings: OpenAI's request and response, checked against the library and the official client."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.serve.conftest import MODEL

TEXTS = ["binary quantization of embeddings", "a cat sat on the mat", "theoretical limits of retrieval"]


def test_vectors_match_the_library(client, encoder):
    r = client.post("/v1/embeddings", json={"input": TEXTS, "model": MODEL})
    assert r.status_code == 200, r.text
    body = r.json()
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    assert [d["index"] for d in body["data"]] == [0, 1, 2] and body["model"] == MODEL and body["object"] == "list"
    np.testing.assert_allclose(got, encoder.encode(TEXTS), atol=1e-5)
    tokens = sum(len(i) for i in encoder.tokenizer(TEXTS)["input_ids"])
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens} and body["truncated"] == []


def test_single_string_base64_and_dimensions(client, encoder):
    r = client.post("/v1/embeddings", json={"input": TEXTS[0], "encoding_format": "base64", "dimensions": 64})
    assert r.status_code == 200, r.text
    (item,) = r.json()["data"]
    vec = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
    want = encoder.encode([TEXTS[0]], dim=64)[0]
    np.testing.assert_allclose(vec, want, atol=1e-5)
    assert abs(np.linalg.norm(vec) - 1) < 1e-5


def test_token_id_inputs_are_the_models_vocabulary(client, encoder):
    ids = encoder.tokenizer(TEXTS[:2], add_special_tokens=False)["input_ids"]
    one = client.post("/v1/embeddings", json={"input": ids[0]}).json()["data"]
    many = client.post("/v1/embeddings", json={"input": ids}).json()["data"]
    want = encoder.encode(TEXTS[:2])
    np.testing.assert_allclose(np.array(one[0]["embedding"]), want[0], atol=1e-5)
    np.testing.assert_allclose(np.array([d["embedding"] for d in many]), want, atol=1e-5)
    r = client.post("/v1/embeddings", json={"input": [[1, 2, 10**9]]})
    assert r.status_code == 400 and "token ids in [0, 30522)" in r.json()["error"]["message"]


def test_overlong_input_is_truncated_and_reported(make_app, encoder):
    from fastapi.testclient import TestClient

    long = " ".join(["retrieval"] * 600)
    with TestClient(make_app()) as c:
        body = c.post("/v1/embeddings", json={"input": ["short", long]}).json()
        assert body["truncated"] == [1]
        assert body["usage"]["prompt_tokens"] == 3 + encoder.max_length
    with TestClient(make_app(truncate="error")) as c:
        r = c.post("/v1/embeddings", json={"input": ["short", long]})
        assert r.status_code == 400
        assert r.json()["error"] == {"type": "invalid_request_error", "param": "input", "message": pytest.approx(
            r.json()["error"]["message"])}
        assert "input[1] must have at most 256 tokens" in r.json()["error"]["message"]


@pytest.mark.parametrize("payload, status, match", [
    ({"input": "x", "model": "nope"}, 404, "served models ['all-MiniLM-L6-v2'], got 'nope'"),
    ({"input": "x", "dimensions": 385}, 400, "dimensions must be at most 384"),
    ({"input": []}, 400, "at least one text"),
    ({"input": "x", "encoding": "float"}, 422, "encoding: Extra inputs are not permitted"),
    ({"input": 3}, 422, "input"),
])
def test_bad_requests_get_clear_errors(client, payload, status, match):
    r = client.post("/v1/embeddings", json=payload)
    assert r.status_code == status, r.text
    assert set(r.json()["error"]) == {"type", "message", "param"}
    assert match in r.json()["error"]["message"]


def test_limits_answer_413(make_app):
    from fastapi.testclient import TestClient

    with TestClient(make_app(max_inputs=4, max_request_tokens=50, max_body_bytes=2000)) as c:
        r = c.post("/v1/embeddings", json={"input": ["a"] * 5})
        assert r.status_code == 413 and "at most 4 items" in r.json()["error"]["message"]
        r = c.post("/v1/embeddings", json={"input": ["word " * 30, "word " * 30]})
        assert r.status_code == 413 and "at most 50 tokens" in r.json()["error"]["message"]
        r = c.post("/v1/embeddings", json={"input": "x" * 5000})
        assert r.status_code == 413 and "at most 2000 bytes" in r.json()["error"]["message"]
        chunks = (b'{"input": "' + b"x" * 1500, b"y" * 1500 + b'"}')
        r = c.post("/v1/embeddings", content=iter(chunks), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"
        assert c.post("/v1/embeddings", json={"input": "still fine"}).status_code == 200


def test_models_lists_every_served_model(make_app, encoder):
    from fastapi.testclient import TestClient

    from embedlab.serve import ModelSpec

    app = make_app(models={MODEL: ModelSpec(), "second": ModelSpec()})
    app.state.server.models["second"].encoder  # loaded by create_app (same folder, its own Encoder)
    with TestClient(app) as c:
        cards = c.get("/v1/models").json()["data"]
        assert [m["id"] for m in cards] == [MODEL, "second"] and cards[0]["dim"] == 384
        a = c.post("/v1/embeddings", json={"input": "x", "model": "second"}).json()["data"][0]["embedding"]
        b = c.post("/v1/embeddings", json={"input": "x"}).json()["data"][0]["embedding"]
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_the_official_openai_client_works_unchanged(live_url, encoder):
    import openai

    client = openai.OpenAI(base_url=live_url + "/v1", api_key="unused", max_retries=0, timeout=60)
    got = client.embeddings.create(model=MODEL, input=TEXTS)  # the client asks for base64 and decodes it
    vectors = np.array([d.embedding for d in got.data], dtype=np.float32)
    np.testing.assert_allclose(vectors, encoder.encode(TEXTS), atol=1e-5)
    assert got.usage.prompt_tokens > 0 and got.model == MODEL
    short = client.embeddings.create(model=MODEL, input="hello", dimensions=32, encoding_format="float")
    assert len(short.data[0].embedding) == 32
    assert [m.id for m in client.models.list()] == [MODEL]
    with pytest.raises(openai.NotFoundError, match="served models"):
        client.embeddings.create(model="gpt-nope", input="x")
