"""Streamed corpus encoding: shards equal to one in-memory encode, resume after a kill, and bad input refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedlab.errors import ConflictError, DataFormatError
from embedlab.scale import encode_corpus, read_corpus, read_shards
from embedlab.scale.shards import MANIFEST


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def wordnet_slice(data_dir: Path, n: int) -> list[dict]:
    rows = []
    with open(data_dir / "wordnet-beir" / "corpus.jsonl") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) == n:
                break
    return rows


def test_shards_equal_one_encode_and_keep_ids_and_metadata(encoder, data_dir, tmp_path):
    rows = wordnet_slice(data_dir, 50)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", rows)
    result = encode_corpus(encoder, corpus, tmp_path / "out", shard_size=16)
    assert result == {"shards": 4, "encoded_shards": 4, "skipped_shards": 0, "rows": 50, "dim": 384,
                      "out": str(tmp_path / "out")}
    parts = list(read_shards(tmp_path / "out", fingerprint=encoder.fingerprint))
    ids = [i for p in parts for i in p[0]]
    vectors = np.concatenate([p[1] for p in parts])
    assert ids == [r["_id"] for r in rows] and [len(p[0]) for p in parts] == [16, 16, 16, 2]
    np.testing.assert_allclose(vectors, encoder.encode([r["text"] for r in rows]), atol=1e-6)
    assert parts[0][2][0] == rows[0]["metadata"]
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["complete"] and manifest["rows"] == 50 and manifest["model"]["fingerprint"] == encoder.fingerprint


def test_a_finished_run_resumes_without_work_and_parquet_input_reads_the_same(encoder, data_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = wordnet_slice(data_dir, 20)
    table = pa.table({"id": [r["_id"] for r in rows], "text": [r["text"] for r in rows],
                      "pos": [r["metadata"]["pos"] for r in rows]})
    pq.write_table(table, tmp_path / "corpus.parquet")
    first = encode_corpus(encoder, tmp_path / "corpus.parquet", tmp_path / "out", shard_size=8)
    again = encode_corpus(encoder, tmp_path / "corpus.parquet", tmp_path / "out", shard_size=8)
    assert first["encoded_shards"] == 3 and again["encoded_shards"] == 0 and again["skipped_shards"] == 3
    assert [r.metadata for r in read_corpus(tmp_path / "corpus.parquet")][0] == {"pos": rows[0]["metadata"]["pos"]}


KILL_SCRIPT = """
import sys, time
from embedlab.models import Encoder
from embedlab.scale import encode_corpus
encoder = Encoder.load()
def slow(done, total):
    print(done, flush=True)
    time.sleep(0.3)   # time for the test to kill us between shards
encode_corpus(encoder, sys.argv[1], sys.argv[2], shard_size=10, progress=slow, show_progress=False)
"""


def test_a_killed_run_resumes_from_its_finished_shards(encoder, data_dir, tmp_path):
    rows = wordnet_slice(data_dir, 60)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", rows)
    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(corpus), str(out)], stdout=subprocess.PIPE,
                             text=True)
    try:
        for line in child.stdout:  # kill it once two shards are written
            if int(line) >= 20:
                break
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
        child.stdout.close()
    finished = json.loads((out / MANIFEST).read_text())["shards"]
    assert 2 <= len(finished) < 6
    result = encode_corpus(encoder, corpus, out, shard_size=10)
    assert result["skipped_shards"] == len(finished) and result["encoded_shards"] == 6 - len(finished)
    vectors = np.concatenate([p[1] for p in read_shards(out)])
    np.testing.assert_allclose(vectors, encoder.encode([r["text"] for r in rows]), atol=1e-6)


def test_bad_corpora_name_the_file_and_line(encoder, tmp_path):
    dup = write_jsonl(tmp_path / "dup.jsonl", [{"_id": "a", "text": "x"}, {"_id": "b", "text": "y"},
                                                {"_id": "a", "text": "z"}])
    with pytest.raises(DataFormatError, match=r"dup.jsonl:3: id 'a' appears twice"):
        encode_corpus(encoder, dup, tmp_path / "o1")
    missing = write_jsonl(tmp_path / "missing.jsonl", [{"_id": "a", "text": "x"}, {"_id": "b", "title": "t"}])
    with pytest.raises(DataFormatError, match=r"missing.jsonl:2: record 'b' must have a non-empty 'text'"):
        encode_corpus(encoder, missing, tmp_path / "o2")
    (tmp_path / "broken.jsonl").write_text('{"_id": "a", "text": "x"}\n{not json\n')
    with pytest.raises(DataFormatError, match=r"broken.jsonl:2: expected one JSON object per line"):
        list(read_corpus(tmp_path / "broken.jsonl"))
    with pytest.raises(DataFormatError, match="must be a BEIR folder"):
        list(read_corpus(tmp_path / "nowhere"))


def test_a_folder_of_another_model_or_corpus_is_refused(encoder, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": str(i), "text": f"text {i}"} for i in range(5)])
    encode_corpus(encoder, corpus, tmp_path / "out", shard_size=2)
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    with pytest.raises(ConflictError, match="another shard size"):
        encode_corpus(encoder, corpus, tmp_path / "out", shard_size=3)
    other = write_jsonl(tmp_path / "other.jsonl", [{"_id": "x", "text": "other"}])
    with pytest.raises(ConflictError, match=r"another corpus \(its files\)"):
        encode_corpus(encoder, other, tmp_path / "out", shard_size=2)
    with pytest.raises(ConflictError, match="holds vectors of model"):
        list(read_shards(tmp_path / "out", fingerprint="0" * 16))
    assert json.loads((tmp_path / "out" / MANIFEST).read_text()) == manifest  # nothing changed
    (tmp_path / "out" / "shard-00001.parquet").write_bytes(b"damaged")
    with pytest.raises(DataFormatError, match="does not match its checksum"):
        list(read_shards(tmp_path / "out"))
