"""The command line: machine-readable output, clear errors, the entry point itself."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np


def test_eval_retrieval_json_is_one_object(cli, tmp_path):
    from embedlab.eval.limit import generate

    folder = generate(tmp_path / "limit", n_docs=8, seed=0)  # the command's wiring; quality is tested in tests/eval
    out = cli("eval", "retrieval", "--data", folder, "--k", "2,10", "--format", "json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert set(result) >= {"recall@2", "ndcg@10", "mrr@10"}


def test_encode_writes_npy(cli, tmp_path):
    src = tmp_path / "texts.txt"
    src.write_text("first line\nsecond line\n")
    out = cli("encode", src, "-o", tmp_path / "v.npy", "--dim", "32", "--format", "json")
    assert out.exit_code == 0, out.output
    assert np.load(tmp_path / "v.npy").shape == (2, 32)
    assert json.loads(out.stdout)["n"] == 2


def test_encode_checks_the_output_folder_before_encoding(cli, tmp_path):
    src = tmp_path / "texts.txt"
    src.write_text("first line\n")
    out = cli("encode", src, "-o", tmp_path / "missing" / "v.npy")
    assert out.exit_code == 2
    assert "--output must be in an existing folder" in out.stderr and "Create the folder first" in out.stderr


def test_errors_are_one_clear_line(cli, tmp_path):
    out = cli("eval", "sts", "--data", tmp_path / "nope.csv")
    assert out.exit_code == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: load_sts:")
    assert "Traceback" not in out.stderr


def test_help_keeps_brackets_and_describes_every_option(cli):
    out = cli("encode", "--help")
    assert out.exit_code == 0 and "(n, d)" in out.stdout
    for command in (("eval", "sts"), ("eval", "retrieval"), ("limit", "check"), ("index",), ("search",)):
        text = cli(*command, "--help").stdout
        for option in ("--split", "--dim", "--layers", "--threads", "--k", "--seed", "--metric", "--index"):
            if option in text:
                line = next(line for line in text.splitlines() if line.strip().startswith(option))
                assert len(line.split(option, 1)[1].strip()) > 0, (command, option, line)


def test_the_console_entry_point_runs_as_a_process():
    """The one subprocess test: ``python -m embedlab.cli`` (the installed script's code path) and its exit codes."""
    out = subprocess.run([sys.executable, "-m", "embedlab.cli", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("embedlab ")
    out = subprocess.run([sys.executable, "-m", "embedlab.cli", "eval", "sts", "--data", "/nonexistent.csv"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith("error: load_sts:")


def test_encode_corpus_writes_resumable_shards(cli, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": f"document number {i}"}) + "\n" for i in range(7)))
    out = cli("encode", "--corpus", corpus, "--out", tmp_path / "shards", "--shard-size", "3", "--format", "json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["encoded_shards"] == 3
    again = cli("encode", "--corpus", corpus, "--out", tmp_path / "shards", "--shard-size", "3", "--format", "json")
    assert json.loads(again.stdout)["skipped_shards"] == 3 and json.loads(again.stdout)["encoded_shards"] == 0
    bad = cli("encode", "--corpus", corpus)
    assert bad.exit_code == 2 and "--corpus needs --out DIR" in bad.stderr
