"""``embedlab index`` / ``embedlab search``: readable and JSON hits, options never ignored, one model load."""

from __future__ import annotations

import json

import numpy as np
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


# ---------------------------------------------------------------- index: checked whole, visible, resumable
def _lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_duplicate_ids_anywhere_in_the_input_fail_before_any_write(cli, tmp_path):
    rows = [{"id": f"d{i}", "text": f"text {i}"} for i in range(5)] + [{"id": "d1", "text": "again"}]
    out = cli("index", tmp_path / "col", _lines(tmp_path / "in.jsonl", rows), "--batch-size", "2")
    assert out.exit_code == 2
    assert "in.jsonl:6: id 'd1' was already given on line 2" in out.stderr
    assert not (tmp_path / "col").exists()  # nothing was created


def test_vectors_must_have_one_row_per_line(cli, tmp_path):
    import numpy as np

    docs = _lines(tmp_path / "in.jsonl", [{"id": f"d{i}", "text": f"text {i}"} for i in range(4)])
    for rows in (3, 5):
        np.save(tmp_path / "v.npy", np.ones((rows, 8), np.float32))
        out = cli("index", tmp_path / f"col{rows}", docs, "--vectors", tmp_path / "v.npy")
        assert out.exit_code == 2 and f"shape (4, d), got ({rows}, 8)" in out.stderr
        assert not (tmp_path / f"col{rows}").exists()


def test_interrupt_reports_what_was_committed_and_a_rerun_resumes(cli, tmp_path, monkeypatch):
    from embedlab.index import Collection

    docs = _lines(tmp_path / "in.jsonl", [{"id": f"d{i}", "text": f"text number {i}", "metadata": {"i": i}}
                                          for i in range(10)])
    real, calls = Collection.upsert, []

    def upsert_then_interrupt(self, *args, **kwargs):
        calls.append(len(args[0]))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "upsert", upsert_then_interrupt)
    out = cli("index", tmp_path / "col", docs, "--batch-size", "3", "--index", "flat")
    assert out.exit_code == 130
    assert "6 of 10 documents are committed" in out.stderr and "Run the same command again to resume" in out.stderr
    monkeypatch.setattr(Collection, "upsert", real)
    out = cli("index", tmp_path / "col", docs, "--batch-size", "3", "--format", "json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {**result, "written": 4, "skipped": 6, "count": 10}
    changed = _lines(tmp_path / "in.jsonl", [{"id": "d0", "text": "a new text"}])
    out = cli("index", tmp_path / "col", changed, "--format", "json")
    assert json.loads(out.stdout.strip().splitlines()[-1])["written"] == 1


def test_info_get_delete_compact(cli, papers, docs):
    out = cli("info", papers, "--format", "json")
    assert out.exit_code == 0, out.output
    info = json.loads(out.stdout)
    assert info["count"] == 8 and info["dim"] == 384 and info["metric"] == "cosine" and info["index"] == "flat"
    out = cli("get", papers, "paper-00", "--format", "json")
    (item,) = json.loads(out.stdout)["items"]
    assert item["metadata"]["year"] == 2025 and item["text"].startswith("On the Theoretical Limitations")
    assert "On the Theoretical" in cli("get", papers, "paper-00").stdout
    out = cli("delete", papers, "--filter", "year < 2024", "--format", "json")
    assert out.exit_code == 0, out.output
    deleted = json.loads(out.stdout)["deleted"]
    out = cli("delete", papers, "paper-00", "--format", "json")
    assert json.loads(out.stdout)["count"] == 8 - deleted - 1
    out = cli("compact", papers, "--format", "json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout.strip().splitlines()[-1])["rows_after"] == 8 - deleted - 1
    assert cli("delete", papers).exit_code == 2  # neither ids nor --filter
    out = cli("get", papers, "nope")
    assert out.exit_code == 2 and "error:" in out.stderr


def test_search_k_above_the_documented_maximum_is_one_clear_line(cli, papers):
    from embedlab.index import MAX_K

    out = cli("search", papers, "anything", "--k", MAX_K + 1)
    assert out.exit_code == 2
    assert f"k must be <= {MAX_K:,} (embedlab.index.MAX_K)" in out.stderr and "Traceback" not in out.output


def test_funnel_collection_from_the_cli(cli, papers, docs, tmp_path):
    from embedlab.index import Collection

    out = cli("index", tmp_path / "f", docs, "--index", "flat", "--funnel", "64", "--oversample", "2", "--format", "json")
    assert out.exit_code == 0, out.output
    with Collection.open(tmp_path / "f", readonly=True) as col:
        assert col.index_params["funnel"] == [64, 384] and col.index_params["oversample"] == 2
    out = cli("search", tmp_path / "f", "theoretical limits of embeddings", "--k", "2", "--oversample", "4",
              "--format", "json")
    assert out.exit_code == 0, out.output
    exact = cli("search", papers, "theoretical limits of embeddings", "--k", "2", "--format", "json")
    ids = [[h["id"] for h in json.loads(o.stdout)["results"][0]["hits"]] for o in (out, exact)]
    assert ids[0] == ids[1]  # 2 x 4 candidates of 8 documents: every row is rescored, so the answer is exact
    out = cli("index", tmp_path / "g", docs, "--oversample", "2")
    assert out.exit_code == 2 and "--oversample needs --funnel" in out.stderr
    out = cli("index", tmp_path / "h", docs, "--funnel", "384")
    assert out.exit_code == 2 and "smaller than the full dimension" in out.stderr


def test_text_index_collection_searched_sparse_and_hybrid_from_the_cli(cli, docs, tmp_path):
    out = cli("index", tmp_path / "t", docs, "--index", "flat", "--text-index", "--format", "json")
    assert out.exit_code == 0, out.output
    from embedlab.index import BM25

    rows = [json.loads(line) for line in docs.read_text().splitlines()]
    texts = [f"{r['title']} {r['text']}" for r in rows]
    want = BM25().fit(texts).search(["matryoshka dimensions"], 3)
    out = cli("search", tmp_path / "t", "matryoshka dimensions", "--mode", "sparse", "--k", "3", "--format", "json")
    assert out.exit_code == 0, out.output
    (result,) = json.loads(out.stdout)["results"]
    assert result["strategy"] == "bm25"
    assert [h["id"] for h in result["hits"]] == [rows[i]["_id"] for i in want.ids[0] if i >= 0]
    out = cli("search", tmp_path / "t", "matryoshka dimensions", "--mode", "hybrid", "--fusion", "weighted",
              "--weights", "0.2,0.8", "--format", "json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["results"][0]["strategy"].startswith("hybrid:weighted(")
    out = cli("search", tmp_path / "t", "x", "--mode", "hybrid", "--weights", "a,b")
    assert out.exit_code != 0 and "--weights must be two numbers" in out.output


def test_search_reranked_by_a_cross_encoder_folder(cli, docs, tmp_path):
    from embedlab.models import CrossEncoder

    ce = CrossEncoder.load(None, max_length=64)
    folder = ce.save(tmp_path / "ce")
    out = cli("index", tmp_path / "t", docs, "--index", "flat", "--text-index", "--format", "json")
    assert out.exit_code == 0, out.output
    out = cli("search", tmp_path / "t", "matryoshka dimensions", "--mode", "hybrid", "--k", "3", "--rerank", folder,
              "--rerank-candidates", "8", "--format", "json")
    assert out.exit_code == 0, out.output
    (result,) = json.loads(out.stdout)["results"]
    assert result["strategy"].endswith("+rerank(CrossEncoder)")
    scores = [h["score"] for h in result["hits"]]
    want = ce.predict([("matryoshka dimensions", h["text"]) for h in result["hits"]])
    np.testing.assert_allclose(scores, want, atol=1e-5)
    assert scores == sorted(scores, reverse=True)
    out = cli("search", tmp_path / "t", "matryoshka dimensions", "--k", "3", "--rerank", folder,
              "--rerank-candidates", "8", "--rerank-weights", "0.5,0.5", "--format", "json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["results"][0]["strategy"].endswith("+rerank-fused(CrossEncoder)")
    out = cli("search", tmp_path / "t", "x", "--rerank", folder, "--rerank-weights", "half")
    assert out.exit_code != 0 and "--rerank-weights must be two numbers" in out.output
