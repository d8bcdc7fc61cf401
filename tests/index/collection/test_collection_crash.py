"""Crash safety: a writer process is killed with SIGKILL (kill -9) at the worst moments, then the folder is reopened.

Acknowledged batches must all be present; the batch in flight must be wholly present or wholly absent; the
collection must open, search consistently and accept new writes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from embedlab.errors import ConflictError
from embedlab.index import Collection, Filter
from embedlab.index.collection import payload

BATCH, DIM = 40, 8

CHILD = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import faiss
    from embedlab.index.collection import Collection, collection, storage

    path, mode, kind = sys.argv[1:4]
    collection.CHECKPOINT_MIN_ROWS = 100  # checkpoint often, so a kill can land inside one
    x = np.random.default_rng(0).normal(size=(5000, 8)).astype(np.float32)

    def die(*a, **k):
        os.kill(os.getpid(), signal.SIGKILL)

    text = mode == "text_in_commit"
    col = Collection.create(path, dim=8, index=kind, M=8, ef_construction=32, text_index=text) if kind == "hnsw" \\
        else Collection.create(path, dim=8, index=kind, text_index=text)
    for b in range(10_000):
        if b == 4 and mode in ("in_commit", "text_in_commit"):  # inside the SQLite transaction, rows inserted, before COMMIT
            storage.Database.set = die
        if b == 4 and mode == "in_vectors":  # half the batch's vectors written, nothing committed
            real = storage.VectorFile.write
            def half(self, start, v):
                real(self, start, v[: len(v) // 2]); die()
            storage.VectorFile.write = half
        if b == 4 and mode == "in_delete":
            col.delete([f"b1-{i}" for i in range(5)])  # acknowledged delete
            print("ack-delete", flush=True)
            storage.Database.set = die  # the next delete dies before COMMIT
            col.delete([f"b2-{i}" for i in range(5)])
        if b == 4 and mode == "in_compact":
            col.delete([f"b0-{i}" for i in range(5)])
            print("ack-delete", flush=True)
            storage.Database.renumber = lambda self, seq: die()
            col.compact()
        if mode == "in_checkpoint" and b == 0:  # a partial index file, killed before the rename
            def partial(index, name):
                open(name, "wb").write(b"FAISS-partial"); die()
            faiss.write_index = partial
        if mode == "stale_payload" and b == 6:  # payload.npz was saved at batch 2; batches 3-5 acknowledged since
            die()
        rows = range(b * 40 % 4960, b * 40 % 4960 + 40)
        col.add([f"b{b}-{i}" for i in range(40)], x[rows.start : rows.stop], metadata=[{"b": b}] * 40,
                texts=[f"batch{b} item{i}" for i in range(40)] if text else None)
        if text and b == 1:
            col.search(x[:1], 3, mode="hybrid", query_texts=["batch0"])  # the text index is live before the kill
        print(f"ack {b}", flush=True)
        if mode == "stale_payload" and b == 2:
            col._maybe_checkpoint(force=True)  # what close() does: index checkpoint and payload.npz
""")


def run_child(tmp_path, mode, kind):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    path = tmp_path / "col"
    proc = subprocess.Popen([sys.executable, str(script), str(path), mode, kind], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    rest, err = proc.communicate(timeout=120)
    lines = rest.splitlines()
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    acked = {int(line.split()[1]) for line in lines if line.startswith("ack ")}
    return path, acked, lines


def check_batches(col, acked, deleted=()):
    """Every acked batch whole; any other batch whole or absent (ignoring acknowledged deletes). Returns the
    set of batches present."""
    present = set()
    b = 0
    while True:
        ids = [f"b{b}-{i}" for i in range(BATCH) if f"b{b}-{i}" not in deleted]
        have = sum(i in col._mirror.row_of for i in ids)
        if b in acked:
            assert have == len(ids), f"acknowledged batch {b} has {have}/{len(ids)}"
        else:
            assert have in (0, len(ids)), f"batch {b} in flight is partial: {have}/{len(ids)}"
        if have:
            present.add(b)
        elif b > max(acked, default=-1) + 1:
            return present
        b += 1


def check_usable(col):
    n = col.count()
    x = np.random.default_rng(0).normal(size=(5000, DIM)).astype(np.float32)
    some = sorted(col._mirror.row_of)[:5]
    def row(name):  # the row of x that batch b's j-th vector was copied from (batches reuse rows every 124)
        b, j = map(int, name[1:].split("-"))
        return b * 40 % 4960 + j

    for i in some:  # every stored vector finds itself, or an identical copy of itself from a later batch
        hits = col.search(x[row(i) : row(i) + 1], 1)
        assert row(hits.ids[0, 0]) == row(i) and hits.scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    col.add(["after"], x[:1], metadata=[{"b": -1}])
    assert col.count() == n + 1
    assert col.search(x[:1], 3, filter="b == -1").ids[0, 0] == "after"


@pytest.mark.parametrize("mode, kind", [("in_commit", "hnsw"), ("in_vectors", "flat")])
def test_kill_inside_a_batch_leaves_it_wholly_absent(tmp_path, mode, kind):
    path, acked, _ = run_child(tmp_path, mode, kind)
    assert acked == {0, 1, 2, 3}
    with Collection.open(path) as col:
        assert check_batches(col, acked) == acked
        assert col.count() == BATCH * len(acked)
        check_usable(col)
    assert not any(".tmp" in p.name for p in path.iterdir())


def test_kill_inside_a_batch_with_a_text_index_serves_the_committed_texts_only(tmp_path):
    path, acked, _ = run_child(tmp_path, "text_in_commit", "hnsw")
    assert acked == {0, 1, 2, 3}
    with Collection.open(path) as col:
        for b in range(5):
            hits = col.search([f"batch{b}"], 50, mode="sparse")
            found = {i for i in hits.ids[0] if i is not None}
            assert found == ({f"b{b}-{i}" for i in range(BATCH)} if b in acked else set())
        check_usable(col)
        col.add(["later"], np.ones((1, DIM), np.float32), texts=["batch4 again"])
        assert list(col.search(["batch4"], 3, mode="sparse").ids[0][:1]) == ["later"]


def test_kill_inside_an_index_checkpoint_keeps_the_committed_batch(tmp_path):
    path, acked, _ = run_child(tmp_path, "in_checkpoint", "hnsw")
    assert acked == {0, 1}  # batch 2 committed, then its checkpoint (120 rows) was killed before the ack
    assert any(".tmp" in p.name for p in path.iterdir())
    with Collection.open(path) as col:
        assert check_batches(col, acked) == {0, 1, 2}
        check_usable(col)
    assert not any(".tmp" in p.name for p in path.iterdir())  # the writer cleaned up


def test_kill_after_a_payload_save_never_serves_the_stale_payload_indexes(tmp_path):
    path, acked, _ = run_child(tmp_path, "stale_payload", "hnsw")
    assert acked == set(range(6)) and (path / payload.FILE).exists()
    with Collection.open(path) as col:
        assert not col._payload.built  # saved at batch 2's state, so not adopted
        for b in acked:
            assert col.count(f"b == {b}") == BATCH == len(col._payload.select(Filter.eq("b", b), col._n, "test"))
        check_usable(col)


def test_kill_inside_a_delete_keeps_acknowledged_deletes_only(tmp_path):
    path, acked, lines = run_child(tmp_path, "in_delete", "flat")
    assert "ack-delete" in lines
    with Collection.open(path) as col:
        check_batches(col, acked, deleted={f"b1-{i}" for i in range(5)})
        assert not any(f"b1-{i}" in col._mirror.row_of for i in range(5))  # acknowledged
        assert all(f"b2-{i}" in col._mirror.row_of for i in range(5))  # in flight: wholly absent
        assert col.count() == 4 * BATCH - 5
        check_usable(col)


def test_kill_inside_compact_keeps_the_old_generation(tmp_path):
    path, acked, _ = run_child(tmp_path, "in_compact", "hnsw")
    with Collection.open(path) as col:
        assert col._generation == 0 and col.count() == 4 * BATCH - 5
        assert check_batches(col, acked, deleted={f"b0-{i}" for i in range(5)}) == {0, 1, 2, 3}
        check_usable(col)
        col.compact()
        assert col._generation == 1
    assert sorted(p.name for p in path.glob("vectors-*")) == ["vectors-1.f32"]


def test_kill_at_an_arbitrary_moment(tmp_path, reliability):
    trial = reliability.crash_trial(tmp_path / "col", kill_after=float(np.random.default_rng(7).uniform(0.3, 0.8)))
    assert trial["acked"] >= 1 and trial["present"] >= trial["acked"]
    assert trial["lost_acknowledged"] == 0 and trial["partial_batches"] == 0
    with Collection.open(tmp_path / "col") as col:
        items, _ = col.scroll(limit=5, include=("vector",))
        for item in items:  # every stored vector finds a row that scores as itself (batches reuse rows)
            hits = col.search(item["vector"][None], 1)
            assert hits.scores[0, 0] == pytest.approx(float(item["vector"] @ item["vector"]), abs=1e-4)
        n = col.count()
        col.add(["after"], np.ones((1, DIM), np.float32), metadata=[{"b": -1}])
        assert col.count() == n + 1


def test_writer_in_another_process_excludes_writers_and_feeds_readers(tmp_path):
    path = tmp_path / "col"
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent("""
        import sys, numpy as np
        from embedlab.index import Collection, Filter
        col = Collection.create(sys.argv[1], dim=8, index="hnsw", M=8)
        x = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
        col.add([f"a{i}" for i in range(50)], x[:50], metadata=[{"g": i % 2} for i in range(50)])
        print("ready", flush=True)
        sys.stdin.readline()
        col.add([f"a{i}" for i in range(50, 100)], x[50:], metadata=[{"g": 7}] * 50)
        col.delete(["a0"])
        print("more", flush=True)
        sys.stdin.readline()
    """))
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        x = np.random.default_rng(0).normal(size=(100, DIM)).astype(np.float32)
        with Collection.open(path) as other:
            assert other.count() == 50
            with pytest.raises(ConflictError, match=rf"got another writer holding .*writer.lock \(pid {proc.pid}\)"):
                other.add(["b"], x[:1])
            proc.stdin.write("\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "more"
            assert other.count() == 99  # a reader catches up with the writer's committed batches
            assert other.search(x[50:51], 1, filter="g == 7").ids[0, 0] == "a50"
            assert "a0" not in other.search(x[:1], 5).ids[0].tolist()
    finally:
        proc.communicate("\n", timeout=60)  # lets the writer exit; closes the pipes
    with Collection.open(path) as col:  # the lock died with its process
        col.add(["b"], np.ones((1, DIM), np.float32))
        assert col.count() == 100
