"""``embedlab index`` / ``embedlab search``: readable and JSON hits, options never ignored, one model load."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def docs(tmp_path, data_dir):
    path = tmp_path / "docs.jsonl"
    rows = [json.loads(line) for line in (data_dir / "seed-papers" / "corpus.jsonl").read_text().splitlines()[:8]]
    path.write_text("".join(json.dumps({**r, "text": r["text"][:400]}) + "\n" for r in rows))  # under 256 tokens
    return path


@pytest.fixture
def papers(cli, docs, tmp_path):
    out = cli("index", tmp_path / "col", docs, "--index", "flat", "--format", "json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout.strip().splitlines()[-1])["count"] == 8
    return tmp_path / "col"


def test_index_then_search_with_a_filter(cli, papers, docs):
    out = cli("search", papers, "compressing embedding vectors", "--k", "3", "--filter", "year >= 2024", "--format", "json")
    assert out.exit_code == 0, out.output
    (result,) = json.loads(out.stdout)["results"]
    assert result["strategy"] in ("exact", "flat_scan") and 1 <= len(result["hits"]) <= 3
    rows = {json.loads(line)["_id"]: json.loads(line) for line in docs.read_text().splitlines()}
    for rank, hit in enumerate(result["hits"], 1):
        assert hit["rank"] == rank and hit["metadata"]["year"] >= 2024
        assert hit["metadata"] == rows[hit["id"]]["metadata"]
        assert hit["text"] == f"{rows[hit['id']]['title']} {rows[hit['id']]['text']}"


def test_search_table_shows_rank_id_score_text_and_metadata(cli, papers, docs):
    out = cli("search", papers, "theoretical limits of embeddings", "--k", "2")
    assert out.exit_code == 0, out.output
    first = json.loads(docs.read_text().splitlines()[0])  # paper-00: the LIMIT paper
    assert "paper-00" in out.stdout and first["title"][:30] in out.stdout and "year=2025" in out.stdout
    assert "theoretical limits of embeddings" in out.stdout and "score" in out.stdout


def test_search_says_plainly_when_nothing_matches(cli, papers):
    out = cli("search", papers, "anything", "--filter", "year >= 2100")
    assert out.exit_code == 0, out.output
    assert "no hits" in out.stdout and "filter" in out.stdout
    out = cli("search", papers, "anything", "--filter", "year >= 2100", "--format", "json")
    assert json.loads(out.stdout)["results"][0]["hits"] == []


def test_conflicting_metric_or_index_for_an_existing_collection_is_an_error(cli, papers, docs):
    out = cli("index", papers, docs, "--metric", "l2")
    assert out.exit_code == 2
    assert "--metric must match the existing collection" in out.stderr and "'cosine'" in out.stderr
    out = cli("index", papers, docs, "--index", "hnsw")
    assert out.exit_code == 2 and "created with 'flat'" in out.stderr
    out = cli("index", papers, docs, "--index", "flat", "--metric", "cosine", "--format", "json")  # agreeing: fine
    assert out.exit_code == 0, out.output


def test_metric_and_index_are_closed_choices(cli, docs, tmp_path):
    out = cli("index", tmp_path / "new", docs, "--index", "annoy")
    assert out.exit_code == 2 and "annoy" in out.output and "hnsw" in out.output


def test_index_loads_the_encoder_once(docs, tmp_path, monkeypatch, encoder):
    from typer.testing import CliRunner

    from embedlab.cli import app
    from embedlab.models import Encoder

    calls = []
    monkeypatch.setattr(Encoder, "load", classmethod(lambda cls, *a, **k: calls.append(a) or encoder))
    out = CliRunner().invoke(app, ["index", str(tmp_path / "c"), str(docs), "--index", "flat"])
    assert out.exit_code == 0, out.output
    assert len(calls) == 1
