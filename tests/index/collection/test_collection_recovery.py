"""Crash recovery heals: after a writer is killed with a checkpoint far behind, the first writer open writes a fresh
index checkpoint, so later opens (readers included) no longer replay the missing rows into HNSW."""

from __future__ import annotations


import numpy as np

from embedlab.index import Collection
from embedlab.index.collection import collection


ROWS, SAVED = 1500, 300  # 1,200 rows past the newest checkpoint >= HEAL_MIN_ROWS


def test_the_first_writer_open_after_a_crash_writes_a_fresh_checkpoint(tmp_path, reliability):
    assert ROWS - SAVED >= collection.HEAL_MIN_ROWS
    path = tmp_path / "c"
    reliability.crashed_writer(path, rows=ROWS, saved=SAVED)
    x = np.random.default_rng(0).normal(size=(ROWS, reliability.DIM)).astype(np.float32)
    with Collection.open(path, readonly=True) as reader:  # a reader cannot heal: it replays
        assert reader._replayed_rows == ROWS - SAVED and reader.count() == ROWS
    writer = Collection.open(path)  # the first writer open heals ...
    assert writer._replayed_rows == ROWS - SAVED and writer._saved_rows == ROWS
    with Collection.open(path) as other:  # ... and takes the writer lock only for that moment
        other.add([ROWS], x[:1])
        assert other._replayed_rows == 0
    writer.close()
    for readonly in (True, False):  # every later open loads the checkpoint and replays nothing
        with Collection.open(path, readonly=readonly) as col:
            assert col._replayed_rows == 0 and col.count() == ROWS + 1
            hits = col.search(x[[7, 1400]], 1)
            assert hits.ids[:, 0].tolist() == [7, 1400]
    assert [p.name for p in sorted(path.glob("index-*.faiss"))] == [f"index-0-{ROWS + 1}.faiss"]


def test_a_small_replay_does_not_rewrite_the_checkpoint(tmp_path, reliability):
    path = tmp_path / "c"
    reliability.crashed_writer(path, rows=400, saved=300)
    with Collection.open(path) as col:
        assert col._replayed_rows == 100 and col._saved_rows == 300 and col._lock.fd is None
