"""The OpenAPI schema: committed, equal to the running app's, and honoured (schemathesis: no 500s, no
responses outside the schema)."""

from __future__ import annotations

import json
from pathlib import Path

from embedlab.serve.auth import parse_keys

KEY = "schemathesis-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_the_committed_schema_is_the_apps(make_app):
    schema = json.loads(json.dumps(make_app().openapi(), sort_keys=True))
    assert schema == json.loads(COMMITTED.read_text()), (
        "docs/openapi.json is stale: regenerate it with `embedlab serve --data /tmp/x --openapi docs/openapi.json`")


def test_schemathesis_finds_no_500s_and_no_schema_violations(make_app, tmp_path):
    """The schemathesis CLI against a live server with an API key: its coverage phase (boundary values: empty
    lists, missing fields, wrong types, other methods) and 25 fuzzed requests per operation, every path's
    collection name pinned to a real collection; every check but positive_data_acceptance, which expects every
    schema-valid request to succeed: the width of a served model, the filter grammar and the stored ids are
    checked by the server (400 with a message), not expressible in the schema."""
    import subprocess
    import sys
    import xml.etree.ElementTree as ET

    from fastapi.testclient import TestClient

    from tests.serve.conftest import live

    app = make_app(max_inputs=64, max_request_tokens=4096, keys=parse_keys(json.dumps(
        {"keys": [{"key": KEY, "scopes": ["read", "write"]}]}), "test"))
    client = TestClient(app)
    client.post("/v1/collections", json={"name": "papers", "dim": 384, "index": "flat"}, headers=AUTH)
    client.post("/v1/collections/papers/documents", json={"ids": ["a", "b"], "texts": ["alpha", "beta"],
                                                          "metadata": [{"year": 1}, {"year": 2}]}, headers=AUTH)
    config = tmp_path / "schemathesis.toml"
    config.write_text('[parameters]\n"path.name" = "papers"\n')
    report = tmp_path / "junit.xml"
    with live(app) as url:
        run = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(config), "run",
             f"{url}/openapi.json", "--max-examples", "25", "--seed", "1", "--checks", "all",
             "--exclude-checks", "positive_data_acceptance", "-H", f"Authorization: Bearer {KEY}",
             "--phases", "examples,coverage,fuzzing", "--report", "junit", "--report-junit-path", str(report)],
            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    suites = ET.parse(report).getroot()
    tests = sum(int(s.get("tests", 0)) for s in suites.iter("testsuite"))
    failures = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites.iter("testsuite"))
    assert tests == 12 and failures == 0 and run.returncode == 0, run.stdout[-6000:]
