"""One query per call against the embedded stores users would pick (issue 17): embedlab, LanceDB, Milvus Lite and raw faiss.

The data is WordNet-BEIR: 117,659 x 384 vectors from the default model (cached), cosine, with the corpus's real metadata.
Queries are test queries sent **one per call**, k=10: unfiltered and at the four selectivities of
``benchmarks/filtered.py`` (0.1 / 1 / 10 / 50%). Recall@10 is measured against the exact filtered top 10.

Each engine runs in its own child process (build time and RSS are its own). For every selectivity it picks its
*smallest setting* whose recall@10 reaches 0.95 on 100 calibration queries, taken from the test split past the
measured ones. It then measures p50 / p99 latency and recall on the measured queries at that setting. An engine
that never reaches 0.95 is measured at its best setting and marked as such.

- embedlab: a ``Collection`` (HNSW M=16, efConstruction=128). ``default`` is the planner with no arguments; ``tuned``
  is the smallest base ``ef`` the planner then raises.
- LanceDB 0.40 (embedded): IVF_HNSW_SQ (m=16, efConstruction=128, cosine); BITMAP indexes on ``pos`` / ``domain``
  and a BTREE on ``n_lemmas``; ``where(..., prefilter=True)``; a sweep over (nprobes, ef) with ``refine_factor`` 10.
- Milvus Lite 3.2 (embedded, pymilvus 3): HNSW M=16 efConstruction=128, COSINE; a sweep over ``ef`` once its
  background index covers every row. It is measured on fewer queries (``--nq-milvus``) because each call takes
  tens of ms.
- faiss, handed the allowed-row bitmap for free: ``exact`` (gather + ``faiss.knn``) and ``hnsw+selector`` (the
  collection's own graph, efSearch swept).

    python benchmarks/search_peers.py [--nq 1000] [--nq-milvus 200] [--engines embedlab lancedb milvus_lite faiss]
                                      [--report-only]

Writes ``benchmarks/results/search_peers.json``. It also reads ``filtered_min_qps_ratio_vs_best_baseline`` from
``collections.json`` (re-run ``benchmarks/filtered.py`` first) and the ``scale_curve`` table that
``benchmarks/scale_curve.py`` keeps in this file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import RESULTS, ROOT, print_table, wordnet, wordnet_corpus_embeddings, wordnet_query_embeddings, write_results
from filtered import FILTERS

K = 10
SELECTIVITIES = [("unfiltered", None)] + [(label.replace("%", "pct"), text) for label, text in FILTERS]
SQL = {  # the same filters in LanceDB's SQL
    'domain == "noun.feeling" and n_lemmas >= 3': "domain = 'noun.feeling' AND n_lemmas >= 3",
    'domain == "noun.animal" and n_lemmas >= 3': "domain = 'noun.animal' AND n_lemmas >= 3",
    'pos == "verb" and n_lemmas <= 2': "pos = 'verb' AND n_lemmas <= 2",
    'pos == "noun" and n_lemmas == 1 or pos == "adj" and n_lemmas <= 2':
        "(pos = 'noun' AND n_lemmas = 1) OR (pos = 'adj' AND n_lemmas <= 2)",
}
CALIBRATION = 100
TARGET = 0.95
WORK = ROOT / ".cache"


def rss() -> int:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def load(nq: int):
    """Unit corpus vectors, metadata, measured queries and calibration queries."""
    dataset = wordnet()
    x = wordnet_corpus_embeddings(dataset=dataset)
    x = np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)
    _, q = wordnet_query_embeddings("test", dataset=dataset)
    q = np.ascontiguousarray(q / np.linalg.norm(q, axis=1, keepdims=True), dtype=np.float32)
    return dataset, x, q[:nq], q[nq : nq + CALIBRATION]


def truth(x, q, mask):
    import faiss

    rows = np.arange(len(x)) if mask is None else np.flatnonzero(mask)
    _, pos = faiss.knn(q, x[rows], K, metric=faiss.METRIC_INNER_PRODUCT)
    return [set(rows[p[p >= 0]].tolist()) for p in pos]


def recall(found: list[set], want: list[set]) -> float:
    return float(np.mean([len(f & t) / max(len(t), 1) for f, t in zip(found, want)]))


def one_per_call(search, q, want) -> dict:
    """``search(vector [1, d]) -> set of rows``, called once per query: p50 / p99 ms and recall@10."""
    search(q[:1])  # warm
    lat, found = [], []
    for i in range(len(q)):
        t = time.perf_counter()
        found.append(search(q[i : i + 1]))
        lat.append(time.perf_counter() - t)
    return {"p50_ms": float(np.median(lat) * 1e3), "p99_ms": float(np.percentile(lat, 99) * 1e3),
            "recall": recall(found, want), "n": len(q)}


def smallest_setting(make_search, settings, qc, want_c):
    """The first setting (cheapest first) whose calibration recall reaches TARGET, else the best one."""
    best = None
    for s in settings:
        r = one_per_call(make_search(s), qc, want_c)["recall"]
        if r >= TARGET:
            return s, True
        if best is None or r > best[1]:
            best = (s, r)
    return best[0], False


# ---------------------------------------------------------------- engines (each: build, then a search factory)
def build_embedlab(x, dataset, tmp):
    from embedlab.index import Collection

    col = Collection.create(tmp / "embedlab", dim=x.shape[1], metric="cosine", index="hnsw")
    for s in range(0, len(x), 5000):
        col.add(list(range(s, min(s + 5000, len(x)))), x[s : s + 5000], metadata=dataset.metadata[s : s + 5000])
    col.close()
    col = Collection.open(tmp / "embedlab", readonly=True)
    col.search(x[:1], K, filter=FILTERS[0][1])  # loads the payload indexes

    def factory(text, setting):
        ef = None if setting == "default" else setting
        return lambda v: {i for i in col.search(v, K, filter=text, ef=ef).ids[0].tolist() if i is not None}
    return factory, ["default"], [16, 24, 32, 48, 64, 96, 128, 192, 256], col


def build_lancedb(x, dataset, tmp):
    import lancedb
    import pyarrow as pa

    meta = dataset.metadata
    table = pa.table({
        "id": pa.array(np.arange(len(x))),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1]),
        "pos": pa.array([m.get("pos") for m in meta]), "domain": pa.array([m.get("domain") for m in meta]),
        "n_lemmas": pa.array([m.get("n_lemmas") for m in meta], type=pa.int64()),
    })
    db = lancedb.connect(str(tmp / "lancedb"))
    tbl = db.create_table("docs", data=table)
    tbl.create_index(metric="cosine", index_type="IVF_HNSW_SQ", m=16, ef_construction=128)
    tbl.create_scalar_index("pos", index_type="BITMAP")
    tbl.create_scalar_index("domain", index_type="BITMAP")
    tbl.create_scalar_index("n_lemmas", index_type="BTREE")

    def factory(text, setting):
        nprobes, ef = setting

        def search(v):
            query = tbl.search(v[0]).limit(K).nprobes(nprobes).ef(ef).refine_factor(10).select(["id"])
            if text is not None:
                query = query.where(SQL[text], prefilter=True)
            return set(query.to_arrow()["id"].to_pylist())
        return search
    # ef must be >= k * refine_factor = 100 (LanceDB refuses less)
    settings = [(1, 100), (2, 100), (4, 100), (8, 100), (8, 200), (16, 200), (32, 400), (64, 800)]
    return factory, None, settings, tbl


def build_milvus_lite(x, dataset, tmp):
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(str(tmp / "milvus.db"))
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=x.shape[1])
    schema.add_field("pos", DataType.VARCHAR, max_length=64)
    schema.add_field("domain", DataType.VARCHAR, max_length=64)
    schema.add_field("n_lemmas", DataType.INT64)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="HNSW", metric_type="COSINE", params={"M": 16, "efConstruction": 128})
    client.create_collection("docs", schema=schema, index_params=index, consistency_level="Strong")
    meta = dataset.metadata
    for s in range(0, len(x), 5000):
        client.insert("docs", [{"id": i, "vector": x[i].tolist(), "pos": meta[i].get("pos", ""),
                                "domain": meta[i].get("domain", ""), "n_lemmas": meta[i].get("n_lemmas", 0)}
                               for i in range(s, min(s + 5000, len(x)))])
    client.flush("docs")
    deadline = time.monotonic() + 1800  # bounded wait for the background index build
    while True:
        info = client.describe_index("docs", "vector")
        if info.get("pending_index_rows", 0) == 0 and info.get("indexed_rows", 0) >= len(x):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"Milvus Lite did not finish its index within 30 minutes: {info}")
        time.sleep(2)
    client.load_collection("docs")

    def factory(text, ef):
        def search(v):
            res = client.search("docs", data=v.tolist(), limit=K, filter=text or "", output_fields=[],
                                search_params={"params": {"ef": ef}})
            return {h["id"] for h in res[0]}
        return search
    return factory, None, [16, 32, 64, 128, 256, 512], client


def build_faiss(x, dataset, tmp):
    """The faiss baselines of ``benchmarks/filtered.py``, one query per call, on an HNSW graph with the collection's
    settings; the allowed-row bitmap is computed outside the timed call."""
    import faiss

    from embedlab.index import Filter
    from embedlab.index.collection.metadata import MetadataTable

    graph = faiss.IndexHNSWFlat(x.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = 128
    graph.add(x)
    table = MetadataTable()
    table.apply(table.prepare(dataset.metadata, len(x), "bench"), np.arange(len(x)))
    masks = {}

    def factory(text, setting):
        if text not in masks:
            masks[text] = None if text is None else table.evaluate(Filter.parse(text), len(x), "bench")
        mask = masks[text]
        if setting == "exact":
            rows = np.arange(len(x)) if mask is None else np.flatnonzero(mask)
            return lambda v: set(rows[faiss.knn(v, x[rows], K, metric=faiss.METRIC_INNER_PRODUCT)[1][0]].tolist())
        bits = None if mask is None else np.packbits(mask, bitorder="little")
        sel = None if mask is None else faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))

        def search(v, _keep=bits):  # _keep holds the bitmap the selector points into
            params = faiss.SearchParametersHNSW(efSearch=setting) if sel is None else \
                faiss.SearchParametersHNSW(efSearch=setting, sel=sel)
            labels = graph.search(v, K, params=params)[1][0]
            return set(labels[labels >= 0].tolist())
        return search
    return factory, None, [16, 32, 64, 128, 256, 512, 1024, 2048, "exact"], graph


ENGINES = {"embedlab": build_embedlab, "lancedb": build_lancedb, "milvus_lite": build_milvus_lite, "faiss": build_faiss}


def child(engine: str, nq: int, out: Path) -> None:
    os.environ.setdefault("LANCE_LOG", "error")  # LanceDB logs a deprecation warning per query otherwise
    from embedlab.index import Filter
    from embedlab.index.collection.metadata import MetadataTable

    dataset, x, q, qc = load(nq)
    table = MetadataTable()
    table.apply(table.prepare(dataset.metadata, len(x), "bench"), np.arange(len(x)))
    tmp = Path(tempfile.mkdtemp(prefix=f"peers-{engine}-", dir=WORK))
    try:
        before, t = rss(), time.perf_counter()
        factory, fixed, sweep, handle = ENGINES[engine](x, dataset, tmp)
        build_s, built_rss = time.perf_counter() - t, rss() - before
        disk = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        print(f"{engine}: built in {build_s:.1f} s, RSS +{built_rss / 2**20:.0f} MiB, disk {disk / 2**20:.0f} MiB",
              flush=True)
        result = {"build_s": build_s, "rss_mib": built_rss / 2**20, "disk_mib": disk / 2**20,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "runs": {}}
        for label, text in SELECTIVITIES:
            mask = None if text is None else table.evaluate(Filter.parse(text), len(x), "bench")
            want, want_c = truth(x, q, mask), truth(x, qc, mask)
            runs = {}
            if fixed:  # embedlab's defaults, as shipped
                runs["default"] = {"setting": "default", "reached": None,
                                   **one_per_call(factory(text, "default"), q, want)}
            setting, reached = smallest_setting(lambda s: factory(text, s), sweep, qc, want_c)
            runs["tuned"] = {"setting": setting, "reached": reached, **one_per_call(factory(text, setting), q, want)}
            result["runs"][label] = runs
            print(engine, label, {k: {m: (round(v, 3) if isinstance(v, float) else v) for m, v in r.items()}
                                  for k, r in runs.items()}, flush=True)
        out.write_text(json.dumps(result))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nq", type=int, default=1000)
    parser.add_argument("--nq-milvus", type=int, default=200)
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    parser.add_argument("--child", choices=list(ENGINES), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--report-only", action="store_true",
                        help="re-write the results file from each engine's kept result (.cache/search-peers/), "
                             "running no engine")
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.nq, args.out)

    keep = WORK / "search-peers"  # each engine's last result, so one engine can be re-run alone
    keep.mkdir(parents=True, exist_ok=True)
    for engine in [] if args.report_only else args.engines:
        nq = args.nq_milvus if engine == "milvus_lite" else args.nq
        subprocess.run([sys.executable, __file__, "--child", engine, "--nq", str(nq), "--out",
                        str(keep / f"{engine}.json")], check=True)
    results = {e: json.loads((keep / f"{e}.json").read_text()) for e in ENGINES if (keep / f"{e}.json").exists()}
    report(results, args)


def report(results: dict, args) -> None:
    def pick(engine, label):  # embedlab is judged on its defaults; each peer at its smallest setting >= 0.95
        runs = results[engine]["runs"][label]
        return runs["default"] if engine == "embedlab" else runs["tuned"]

    figures, rows = {}, []
    labels = [label for label, _ in SELECTIVITIES]
    for label in labels:
        row = [label]
        for engine in ("embedlab", "lancedb", "milvus_lite"):
            if engine in results:
                r = pick(engine, label)
                figures[f"p50_ms_{engine}_{label}"] = r["p50_ms"]
                figures[f"p99_ms_{engine}_{label}"] = r["p99_ms"]
                figures[f"recall_at_10_{engine}_{label}"] = r["recall"]
        for engine, run in (("embedlab", "default"), ("embedlab", "tuned"), ("lancedb", "tuned"),
                            ("milvus_lite", "tuned"), ("faiss", "tuned")):
            if engine in results:
                r = results[engine]["runs"][label][run]
                mark = "" if r["reached"] in (None, True) else " (never 0.95)"
                row.append(f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} / {r['recall']:.3f} @ {r['setting']}{mark}")
        rows.append(row)
    filtered = labels[1:]
    if "embedlab" in results:
        ours = {label: pick("embedlab", label) for label in labels}
        figures["max_filtered_p50_ms"] = max(ours[label]["p50_ms"] for label in filtered)
        figures["max_filtered_to_unfiltered_p50_ratio"] = figures["max_filtered_p50_ms"] / ours["unfiltered"]["p50_ms"]
        figures["recall_at_10_min"] = min(ours[label]["recall"] for label in labels)
        peers = [e for e in ("lancedb", "milvus_lite") if e in results]
        if peers:
            figures["min_p50_ratio_best_peer_vs_embedlab"] = min(
                min(pick(e, label)["p50_ms"] for e in peers) / ours[label]["p50_ms"] for label in labels)
        if "faiss" in results:
            figures["min_p50_ratio_faiss_vs_embedlab"] = min(
                pick("faiss", label)["p50_ms"] / ours[label]["p50_ms"] for label in labels)
    for engine, r in results.items():
        figures[f"build_s_{engine}"] = r["build_s"]
        figures[f"rss_mib_{engine}"] = r["rss_mib"]
        figures[f"disk_mib_{engine}"] = r["disk_mib"]
    collections = json.loads((RESULTS / "collections.json").read_text())["figures"]
    figures["filtered_min_qps_ratio_vs_best_baseline"] = collections.get("filtered_min_qps_ratio_vs_best_baseline")
    old = RESULTS / "search_peers.json"
    kept = json.loads(old.read_text()) if old.exists() else {"figures": {}, "tables": []}
    figures["scale_curve"] = kept["figures"].get("scale_curve")  # kept by benchmarks/scale_curve.py
    engines = [c for c in ("embedlab default", "embedlab tuned", "lancedb", "milvus_lite", "faiss (bitmap free)")
               if c.split()[0] in results]
    tables = [print_table(f"WordNet-BEIR 117,659 x 384, one query per call, k=10: p50 ms / p99 ms / recall@10 @ setting "
                          f"({args.nq} queries; Milvus Lite {args.nq_milvus})", ["selectivity", *engines], rows),
              print_table("Build time, RSS growth and disk per engine", ["engine", "build s", "RSS MiB", "disk MiB"],
                          [[e, r["build_s"], r["rss_mib"], r["disk_mib"]] for e, r in results.items()])]
    tables += [t for t in kept["tables"] if t["title"].startswith("Scale curve")]
    notes = [
        "Settings: embedlab default = Collection.search with no arguments (HNSW M=16, efC=128, planner); tuned = the "
        "smallest base ef reaching recall 0.95 on 100 calibration queries (test queries past the measured ones). "
        "LanceDB setting = (nprobes, ef) with refine_factor 10; Milvus Lite and faiss setting = ef (faiss 'exact' = "
        "gather + knn). faiss gets the allowed-row bitmap for free.",
    ]
    below = [f"{engine} {label} at {r['setting']}: {r['recall']:.3f}" for engine in results for label in labels
             for r in [results[engine]["runs"][label]["tuned"]] if r["reached"] and r["recall"] < TARGET]
    if below:
        notes.append("A setting is chosen on the calibration queries, so the measured recall can land below 0.95 "
                     f"where the calibration queries reached it: {'; '.join(below)}.")
    if "embedlab" in results:
        if figures["max_filtered_p50_ms"] > 1.0:
            notes.append(f"Goal missed: the largest filtered p50 is {figures['max_filtered_p50_ms']:.2f} ms (goal <= 1 ms).")
        if figures.get("min_p50_ratio_best_peer_vs_embedlab", 1) < 1:
            notes.append("Goal missed: a peer is faster than embedlab at some selectivity "
                         f"(min best-peer / embedlab p50 = {figures['min_p50_ratio_best_peer_vs_embedlab']:.2f}).")
        if figures["max_filtered_to_unfiltered_p50_ratio"] > 3:
            notes.append("Goal missed: the slowest filtered p50 is "
                         f"{figures['max_filtered_to_unfiltered_p50_ratio']:.2f}x the unfiltered one (goal <= 3x).")
        if (figures["filtered_min_qps_ratio_vs_best_baseline"] or 0) < 1:
            notes.append("Goal missed: batched QPS (benchmarks/filtered.py, 1,000 queries per call) reaches "
                         f"{figures['filtered_min_qps_ratio_vs_best_baseline']:.2f}x the best faiss baseline at its "
                         "worst selectivity (goal >= 1x).")
        if figures["recall_at_10_min"] < TARGET:
            notes.append(f"Goal missed: embedlab's lowest recall@10 is {figures['recall_at_10_min']:.3f} (goal >= 0.95).")
    notes += [n for n in kept.get("notes", []) if n.startswith("Scale curve")]
    write_results("search_peers", figures, tables=tables, notes=notes,
                  command="python benchmarks/filtered.py && python benchmarks/search_peers.py && "
                          "python benchmarks/scale_curve.py")


if __name__ == "__main__":
    main()
