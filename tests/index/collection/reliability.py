"""Reliability workloads shared by the tests in this folder and by ``benchmarks/reliability.py``.

Plain functions, no pytest: load this file by path (``importlib.util.spec_from_file_location``) or run it.

- :func:`compaction_readers`: one writer process compacting continuously while reader processes open the
  folder afresh and search it, and search through one long-lived open collection each. Returns counts
  (``opens``, ``searches``, ``compactions``, ``errors`` and a few error samples); ``errors`` must be 0.
- :func:`crashed_writer`: a writer process that adds rows without writing an index checkpoint, then is
  killed with SIGKILL, leaving a collection whose newest checkpoint is behind its rows (a crash to recover from).
- :func:`crash_trial`: one ``kill -9`` at an arbitrary moment of a writer adding batches, then two opens:
  acknowledged batches lost, partial batches, open / reopen seconds and rows replayed.
- :func:`max_k_rss`: peak RSS of a fresh process searching a 3-item collection with ``k = MAX_K``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DIM = 8
_HERE = str(Path(__file__).resolve())


def _fill(path: Path, rows: int, multivector: bool) -> None:
    from embedlab.index import Collection
    from embedlab.types import MultiVectors

    rng = np.random.default_rng(0)
    if multivector:
        with Collection.create(path, dim=DIM, metric="ip", index="flat", multivector={"candidates": 20, "k_sim": 2, "r_reps": 2, "d_proj": 4}) as col:
            tokens = rng.normal(size=(rows * 3, DIM)).astype(np.float32)
            col.add(list(range(rows)), MultiVectors(tokens, np.arange(0, rows * 3 + 1, 3)))
    else:
        with Collection.create(path, dim=DIM, index="hnsw", M=8, ef_construction=32) as col:
            col.add(list(range(rows)), rng.normal(size=(rows, DIM)).astype(np.float32))


def _query(multivector: bool, rng: np.random.Generator):
    from embedlab.types import MultiVectors

    if multivector:
        return MultiVectors(rng.normal(size=(4, DIM)).astype(np.float32), np.array([0, 2, 4]))
    return rng.normal(size=(2, DIM)).astype(np.float32)


def _writer(path: str, seconds: float, multivector: bool) -> dict:
    from embedlab.index import Collection

    rng = np.random.default_rng(1)
    compactions = 0
    deadline = time.monotonic() + seconds
    with Collection.open(path) as col:
        next_id = col.count() + 10**6
        while time.monotonic() < deadline:
            victim = int(rng.integers(0, col.count()))
            ids = sorted(col._mirror.row_of)
            col.delete([ids[victim]])
            if multivector:
                from embedlab.types import MultiVectors

                col.add([next_id], MultiVectors(rng.normal(size=(3, DIM)).astype(np.float32), np.array([0, 3])))
            else:
                col.add([next_id], rng.normal(size=(1, DIM)).astype(np.float32))
            next_id += 1
            col.compact()
            compactions += 1
    return {"compactions": compactions}


def _reader(path: str, seconds: float, multivector: bool) -> dict:
    from embedlab.index import Collection

    rng = np.random.default_rng(os.getpid())
    counts = {"opens": 0, "searches": 0, "errors": 0, "samples": []}

    def attempt(fn):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - every failure is what this workload counts
            counts["errors"] += 1
            if len(counts["samples"]) < 5:
                counts["samples"].append(f"{type(exc).__name__}: {exc}"[:300])

    held = Collection.open(path, readonly=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        def fresh():
            with Collection.open(path, readonly=True) as col:
                counts["opens"] += 1
                col.search(_query(multivector, rng), 5)
                counts["searches"] += 1

        def long_lived():
            for _ in range(3):
                held.search(_query(multivector, rng), 5)
                counts["searches"] += 1

        attempt(fresh)
        attempt(long_lived)
    held.close()
    return counts


def compaction_readers(path: str | os.PathLike, *, seconds: float = 2.0, readers: int = 3, rows: int = 500,
                       multivector: bool = False) -> dict:
    """Fill a new collection at ``path`` with ``rows`` items, then for ``seconds`` run one writer process that
    deletes a row, adds one and compacts, in a loop, while ``readers`` processes each open the folder read-only
    afresh (one search per open) and search through one collection they keep open. Returns
    ``{"opens", "searches", "compactions", "errors", "samples", "seconds", "readers", "multivector"}``."""
    path = Path(path)
    _fill(path, rows, multivector)
    procs = [subprocess.Popen([sys.executable, _HERE, role, str(path), str(multivector)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for role in ["writer"] + ["reader"] * readers]
    try:
        for p in procs:  # every process imported and opened: start them together
            line = p.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"workload process failed to start: {line!r} {p.stderr.read()[-2000:]}")
        for p in procs:
            p.stdin.write(f"{seconds}\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=seconds + 120)
            if p.returncode != 0:
                raise RuntimeError(f"workload process exited {p.returncode}: {err[-2000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    total = {"opens": 0, "searches": 0, "errors": 0, "samples": [], "compactions": results[0]["compactions"],
             "seconds": seconds, "readers": readers, "multivector": multivector}
    for r in results[1:]:
        for key in ("opens", "searches", "errors"):
            total[key] += r[key]
        total["samples"] += r["samples"]
    return total


CRASH_CHILD = """
import os, signal, sys
import numpy as np
from embedlab.index import Collection
from embedlab.index.collection import collection

path, rows, saved = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
x = np.random.default_rng(0).normal(size=(rows, {dim})).astype(np.float32)
col = Collection.create(path, dim={dim}, index="hnsw", M=8, ef_construction=32)
col.add(list(range(saved)), x[:saved])
col._maybe_checkpoint(force=True)  # the newest checkpoint covers the first `saved` rows ...
collection.CHECKPOINT_MIN_ROWS = 10**12  # ... and no later batch writes another one
for s in range(saved, rows, 500):
    col.add(list(range(s, min(rows, s + 500))), x[s : min(rows, s + 500)])
print("acked", rows, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def crashed_writer(path: str | os.PathLike, *, rows: int = 3000, saved: int = 1000) -> None:
    """Leave at ``path`` an hnsw collection of ``rows`` acknowledged items whose newest index checkpoint covers only
    the first ``saved``: its writer was killed with SIGKILL before writing another (``rows`` float32 ``[rows, 8]``
    from ``default_rng(0)``, ids ``0 .. rows - 1``)."""
    proc = subprocess.run([sys.executable, "-c", CRASH_CHILD.format(dim=DIM), str(path), str(rows), str(saved)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != -signal.SIGKILL or f"acked {rows}" not in proc.stdout:
        raise RuntimeError(f"crashed_writer: the child must be killed after acking, got {proc.returncode}: "
                           f"{proc.stderr[-2000:]}")


TRIAL_CHILD = """
import sys
import numpy as np
from embedlab.index import Collection
from embedlab.index.collection import collection

collection.CHECKPOINT_MIN_ROWS = 100  # checkpoint often, so a kill can land inside one
x = np.random.default_rng(0).normal(size=(4000, {dim})).astype(np.float32)
col = Collection.create(sys.argv[1], dim={dim}, index="hnsw", M=8, ef_construction=32)
for b in range(10**6):
    s = b * {batch} % (4000 - {batch})
    col.add([f"b{{b}}-{{i}}" for i in range({batch})], x[s : s + {batch}], metadata=[{{"b": b}}] * {batch})
    print(f"ack {{b}}", flush=True)
"""


def crash_trial(path: str | os.PathLike, *, kill_after: float, batch: int = 40) -> dict:
    """One ``kill -9`` trial: a child process adds batches of ``batch`` items to a new hnsw collection at ``path``
    (checkpointing every 100 rows) and prints ``ack <b>`` after each; it is killed ``kill_after`` seconds after its
    first ack. Then the folder is opened twice. Returns ``{"acked", "present", "lost_acknowledged",
    "partial_batches", "open_seconds", "reopen_seconds", "replayed_rows", "replayed_rows_reopen"}`` (the first
    open is a writer open, which heals; ``lost_acknowledged`` and ``partial_batches`` must be 0)."""
    from embedlab.index import Collection

    proc = subprocess.Popen([sys.executable, "-c", TRIAL_CHILD.format(dim=DIM, batch=batch), str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    time.sleep(kill_after)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=120)
    with proc.stdout, proc.stderr:
        rest, err = proc.stdout.read(), proc.stderr.read()
    if proc.returncode != -signal.SIGKILL or not first.startswith("ack "):
        raise RuntimeError(f"crash_trial: the child must be killed after acking, got {proc.returncode}: {err[-2000:]}")
    acked = {int(line.split()[1]) for line in [first, *rest.splitlines()] if line.startswith("ack ")}
    t = time.perf_counter()
    with Collection.open(path) as col:
        open_seconds, replayed = time.perf_counter() - t, col._replayed_rows
        present, partial, lost = set(), 0, 0
        for b in range(max(acked) + 2):
            have = sum(f"b{b}-{i}" in col._mirror.row_of for i in range(batch))
            present |= {b} if have else set()
            partial += 0 < have < batch
            lost += b in acked and have < batch
    t = time.perf_counter()
    with Collection.open(path, readonly=True) as col:
        reopen_seconds, replayed_again = time.perf_counter() - t, col._replayed_rows
    return {"acked": len(acked), "present": len(present), "lost_acknowledged": lost, "partial_batches": partial,
            "open_seconds": open_seconds, "reopen_seconds": reopen_seconds, "replayed_rows": replayed,
            "replayed_rows_reopen": replayed_again}


MAX_K_CHILD = """
import json, resource
import numpy as np
from embedlab.index import MAX_K, Collection

col = Collection.create(__import__("sys").argv[1], dim=8, index="hnsw", M=8)
col.add(["a", "b", "c"], np.eye(3, 8, dtype=np.float32))
col.search(np.ones((1, 8), np.float32), k=10)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
hits = col.search(np.ones((1, 8), np.float32), k=MAX_K)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"k": MAX_K, "shape": list(hits.ids.shape), "rss_mb": after / 1024,
                  "rss_increase_mb": (after - before) / 1024}))
"""


def max_k_rss(path: str | os.PathLike) -> dict:
    """Peak RSS of a fresh process searching a 3-item collection at ``path`` with ``k = MAX_K``:
    ``{"k", "shape", "rss_mb" (peak of the whole process), "rss_increase_mb" (over the same search at k=10)}``."""
    proc = subprocess.run([sys.executable, "-c", MAX_K_CHILD, str(path)], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"max_k_rss: the child failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _main(role: str, path: str, multivector: str) -> None:
    from embedlab.index import Collection

    Collection.open(path, readonly=True).close()  # imports done, folder readable
    print("ready", flush=True)
    seconds = float(sys.stdin.readline())
    fn = _writer if role == "writer" else _reader
    print(json.dumps(fn(path, seconds, multivector == "True")), flush=True)


if __name__ == "__main__":
    _main(*sys.argv[1:4])
