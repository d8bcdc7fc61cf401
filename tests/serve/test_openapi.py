"""The OpenAPI schema: committed, equal to the running app's, and honoured (schemathesis: no 500s, no
responses outside the schema)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from embedlab.serve.auth import parse_keys

KEY = "schemathesis-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_the_committed_schema_is_the_apps(make_app):
    schema = json.loads(json.dumps(make_app().openapi(), sort_keys=True))
    assert schema == json.loads(COMMITTED.read_text()), (
        "docs/openapi.json is stale: regenerate it with `embedlab serve --data /tmp/x --openapi docs/openapi.json`")


def seed(client) -> None:
    """The collection generated requests are pointed at (again, after a generated DELETE removed it)."""
    if client.get("/v1/collections/papers", headers=AUTH).status_code == 404:
        client.post("/v1/collections", json={"name": "papers", "dim": 384, "index": "flat"}, headers=AUTH)
        client.post("/v1/collections/papers/documents", json={"ids": ["a", "b"], "texts": ["alpha", "beta"],
                                                              "metadata": [{"year": 1}, {"year": 2}]}, headers=AUTH)


def pinned(case, hit: bool):
    """Half the generated cases address the real collection (else nearly all would be 404s)."""
    if hit and "name" in (case.path_parameters or {}):
        case.path_parameters["name"] = "papers"
    return case


def test_no_500s_and_no_schema_violations(make_app, encoder):
    """Every operation, 15 generated requests each (positive and negative, half of them on a real collection),
    each response checked against the schema: status documented, body, headers and content type as declared,
    never a 500, bad auth refused, schema-invalid data refused. Left out: positive_data_acceptance, which expects
    every schema-valid request to succeed; the width of a served model, the filter grammar and the stored ids are
    checked by the server (400 with a message), not expressible in the schema."""
    from fastapi.testclient import TestClient
    from hypothesis import strategies as st

    app = make_app(max_inputs=64, max_request_tokens=4096, keys=parse_keys(json.dumps(
        {"keys": [{"key": KEY, "scopes": ["read", "write"]}]}), "test"))
    client = TestClient(app)  # no lifespan: its end would close the app that schemathesis calls next
    api = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) == 12
    for operation in operations:
        seed(client)

        @given(case=st.tuples(operation.as_strategy(), st.booleans()).map(lambda pair: pinned(*pair)))
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def check(case):
            case.call_and_validate(headers=AUTH, excluded_checks=[schemathesis.checks.positive_data_acceptance])

        check()
    requests = app.state.server.metrics.requests.collect()[0].samples
    statuses = {s.labels["status"] for s in requests if s.name.endswith("_total") and s.value}
    assert sum(s.value for s in requests if s.name.endswith("_total")) >= 12 * 10  # the cases reached the app
    assert {"200", "400", "422"} <= statuses  # and not only their error paths
