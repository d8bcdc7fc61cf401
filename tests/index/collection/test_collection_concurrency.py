"""Readers during compaction: a reader always sees one complete generation (generation leases).

The workload lives in ``reliability.py`` beside this file, shared with ``benchmarks/reliability.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.index import Collection


@pytest.mark.parametrize("multivector", [False, True], ids=["single", "multivector"])
def test_readers_never_fail_while_a_writer_compacts(tmp_path, multivector, reliability):
    result = reliability.compaction_readers(tmp_path / "c", seconds=1.5, readers=3, multivector=multivector)
    assert result["errors"] == 0, result["samples"]
    assert result["compactions"] >= 3 and result["opens"] >= 10 and result["searches"] >= 30, result


def test_an_old_generation_stays_while_a_reader_holds_it_and_goes_after(tmp_path):
    x = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    writer = Collection.create(tmp_path / "c", dim=8, index="hnsw", M=8)
    writer.add(list(range(50)), x)
    reader = Collection.open(tmp_path / "c", readonly=True)
    want = reader.search(x[:3], 2).ids.tolist()
    writer.delete([0])
    writer.compact()
    assert (tmp_path / "c" / "vectors-0.f32").exists()  # the reader's snapshot still uses generation 0
    assert reader._generation == 0 and reader.search(x[:3], 2).ids.tolist() != want  # it refreshes onto 1 ...
    assert reader._generation == 1
    writer.add([50], x[:1])  # ... and the writer's next write deletes generation 0
    assert not (tmp_path / "c" / "vectors-0.f32").exists() and not (tmp_path / "c" / "lease-0.lock").exists()
    reader.close()
    writer.close()
