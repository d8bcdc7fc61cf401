"""``embedlab limit``: capacity, check, generate and eval sub-commands (tiny sizes)."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def limit(cli):
    return lambda *args: cli("limit", *args)


def test_capacity_json_has_critical_n(limit):
    out = limit("capacity", "--dims", "2", "--k", "2", "--patience", "100", "--seeds", "1", "--format", "json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["critical_n"] == {"2": 3} and result["k"] == 2


def test_generate_then_check_then_eval(limit, tmp_path):
    out = limit("generate", str(tmp_path / "g"), "--n-docs", "6", "--format", "json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["problems"] == 0
    out = limit("check", "--data", str(tmp_path / "g"), "--dim", "2", "--patience", "100", "--no-smallest",
                "--format", "json")  # the smallest-dimension search is tested in tests/eval/limit
    assert out.exit_code == 0, out.output
    check = json.loads(out.stdout)
    assert check["realisable"] is False and check["smallest_dim"] is None and check["n_failing"] > 0
    assert check["graph_density"] > 0 and check["average_query_strength"] > 0
    out = limit("eval", "--data", str(tmp_path / "g"), "--dims", "32,384", "--k", "2,5", "--format", "json")
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)["results"]
    assert rows["BM25"]["recall@2"] == 1.0 and "dense d=32" in rows


def test_bad_input_is_one_clear_line(limit, tmp_path):
    out = limit("check", "--data", str(tmp_path), "--dim", "4")
    assert out.exit_code == 2 and out.stderr.strip().splitlines()[-1].startswith("error: load_beir:")
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "q", "text": "y"}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\ta\t0\n")
    out = limit("check", "--data", str(tmp_path), "--dim", "4")
    assert out.exit_code == 2
    assert "check_qrels: qrels must hold at least one query with a relevant document, got none" in out.stderr
    out = limit("generate", str(tmp_path / "x"), "--n-docs", "2")
    assert out.exit_code == 2 and "core must be an int with k=2 < core <= n_docs=2" in out.stderr
