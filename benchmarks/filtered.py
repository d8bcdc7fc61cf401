"""Filtered search on WordNet-BEIR (117,659 x 384, default model): our planner vs three baselines, plus the
collection's insert throughput, reopen time, and disk / RAM per vector.

Filters on the corpus's real metadata (pos, domain, n_lemmas, n_examples) at selectivities ~0.1%, 1%, 10%, 50%;
queries are the test split's (the first ``--nq``). Ground truth is the exact top-10 among the allowed documents.
Baselines, all called on raw faiss / numpy and handed the allowed-row bitmap for free (ours computes it from the
filter inside the timed call; a second ratio times the best baseline with the filter's parse and evaluation added):

- exact: gather the allowed vectors and score them with ``faiss.knn`` (BLAS);
- hnsw+selector: faiss HNSW (the collection's own graph) with ``IDSelectorBitmap`` at fixed efSearch = 64;
- post-filter x10: the same graph asked for 10 * k = 100 candidates (efSearch = 100), disallowed ones dropped.

    python benchmarks/filtered.py [--nq 1000] [--repeats 3]

Writes the ``filtered_*``, ``insert_*``, ``reopen_*``, ``disk_*`` and ``ram_*`` figures of
``benchmarks/results/collections.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from collections_results import write_part
from common import ROOT, print_table, wordnet, wordnet_corpus_embeddings, wordnet_query_embeddings

FILTERS = [  # (target selectivity, filter)
    ("0.1%", 'domain == "noun.feeling" and n_lemmas >= 3'),
    ("1%", 'domain == "noun.animal" and n_lemmas >= 3'),
    ("10%", 'pos == "verb" and n_lemmas <= 2'),
    ("50%", 'pos == "noun" and n_lemmas == 1 or pos == "adj" and n_lemmas <= 2'),
]
K, FIXED_EF, OVERSAMPLE_X = 10, 64, 10
BATCH = 5000


def timed(fn, repeats: int, min_seconds: float = 0.5, max_repeats: int = 200):
    """Best wall time of ``fn`` over at least ``repeats`` calls, more (up to ``max_repeats``) until ``min_seconds``
    were spent: a 1 ms call needs many more than 3 tries for its best to be stable."""
    best, out, spent, calls = float("inf"), None, 0.0, 0
    while calls < repeats or (spent < min_seconds and calls < max_repeats):
        t = time.perf_counter()
        out = fn()
        took = time.perf_counter() - t
        best, spent, calls = min(best, took), spent + took, calls + 1
    return best, out


def recall(found: np.ndarray, truth: list[np.ndarray]) -> float:
    return float(np.mean([len(set(f[f >= 0].tolist()) & set(t.tolist())) / max(len(t), 1) for f, t in zip(found, truth)]))


def exact_subset(x: np.ndarray, q: np.ndarray, mask: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(mask)
    _, pos = faiss.knn(q, x[rows], min(K, len(rows)), metric=faiss.METRIC_INNER_PRODUCT)
    out = np.full((len(q), K), -1, np.int64)
    out[:, : pos.shape[1]] = np.where(pos >= 0, rows[np.maximum(pos, 0)], -1)
    return out


def hnsw_selector(index, q: np.ndarray, mask: np.ndarray) -> np.ndarray:
    bits = np.packbits(mask, bitorder="little")  # kept alive through the call
    sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
    _, labels = index.search(q, K, params=faiss.SearchParametersHNSW(efSearch=FIXED_EF, sel=sel))
    return labels


def hnsw_postfilter(index, q: np.ndarray, mask: np.ndarray) -> np.ndarray:
    _, labels = index.search(q, OVERSAMPLE_X * K, params=faiss.SearchParametersHNSW(efSearch=OVERSAMPLE_X * K))
    out = np.full((len(q), K), -1, np.int64)
    for i, row in enumerate(labels):
        keep = row[(row >= 0) & mask[np.maximum(row, 0)]][:K]
        out[i, : len(keep)] = keep
    return out


RSS_SCRIPT = """
import json, os, sys, time, numpy as np
from embedlab.index import Collection
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = rss()
t = time.perf_counter()
col = Collection.open(sys.argv[1], readonly=True)
opened = time.perf_counter() - t
col.search(np.load(sys.argv[2]), 10, filter=sys.argv[3])
print(json.dumps({"open_s": opened, "rss_delta_bytes": rss() - before}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nq", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from embedlab.index import Collection, Filter

    dataset = wordnet()
    x = wordnet_corpus_embeddings(dataset=dataset)
    _, q = wordnet_query_embeddings("test", dataset=dataset)
    q = np.ascontiguousarray(q[: args.nq])
    x = x / np.linalg.norm(x, axis=1, keepdims=True)  # what a cosine collection stores
    meta = dataset.metadata
    print(f"WordNet: {x.shape} corpus, {len(q)} queries; faiss threads {faiss.omp_get_max_threads()}")

    folder = Path(tempfile.mkdtemp(prefix="wordnet-", dir=ROOT / ".cache")) / "col"
    try:
        t = time.perf_counter()
        col = Collection.create(folder, dim=x.shape[1], metric="cosine", index="hnsw")
        for s in range(0, len(x), BATCH):
            col.add(dataset.corpus_ids[s : s + BATCH], x[s : s + BATCH], metadata=meta[s : s + BATCH])
        col.close()
        insert_s = time.perf_counter() - t
        disk = sum(p.stat().st_size for p in folder.iterdir())
        print(f"insert {len(x) / insert_s:.0f} vectors/s; disk {disk / len(x):.0f} B/vector")
        qfile = folder.parent / "q.npy"
        np.save(qfile, q[:1])
        probe = json.loads(subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(folder), str(qfile), FILTERS[1][1]],
                                          capture_output=True, text=True, check=True).stdout)
        t = time.perf_counter()
        col = Collection.open(folder, readonly=True)
        reopen_s = time.perf_counter() - t
        graph = col._index.index  # the same faiss graph, driven directly by the baselines
        assert all(col._mirror.ids.data[r] == dataset.corpus_ids[r] for r in range(0, len(x), 997))  # rows = corpus order
        rows, per_sel = [], []
        for label, text in FILTERS:
            mask = col._meta.evaluate(Filter.parse(text), len(x), "bench")
            truth_rows = exact_subset(x, q, mask)
            truth = [r[r >= 0] for r in truth_rows]
            sel = mask.mean()
            results = {}
            secs, hits = timed(lambda: col.search(q, K, filter=text), args.repeats)
            found = np.vectorize(lambda i: -1 if i is None else col._mirror.row_of[i], otypes=[np.int64])(hits.ids)
            strategies = sorted(set(hits.strategy))
            results["ours"] = (recall(found, truth), len(q) / secs)
            baselines = (("exact", lambda q_, m_: exact_subset(x, q_, m_)),
                         ("hnsw+selector", lambda q_, m_: hnsw_selector(graph, q_, m_)),
                         ("post-filter x10", lambda q_, m_: hnsw_postfilter(graph, q_, m_)))
            paid = {}  # the same baselines, also paying for parsing and evaluating the filter into their bitmap
            for name, fn in baselines:
                secs, found = timed(lambda: fn(q, mask), args.repeats)
                results[name] = (recall(found, truth), len(q) / secs)
                secs, _ = timed(lambda: fn(q, col._meta.evaluate(Filter.parse(text), len(x), "bench")), args.repeats)
                paid[name] = len(q) / secs
            ok = {n: v for n, v in results.items() if n != "ours" and v[0] >= 0.95}
            best = max(ok, key=lambda n: ok[n][1]) if ok else None
            ratio = results["ours"][1] / ok[best][1] if best else float("nan")
            ratio_paid = results["ours"][1] / paid[best] if best else float("nan")
            per_sel.append((label, sel, results, best, ratio, strategies, ratio_paid))
            rows.append([label, f"{sel:.4%}", int(mask.sum()), text, ", ".join(strategies),
                         *[f"{results[n][0]:.3f} / {results[n][1]:,.0f}" for n in results], best or "none", ratio,
                         ratio_paid])
            print(rows[-1])
        col.close()
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)

    table = print_table(
        f"WordNet-BEIR filtered search, k=10, {len(q)} test queries per call: recall@10 / QPS",
        ["target", "selectivity", "allowed", "filter", "our strategy", "ours", "exact subset", "hnsw+selector ef=64",
         "post-filter x10", "best baseline >= 0.95", "QPS ours/best", "QPS ours/best (best also evaluates the filter)"],
        rows)
    min_recall = min(r[2]["ours"][0] for r in per_sel)
    ratios = [r[4] for r in per_sel if r[3] is not None]
    figures = {
        "filtered_min_recall_at_10": min_recall,
        "filtered_min_qps_ratio_vs_best_baseline": min(ratios) if ratios else float("nan"),
        **{f"filtered_recall_at_10_{r[0]}": r[2]["ours"][0] for r in per_sel},
        **{f"filtered_qps_ratio_{r[0]}": r[4] for r in per_sel},
        "filtered_min_qps_ratio_vs_best_baseline_evaluating_filter": min(r[6] for r in per_sel if r[3] is not None)
        if ratios else float("nan"),
        "insert_vectors_per_s": len(x) / insert_s,
        "reopen_seconds": reopen_s,
        "disk_bytes_per_vector": disk / len(x),
        "ram_bytes_per_vector": probe["rss_delta_bytes"] / len(x),
        "wordnet_n": len(x),
    }
    notes = [
        f"Collection: hnsw M=16, ef_construction=128, ef_search=64, cosine; built with add() in durable batches of "
        f"{BATCH} with string ids and 4 metadata fields ({insert_s:.0f} s including fsyncs and index checkpoints). "
        f"Reopen = Collection.open of the closed 117k folder ({reopen_s:.2f} s; fresh process: {probe['open_s']:.2f} s). "
        f"RAM per vector = resident-set growth of a fresh process opening the collection and running one filtered search.",
        "Baselines run on the collection's own faiss graph and get the allowed-row bitmap for free; our timings include "
        "evaluating the filter string. QPS: one batched call per filter, best of at least "
        f"{args.repeats} calls (more, up to 200, until 0.5 s was spent), on a 2-core machine.",
    ]
    if min_recall < 0.95:
        notes.append(f"Goal missed: our minimum recall@10 is {min_recall:.3f} (goal >= 0.95).")
    for label, sel, results, best, ratio, _, ratio_paid in per_sel:
        if best is not None and ratio < 1.0:
            notes.append(f"At {label} our planner reached {ratio:.2f}x the QPS of the best baseline reaching 0.95 "
                         f"({best}); goal >= 1x. When that baseline also turns the filter string into its bitmap "
                         f"(parse + evaluate over the metadata columns) the ratio is {ratio_paid:.2f}x.")
    write_part("filtered", figures, [table], notes)


if __name__ == "__main__":
    main()
