"""API keys: bearer tokens, scopes, per-collection grants, and the loopback rule without keys."""

from __future__ import annotations

import json
import logging

import pytest

from embedlab.errors import DataFormatError, InvalidInputError
from embedlab.serve.auth import find_key, load_keys, parse_keys

ADMIN, READER, ONE = "admin-key-0123456789abcdef", "reader-key-0123456789abcdef", "one-collection-key-0123456789"
KEYS = json.dumps({"keys": [{"key": ADMIN, "scopes": ["read", "write"], "name": "admin"},
                            {"key": READER, "scopes": ["read"], "name": "reader"},
                            {"key": ONE, "scopes": ["read", "write"], "collections": ["mine"], "name": "one"}]})


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def secured(make_app):
    from fastapi.testclient import TestClient

    with TestClient(make_app(keys=parse_keys(KEYS, "test keys"))) as c:
        yield c


def test_keys_are_required_and_checked(secured):
    r = secured.post("/v1/embeddings", json={"input": "x"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["type"] == "authentication_error"
    r = secured.post("/v1/embeddings", json={"input": "x"}, headers=bearer("wrong-key-0123456789abcdef"))
    assert r.status_code == 401 and "not known" in r.json()["error"]["message"]
    assert secured.post("/v1/embeddings", json={"input": "x"}, headers=bearer(READER)).status_code == 200
    assert secured.get("/healthz").status_code == 200  # probes need no key


def test_scopes_and_collection_grants(secured):
    r = secured.post("/v1/collections", json={"name": "mine", "dim": 384}, headers=bearer(READER))
    assert r.status_code == 403 and "lacks the 'write' scope" in r.json()["error"]["message"]
    for name in ("mine", "theirs"):
        assert secured.post("/v1/collections", json={"name": name, "dim": 384}, headers=bearer(ADMIN)).status_code == 201
    body = {"ids": ["a"], "texts": ["hello"]}
    assert secured.post("/v1/collections/mine/documents", json=body, headers=bearer(ONE)).status_code == 200
    r = secured.post("/v1/collections/theirs/documents", json=body, headers=bearer(ONE))
    assert r.status_code == 403 and "on collection 'theirs'" in r.json()["error"]["message"]
    listed = secured.get("/v1/collections", headers=bearer(ONE)).json()["collections"]
    assert [c["name"] for c in listed] == ["mine"]
    assert len(secured.get("/v1/collections", headers=bearer(READER)).json()["collections"]) == 2


def test_keys_never_reach_the_log(secured, caplog):
    with caplog.at_level(logging.DEBUG):
        secured.post("/v1/embeddings", json={"input": "x"}, headers=bearer(READER))
        secured.post("/v1/embeddings", json={"input": "x"}, headers=bearer(READER + "-wrong"))
    assert READER not in caplog.text


def test_find_key_compares_every_digest():
    keys = parse_keys(KEYS, "k")
    assert find_key(keys, READER).name == "reader" and find_key(keys, READER[:-1]) is None


@pytest.mark.parametrize("text, match", [
    ("{", "invalid JSON"),
    ('{"keys": {}}', 'a "keys" list'),
    ('{"keys": [{"key": "short"}]}', "at least 16 characters"),
    ('{"keys": [{"key": "0123456789abcdefgh", "scopes": ["admin"]}]}', "scopes within"),
    ('{"keys": [{"key": "0123456789abcdefgh", "role": "x"}]}', "no other fields"),
])
def test_bad_key_files_say_what_is_wrong(text, match):
    with pytest.raises(DataFormatError, match=match):
        parse_keys(text, "keys.json")


def test_keys_from_file_and_environment(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(KEYS)
    env = {"EMBEDLAB_API_KEYS": json.dumps({"keys": [{"key": "from-the-environment-0123"}]})}
    keys = load_keys(path, environ=env)
    assert [k.name for k in keys] == ["admin", "reader", "one", "key0"] and keys[-1].scopes == {"read"}


def test_without_keys_the_cli_refuses_to_leave_loopback(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("EMBEDLAB_API_KEYS", raising=False)
    result = cli("serve", "--data", tmp_path, "--host", "0.0.0.0")
    assert result.exit_code == 2
    assert "--host must be a loopback address without API keys, got '0.0.0.0'" in result.stderr
    with pytest.raises(InvalidInputError, match="NAME=PATH"):
        from embedlab.serve import ModelSpec

        ModelSpec.parse("just-a-path")


def test_the_cli_checks_its_rerankers(cli, tmp_path):
    from embedlab.serve import ModelSpec, Settings

    result = cli("serve", "--data", tmp_path, "--reranker", "ce=a", "--reranker", "ce=b")
    assert result.exit_code == 2 and "--reranker names must be distinct, got ['ce', 'ce']" in result.stderr
    result = cli("serve", "--data", tmp_path, "--reranker", "ce=default,speed=fast")
    assert result.exit_code == 2 and "--reranker options must be backend=... or precision=..., got 'speed=fast'" in (
        result.stderr)
    with pytest.raises(InvalidInputError, match="reranker 'ce' must run in fp32"):
        Settings(data=tmp_path, rerankers={"ce": ModelSpec(precision="int8")})
