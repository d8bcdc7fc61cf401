"""The compression benchmark runner, its report, and ``embedlab bench compression`` on a tiny BEIR folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedlab.eval.bench.compression import CompressionInputs, run_compression
from embedlab.eval.bench.compression_report import figures, pareto_front, table, write_all


@pytest.fixture(scope="module")
def inputs() -> CompressionInputs:
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((60, 64))

    def sample(n):
        x = centers[rng.integers(0, 60, n)] + 0.7 * rng.standard_normal((n, 64))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    corpus, queries, fit = sample(2000), sample(80), sample(1200)
    top = np.argsort(-(queries @ corpus.T), axis=1)[:, :3]
    qrels = {f"q{i}": {f"d{j}": 1 for j in top[i]} for i in range(len(queries))}
    return CompressionInputs(corpus, [f"d{i}" for i in range(len(corpus))], queries,
                             [f"q{i}" for i in range(len(queries))], qrels, fit, "a synthetic sample")


def test_runner_measures_every_configuration(inputs, tmp_path):
    result = run_compression(inputs, codecs=("int8", "binary", "pq:16,6", "pq:7", "truncate:32+int8"),
                             qps_queries=40, workdir=tmp_path)
    assert result.baseline_ndcg10 > 0.9  # the qrels are the exact top-3
    base = result.row("embedlab", "float32", "none")
    assert base.retention == 1.0 and base.recall10 == 1.0 and base.ram_bytes == 256
    int8 = result.row("embedlab", "int8", "none")
    assert int8.ram_bytes == 64 and int8.retention >= 0.97
    binary = result.row("embedlab", "binary", "none")
    rescored = result.row("embedlab", "binary", "float32 x4")
    assert binary.ram_bytes == 8 and rescored.disk_bytes == 8 + 256
    assert rescored.recall10 > binary.recall10 and rescored.retention > binary.retention
    assert result.row("embedlab", "binary", "int8 x4") is not None
    assert any(s.startswith("pq:7") and "m must divide the dimension 64" in s for s in result.skipped)
    peer = [r for r in result.rows if r.method == "sentence-transformers"]
    assert {r.codec for r in peer} >= {"binary"} and len(peer) == 6
    st_binary = result.row("sentence-transformers", "binary", "none")
    assert st_binary.recall10 == pytest.approx(binary.recall10, abs=0.02)  # the same sign bits
    assert all(r.qps > 0 for r in result.rows)

    f = figures(result)
    assert f["binary_ram_bytes_per_vector"] == 8 and f["binary_ram_reduction"] == 32.0
    assert f["int8_retention"] == pytest.approx(int8.retention, abs=1e-4)
    columns, rows = table(result)
    assert len(rows) == len(result.rows) and len(columns) == len(rows[0])
    report = write_all(result, tmp_path / "out", name="compression", title="t", meta={"m": 1})
    assert (tmp_path / "out" / "compression.png").stat().st_size > 1000
    assert "binary" in (tmp_path / "out" / "compression.html").read_text()
    assert any("int8 retention" in n for n in report["notes"])


def test_pq_codebooks_measured_both_ways(inputs, tmp_path):
    from dataclasses import replace

    result = run_compression(replace(inputs, codebook_sample=1500), codecs=("pq:64,6", "int8"), qps_queries=20,
                             peer=False, binary_oversample=(), workdir=tmp_path)
    pq = [r for r in result.rows if r.codec == "pq:64,6" and r.rescore == "none"]
    assert [r.fit_on for r in pq] == ["corpus sample (1500)", "calibration sample"]
    assert [r.fit_on for r in result.rows if r.codec == "int8"] == ["calibration sample"] * 2
    f = figures(result)
    assert "corpus sample" in f["pq_codec"] and f["pq_retention_fit_on_calibration_sample"] is not None


def test_pareto_front():
    assert pareto_front([(4, 0.9), (1, 0.5), (2, 0.95), (8, 0.99), (3, 0.7)]) == [1, 2, 3]


def test_cli_bench_compression(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from embedlab.cli import app

    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    animals = ["cat", "dog", "horse", "eagle", "shark", "frog", "bee", "whale", "owl", "snake"]
    with open(folder / "corpus.jsonl", "w") as f:
        for i, a in enumerate(animals * 3):
            f.write(json.dumps({"_id": f"d{i}", "text": f"a text about the {a}, number {i}"}) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for i, a in enumerate(animals):
            f.write(json.dumps({"_id": f"q{i}", "text": f"where does the {a} live?"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(10)))
    monkeypatch.setenv("EMBEDLAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "report"
    res = CliRunner().invoke(app, ["bench", "compression", "--data", str(folder), "--codecs", "int8,binary,truncate:128",
                                   "--out", str(out), "--format", "json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    assert payload["figures"]["binary_ram_bytes_per_vector"] == 48
    assert "test-split queries (no other split)" in payload["calibration"]
    assert (out / "compression.json").exists() and (out / "compression.png").exists() and (out / "compression.html").exists()
