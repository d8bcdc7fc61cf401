"""Issue 11's reliability figures: readers during continuous compaction, kill -9 trials, reopen after crash
recovery, the largest allowed k, and a long property-based soak.

    python benchmarks/reliability.py                      # 20 s compaction per layout, 30 crash trials, soak
    python benchmarks/reliability.py --seconds 5 --trials 5 --no-soak   # a quick look

The workloads are the ones the tests run for a few seconds (``tests/index/collection/reliability.py``), run here
longer; the soak runs ``tests/properties`` under the ``soak`` hypothesis profile (1,000 examples per test).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common


def workloads():
    path = common.ROOT / "tests" / "index" / "collection" / "reliability.py"
    spec = importlib.util.spec_from_file_location("collection_reliability", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed_open(path: Path, readonly: bool) -> tuple[float, int]:
    from embedlab.index import Collection

    start = time.perf_counter()
    with Collection.open(path, readonly=readonly) as col:
        return time.perf_counter() - start, col._replayed_rows


def soak() -> tuple[int, int, float]:
    """``(examples, failures, seconds)`` of ``tests/properties`` under the soak profile."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/properties",
                          "--hypothesis-show-statistics"], cwd=common.ROOT, capture_output=True, text=True,
                         env={**os.environ, "EMBEDLAB_HYPOTHESIS": "soak"}, timeout=3600)
    passing = sum(int(n) for n in re.findall(r"(\d+) passing", out.stdout))
    failing = sum(int(n) for n in re.findall(r"(\d+) failing", out.stdout)) + (out.returncode != 0)
    return passing, failing, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="continuous compaction per layout")
    parser.add_argument("--readers", type=int, default=3)
    parser.add_argument("--trials", type=int, default=30, help="kill -9 trials")
    parser.add_argument("--crash-rows", type=int, default=60_400, help="rows of the crashed collection")
    parser.add_argument("--crash-saved", type=int, default=45_000, help="rows its last checkpoint covers")
    parser.add_argument("--no-soak", action="store_true")
    args = parser.parse_args()
    rel = workloads()
    figures, rows, notes = {}, [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        errors = opens = searches = compactions = 0
        for multivector in (False, True):
            r = rel.compaction_readers(tmp / f"compact-{multivector}", seconds=args.seconds, readers=args.readers,
                                       multivector=multivector)
            errors, opens, searches = errors + r["errors"], opens + r["opens"], searches + r["searches"]
            compactions += r["compactions"]
            rows.append(["multi-vector" if multivector else "hnsw", r["compactions"], r["opens"], r["searches"],
                         r["errors"]])
            notes += [f"compaction error sample: {e}" for e in r.get("samples", [])[:3]]
        figures.update(compaction_reader_errors=errors, compaction_reader_opens=opens,
                       compaction_reader_searches=searches, compaction_compactions=compactions,
                       compaction_seconds_per_layout=args.seconds, compaction_readers=args.readers)
        tables = [common.print_table(f"{args.readers} readers while a writer compacts for {args.seconds:.0f} s",
                                     ["layout", "compactions", "fresh opens", "searches", "errors"], rows)]

        rng = np.random.default_rng(11)
        trials = [rel.crash_trial(tmp / f"crash-{i}", kill_after=float(rng.uniform(0.2, 1.5)))
                  for i in range(args.trials)]
        figures.update(crash_trials=len(trials),
                       crash_lost_acknowledged=sum(t["lost_acknowledged"] for t in trials),
                       crash_partial_batches=sum(t["partial_batches"] for t in trials),
                       crash_acknowledged_batches=sum(t["acked"] for t in trials),
                       crash_rows_replayed_on_second_open=sum(t["replayed_rows_reopen"] for t in trials))

        crashed = tmp / "crashed"
        rel.crashed_writer(crashed, rows=args.crash_rows, saved=args.crash_saved)
        first, replayed_first = timed_open(crashed, readonly=False)  # the writer open that heals
        second, replayed_second = timed_open(crashed, readonly=True)
        from embedlab.index import Collection

        clean = tmp / "clean"  # the same rows, written by a writer that closed cleanly (a fresh checkpoint)
        x = np.random.default_rng(0).normal(size=(args.crash_rows, rel.DIM)).astype(np.float32)
        with Collection.create(clean, dim=rel.DIM, index="hnsw", M=8, ef_construction=32) as col:
            col.add(list(range(args.crash_rows)), x)
        clean_open, _ = timed_open(clean, readonly=True)
        figures.update(reopen_seconds_first_after_crash=round(first, 3), rows_replayed_first_open=replayed_first,
                       reopen_seconds_after_crash_recovered=round(second, 3),
                       rows_replayed_after_recovery=replayed_second, reopen_seconds_clean=round(clean_open, 3),
                       reopen_ratio_recovered_vs_clean=round(second / clean_open, 3))

        k = rel.max_k_rss(tmp / "maxk")
        figures.update(max_k=k["k"], max_k_rss_mb=round(k["rss_mb"], 1), max_k_rss_increase_mb=round(k["rss_increase_mb"], 1))

    if not args.no_soak:
        examples, failures, seconds = soak()
        figures.update(hypothesis_examples=examples, hypothesis_failures=failures, hypothesis_seconds=round(seconds, 1))
    common.print_table("reliability", ["figure", "value"], [[k, v] for k, v in figures.items()])
    common.write_results("reliability", figures, tables=tables, notes=notes)


if __name__ == "__main__":
    main()
