"""Shards into collections and evaluation, and collections copied local -> Milvus -> local (resumable, in-process
CLI and a killed copy)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from embedlab.errors import ConflictError, InvalidInputError, UnsupportedError
from embedlab.eval import evaluate_retrieval, load_beir
from embedlab.index import Collection
from embedlab.scale import encode_corpus
from embedlab.scale.shards import MANIFEST
from embedlab.scale.transfer import TRANSFER, add_shards, copy_collection, shard_matrix


@pytest.fixture(scope="module")
def limit_shards(encoder, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "limit"
    encode_corpus(encoder, data_dir / "limit-small", out, shard_size=10)
    return out


def test_shards_feed_evaluation_exactly_like_encoded_embeddings(encoder, data_dir, limit_shards):
    ds = load_beir(data_dir / "limit-small")
    from_shards = evaluate_retrieval(encoder, ds, k_values=(2, 10), corpus_embeddings=limit_shards)
    direct = evaluate_retrieval(encoder, ds, k_values=(2, 10))
    assert from_shards == pytest.approx(direct, abs=1e-9)
    with pytest.raises(InvalidInputError, match="every id must be in the shards"):
        shard_matrix(limit_shards, ds.corpus_ids + ["not-there"])


@pytest.mark.parametrize("backend", ["local", "milvus"])
def test_shards_stream_into_a_collection_with_progress(encoder, data_dir, limit_shards, tmp_path, backend):
    ds = load_beir(data_dir / "limit-small")
    calls = []
    with Collection.create(tmp_path / "c", dim=encoder.dim, index="flat", encoder=encoder, backend=backend) as col:
        assert add_shards(col, limit_shards, progress=lambda d, t: calls.append((d, t))) == 46
        assert calls == [(10, 46), (20, 46), (30, 46), (40, 46), (46, 46)] and col.count() == 46
        query = ds.corpus_texts[7]
        assert col.search([query], 1).ids[0, 0] == ds.corpus_ids[7]
        with pytest.raises(ConflictError, match="ids must not exist yet"):
            add_shards(col, limit_shards)
        assert add_shards(col, limit_shards, upsert=True) == 46 and col.count() == 46


def test_shards_of_another_model_are_refused(encoder, limit_shards, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    for f in limit_shards.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((other / MANIFEST).read_text())
    manifest["model"]["fingerprint"] = "0123456789abcdef"
    (other / MANIFEST).write_text(json.dumps(manifest))
    with Collection.create(tmp_path / "c", dim=encoder.dim, index="flat", encoder=encoder) as col:
        with pytest.raises(ConflictError, match="shards must come from the collection's encoder"):
            add_shards(col, other)
        assert col.count() == 0


def _source(path, n=230, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 12)).astype(np.float32)
    col = Collection.create(path, dim=12, index="hnsw", M=8, schema={"g": "int"})
    col.add([f"d{i:04d}" for i in range(n)], x, metadata=[{"g": i % 5, "tag": ["a", "b"][i % 2]} for i in range(n)],
            )
    col.upsert([f"d{i:04d}" for i in range(0, n, 3)], x[0:n:3], texts=[f"text {i}" for i in range(0, n, 3)],
               metadata=[{"g": i % 5} for i in range(0, n, 3)])
    col.delete(["d0001"])
    return col, x


def _same(a, b, q):
    assert a.count() == b.count()
    ia, _ = a.scroll(limit=1000, include=("vector", "text", "metadata"))
    ib, _ = b.scroll(limit=1000, include=("vector", "text", "metadata"))
    assert [i["id"] for i in ia] == [i["id"] for i in ib]
    assert [(i["text"], i["metadata"]) for i in ia] == [(i["text"], i["metadata"]) for i in ib]
    np.testing.assert_allclose(np.stack([i["vector"] for i in ia]), np.stack([i["vector"] for i in ib]), atol=1e-6)
    assert a.search(q, 5, filter="g >= 2").ids.tolist() == b.search(q, 5, filter="g >= 2").ids.tolist()


def test_export_to_milvus_and_import_back_keep_every_item(tmp_path, cli):
    src, x = _source(tmp_path / "src")
    src.close()
    out = cli("export", tmp_path / "src", tmp_path / "m", "--to", "milvus", "--batch-size", "50", "--format", "json")
    assert out.exit_code == 0, out.stderr
    assert json.loads(out.stdout) == {"copied": 229, "resumed_after": None, "count": 229, "dest": str(tmp_path / "m")}
    back = cli("import", tmp_path / "m", tmp_path / "back", "--format", "json")
    assert back.exit_code == 0 and json.loads(back.stdout)["count"] == 229
    again = cli("export", tmp_path / "src", tmp_path / "m", "--to", "milvus", "--format", "json")
    assert json.loads(again.stdout)["copied"] == 229  # a finished copy has nothing left to do
    with Collection.open(tmp_path / "src") as a, Collection.open(tmp_path / "m") as m, \
            Collection.open(tmp_path / "back") as b:
        assert getattr(m, "backend") == "milvus" and m.index_kind == "hnsw" and m.schema == a.schema
        _same(a, m, x[:4])
        _same(a, b, x[:4])
    bad = cli("export", tmp_path / "src", tmp_path / "x", "--to", "qdrant")
    assert bad.exit_code == 2 and "--to must be 'milvus', got 'qdrant'" in bad.stderr
    other = cli("export", tmp_path / "back", tmp_path / "m", "--to", "milvus")
    assert other.exit_code == 2 and "holds a copy of" in other.stderr


KILL_SCRIPT = """
import sys, time
from embedlab.scale.transfer import copy_collection
def slow(done, total):
    print(done, flush=True)
    time.sleep(0.4)   # time for the test to kill us between batches
copy_collection(sys.argv[1], sys.argv[2], backend="milvus", batch_size=20, progress=slow, show_progress=False)
"""


def test_a_killed_export_resumes_after_its_last_batch(tmp_path):
    src, x = _source(tmp_path / "src")
    src.close()
    child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "src"), str(tmp_path / "m")],
                             stdout=subprocess.PIPE, text=True)
    try:
        for line in child.stdout:
            if int(line) >= 60:
                break
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
        child.stdout.close()
    record = json.loads((tmp_path / "m" / TRANSFER).read_text())
    assert 60 <= record["copied"] < 229 and not record["complete"]
    result = copy_collection(tmp_path / "src", tmp_path / "m", backend="milvus", batch_size=20)
    assert result["resumed_after"] == record["cursor"] and result["count"] == 229
    with Collection.open(tmp_path / "src") as a, Collection.open(tmp_path / "m") as m:
        _same(a, m, x[:4])


def test_copies_that_cannot_be_made_are_refused(tmp_path):
    from embedlab.types import MultiVectors

    with Collection.create(tmp_path / "pq", dim=8, index="flat", codec="pq:2,4") as col:
        col.add(["a"], np.ones((1, 8), np.float32))
    with pytest.raises(UnsupportedError, match="codec must be one Milvus has an index for"):
        copy_collection(tmp_path / "pq", tmp_path / "m", backend="milvus")
    assert not (tmp_path / "m").exists()
    with Collection.create(tmp_path / "mv", dim=4, metric="ip", index="flat", multivector=True) as col:
        col.add(["a"], MultiVectors(np.eye(4, dtype=np.float32)[:2], np.array([0, 2])))
    with pytest.raises(UnsupportedError, match="source must be a single-vector collection"):
        copy_collection(tmp_path / "mv", tmp_path / "m2", backend="milvus")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(ConflictError, match="dest must be a new folder or an unfinished copy"):
        copy_collection(tmp_path / "pq", tmp_path / "busy", backend="local")
