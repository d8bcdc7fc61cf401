"""``embedlab index`` / ``embedlab search``: JSON output and one-line errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from embedlab.cli import app


def test_index_then_search_with_a_filter(tmp_path, data_dir):
    docs = tmp_path / "docs.jsonl"
    rows = [json.loads(line) for line in (data_dir / "seed-papers" / "corpus.jsonl").read_text().splitlines()[:8]]
    docs.write_text("".join(json.dumps({**r, "text": r["text"][:400]}) + "\n" for r in rows))  # under 256 tokens
    runner = CliRunner()
    out = runner.invoke(app, ["index", str(tmp_path / "col"), str(docs), "--index", "flat", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout.strip().splitlines()[-1])["count"] == 8
    out = runner.invoke(app, ["search", str(tmp_path / "col"), "compressing embedding vectors", "--k", "3",
                              "--filter", "year >= 2024", "--format", "json"])
    assert out.exit_code == 0, out.output
    (result,) = json.loads(out.stdout)["results"]
    assert result["strategy"] in ("exact", "flat_scan") and 1 <= len(result["hits"]) <= 3
    years = {json.loads(line)["_id"]: json.loads(line)["metadata"]["year"] for line in docs.read_text().splitlines()}
    assert all(years[h["id"]] >= 2024 for h in result["hits"])
