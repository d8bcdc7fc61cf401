"""Scale-out (issue 14): streamed, resumable corpus encoding, in-process and on Ray Data; Milvus beside the local
collection.

Measured on WordNet-BEIR slices, every run in its own process:

- ``ray_throughput_ratio``: texts/s of ``encode_corpus(ray="local")`` (2 encoder actors on this 2-core machine,
  cluster start-up excluded, actor start-up included) over the in-process run, ``--ray-docs`` documents;
  ``ray_output_identical``: the two runs' vectors agree (cosine >= 0.99999, ids identical).
- ``resume_reencoded_shards``: an in-process run is killed (SIGKILL) in the middle of a shard and resumed; the
  shards encoded more than once (started before the kill and encoded again after).
- ``encode_peak_rss_ratio_80k_vs_20k``: peak RSS of encoding 80,000 vs 20,000 documents (memory holds one shard).

Milvus (``--part milvus``), on the WordNet-BEIR collection (117,659 x 384, default model, cached embeddings):

- ``milvus_recall_at_10`` / ``local_recall_at_10`` and ``milvus_qps`` / ``local_qps``: the same HNSW settings
  (M=16, efConstruction=128, ef=64) through ``Collection.search`` on Milvus Lite (embedded, ``backend="milvus"``)
  and on the local collection, ``--nq`` test queries in one batched call (best of ``--repeats``), unfiltered; the
  ``*_filtered_*`` figures repeat it with the 1% and 10% filters of ``benchmarks/filtered.py``. Recall is against
  the exact top 10 (among the allowed documents). ``pymilvus_direct_*``: the same Milvus collection searched with
  ``MilvusClient.search`` and the translated filter at ef=64 (Milvus's own filtered search, as a pymilvus user runs
  it). Insert throughput of both is reported as well.
- ``milvus_contract_tests_passed``: the contract suite's Milvus cases (``tests/index/collection``, ``-k milvus``
  and ``test_milvus.py``) run by pytest in a child process.

Usage: ``python benchmarks/scale.py [--part encode|milvus|all]``; writes ``benchmarks/results/scale.json`` (a part
replaces only its own figures, tables and notes).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, WORDNET, print_table, write_results  # noqa: E402

WORK = ROOT / ".cache" / "scale-bench"

CHILD = """
import json, resource, sys, time
from embedlab.models import Encoder
from embedlab.scale import encode_corpus
corpus, out, shard, ray = sys.argv[1], sys.argv[2], int(sys.argv[3]), (sys.argv[4] if sys.argv[4] != "-" else None)
encoder = Encoder.load()
runner_start = time.perf_counter()
if ray:
    from embedlab.scale.ray_encode import start_local
    start_local()
start = time.perf_counter()
slow = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
def progress(done, total):
    print(json.dumps({"done": done, "t": time.perf_counter() - start}), flush=True)
result = encode_corpus(encoder, corpus, out, shard_size=shard, ray=ray, progress=progress, show_progress=False)
seconds = time.perf_counter() - start
print(json.dumps({**result, "seconds": seconds, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}), flush=True)
"""


def slice_corpus(n: int) -> Path:
    path = WORK / f"wordnet-{n}.jsonl"
    if not path.exists():
        with open(WORDNET / "corpus.jsonl") as src, open(path, "w") as dst:
            for i, line in enumerate(src):
                if i == n:
                    break
                dst.write(line)
    return path


def child(corpus: Path, out: Path, shard: int, ray: str | None) -> dict:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    run = subprocess.run([sys.executable, "-c", CHILD, str(corpus), str(out), str(shard), ray or "-"],
                         capture_output=True, text=True, env=env, timeout=3600)
    if run.returncode != 0:
        raise SystemExit(f"the encoding child failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def vectors(out: Path):
    import numpy as np

    from embedlab.scale import read_shards

    parts = list(read_shards(out))
    return [i for p in parts for i in p[0]], np.concatenate([p[1] for p in parts])


def encode_part(args) -> tuple[dict, list, list]:
    """Ray vs in-process throughput, identical output, resume after a kill, peak RSS at 20k and 80k documents."""
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        tmp = Path(tmp)
        corpus = slice_corpus(args.ray_docs)
        local = child(corpus, tmp / "local", args.shard_size, None)
        print("in-process:", local)
        on_ray = child(corpus, tmp / "ray", args.shard_size, "local")
        print("ray:", on_ray)
        ids_l, v_l = vectors(tmp / "local")
        ids_r, v_r = vectors(tmp / "ray")
        cosine = float((v_l * v_r).sum(1).min())
        identical = ids_l == ids_r and cosine >= 0.99999

        # kill mid-shard, then resume
        small = slice_corpus(8 * 1024)
        out = tmp / "killed"
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(small), str(out), "1024", "-"],
                                stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
        times = []
        for line in proc.stdout:
            times.append(json.loads(line)["t"])
            if len(times) == 3:
                break
        per_shard = (times[2] - times[0]) / 2
        time.sleep(0.5 * per_shard)  # in the middle of the fourth shard
        alive = proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        finished = len(json.loads((out / "manifest.json").read_text())["shards"])
        resumed = child(small, out, 1024, None)
        started_before = finished + (1 if alive else 0)
        reencoded = started_before + resumed["encoded_shards"] - resumed["shards"]

        rss = {n: child(slice_corpus(n), tmp / f"rss-{n}", args.shard_size, None) for n in (20000, 80000)}
        print("rss:", {n: r["peak_rss_gb"] for n, r in rss.items()})

    figures = {
        "ray_throughput_ratio": (on_ray["rows"] / on_ray["seconds"]) / (local["rows"] / local["seconds"]),
        "ray_output_identical": identical, "ray_vs_local_cosine_min": cosine,
        "local_texts_per_s": local["rows"] / local["seconds"], "ray_texts_per_s": on_ray["rows"] / on_ray["seconds"],
        "resume_reencoded_shards": reencoded, "resume_finished_before_kill": finished,
        "encode_peak_rss_gb_20k": rss[20000]["peak_rss_gb"], "encode_peak_rss_gb_80k": rss[80000]["peak_rss_gb"],
        "encode_peak_rss_ratio_80k_vs_20k": rss[80000]["peak_rss_gb"] / rss[20000]["peak_rss_gb"],
    }
    tables = [print_table(f"Corpus encoding, {args.ray_docs:,} WordNet documents, shards of {args.shard_size}",
                          ["run", "texts/s", "seconds"],
                          [["in-process", figures["local_texts_per_s"], local["seconds"]],
                           ["Ray Data, 2 actors (num_cpus=0.5 each)", figures["ray_texts_per_s"], on_ray["seconds"]]]),
              print_table("Resume and memory", ["figure", "value", "goal"],
                          [["ray_throughput_ratio", figures["ray_throughput_ratio"], ">= 0.8"],
                           ["ray_output_identical (cosine min)", f"{identical} ({cosine:.7f})", "true"],
                           ["resume_reencoded_shards", reencoded, "<= 1"],
                           ["encode_peak_rss_ratio_80k_vs_20k", figures["encode_peak_rss_ratio_80k_vs_20k"], "<= 1.1"]])]
    return figures, tables, []


MILVUS_FILTERS = [("1pct", 'domain == "noun.animal" and n_lemmas >= 3'), ("10pct", 'pos == "verb" and n_lemmas <= 2')]
HNSW = {"M": 16, "ef_construction": 128, "ef_search": 64}
SCHEMA = {"pos": "str", "domain": "str", "n_lemmas": "int", "n_examples": "int"}  # declared: typed Milvus columns


def best_of(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def milvus_part(args) -> tuple[dict, list, list]:
    """Milvus Lite vs the local collection on WordNet: recall@10 and QPS, unfiltered and filtered; contract suite."""
    import faiss
    import numpy as np

    from common import wordnet, wordnet_corpus_embeddings, wordnet_query_embeddings
    from embedlab.index import Collection, Filter

    contract = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",  # addopts holds -q
                               "tests/index/collection/test_milvus.py", "tests/index/collection/test_collection.py",
                               "tests/scale/test_transfer.py", "-k", "milvus"], cwd=ROOT, capture_output=True, text=True)
    summary = next((line.strip("= ") for line in reversed(contract.stdout.splitlines()) if " passed" in line),
                   contract.stdout[-300:] + contract.stderr[-300:])
    print("contract suite (Milvus cases):", summary)

    dataset = wordnet()
    x = wordnet_corpus_embeddings(dataset=dataset)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    _, q = wordnet_query_embeddings("test", dataset=dataset)
    q = np.ascontiguousarray(q[: args.nq] / np.linalg.norm(q[: args.nq], axis=1, keepdims=True))
    ids, meta = dataset.corpus_ids, dataset.metadata
    row_of = {i: r for r, i in enumerate(ids)}
    figures, rows = {}, []
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        cols, insert_s = {}, {}
        for backend in ("local", "milvus"):
            t = time.perf_counter()
            col = Collection.create(Path(tmp) / backend, dim=x.shape[1], index="hnsw", backend=backend, schema=SCHEMA,
                                    **HNSW)
            for s in range(0, len(x), 5000):
                col.add(ids[s : s + 5000], x[s : s + 5000], metadata=meta[s : s + 5000])
            if backend == "milvus":  # seal the in-memory rows (brute force until flushed), then wait (bounded) for
                col.flush()          # the background index build
                deadline = time.monotonic() + 1800
                while True:
                    info = col._client.describe_index(col._name, "vector")
                    if info.get("pending_index_rows", 0) == 0 and info.get("indexed_rows", 0) >= len(x):
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"Milvus Lite did not finish its index within 30 minutes: {info}")
                    time.sleep(2)
                print("milvus index:", info)
            insert_s[backend] = time.perf_counter() - t
            cols[backend] = col
            print(f"{backend}: {len(x) / insert_s[backend]:,.0f} vectors/s inserted (index built)")
        for label, text in [("unfiltered", None)] + MILVUS_FILTERS:
            if text is None:
                allowed = np.arange(len(x))
            else:
                allowed = np.flatnonzero(cols["local"]._meta.evaluate(Filter.parse(text), len(x), "bench"))
            _, pos = faiss.knn(q, x[allowed], 10, metric=faiss.METRIC_INNER_PRODUCT)
            truth = [set(allowed[p[p >= 0]].tolist()) for p in pos]

            def recall(found: list[set]) -> float:  # recall@10 of found rows against this filter's exact top 10
                return float(np.mean([len(f & t) / max(len(t), 1) for f, t in zip(found, truth)]))
            result = {}
            for backend, col in cols.items():
                col.search(q[:10], 10, filter=text)  # warm
                secs, hits = best_of(lambda: col.search(q, 10, filter=text), args.repeats)
                result[backend] = (recall([{row_of[i] for i in r if i is not None} for r in hits.ids.tolist()]),
                                   len(q) / secs)
            # the peer as its users call it: pymilvus straight, Milvus's own filtered HNSW at the same ef
            milvus = cols["milvus"]
            expr = milvus._expr(None if text is None else Filter.parse(text), "bench")
            secs, native = best_of(lambda: milvus._client.search(milvus._name, data=q.tolist(), limit=10, filter=expr,
                                                                  search_params={"params": {"ef": HNSW["ef_search"]}},
                                                                  output_fields=[]), args.repeats)
            result["pymilvus"] = (recall([{row_of[h["id"]] for h in r} for r in native]), len(q) / secs)
            suffix = "" if text is None else f"_filtered_{label}"
            figures[f"pymilvus_direct_recall_at_10{suffix}"] = result["pymilvus"][0]
            figures[f"pymilvus_direct_qps{suffix}"] = result["pymilvus"][1]
            for backend in ("milvus", "local"):
                figures[f"{backend}_recall_at_10{suffix}"] = result[backend][0]
                figures[f"{backend}_qps{suffix}"] = result[backend][1]
            figures[f"milvus_qps_ratio_vs_local{suffix}"] = result["milvus"][1] / result["local"][1]
            rows.append([label, text or "-", f"{len(allowed) / len(x):.2%}", result["milvus"][0], result["pymilvus"][0],
                         result["local"][0], result["milvus"][1], result["pymilvus"][1], result["local"][1],
                         result["milvus"][1] / result["local"][1]])
            print(rows[-1])
        for col in cols.values():
            col.close()
    figures["milvus_contract_tests_passed"] = contract.returncode == 0
    figures["milvus_contract_tests_summary"] = summary
    figures["milvus_insert_vectors_per_s"] = len(x) / insert_s["milvus"]
    figures["local_insert_vectors_per_s"] = len(x) / insert_s["local"]
    tables = [print_table(f"Milvus Lite vs the local collection, WordNet-BEIR {len(x):,} x {x.shape[1]}, HNSW M=16 "
                          f"efConstruction=128 ef=64, {len(q)} test queries per call, k=10",
                          ["queries", "filter", "allowed", "recall@10 Milvus backend", "recall@10 pymilvus direct",
                           "recall@10 local", "QPS Milvus backend", "QPS pymilvus direct", "QPS local",
                           "QPS Milvus backend/local"], rows)]
    notes = [f"Milvus backend and local: Collection.search (ids, scores, filter translation and, on Milvus, the filter "
             "plan from Milvus's count included); pymilvus direct: MilvusClient.search on the same Milvus collection with "
             f"the translated filter at ef={HNSW['ef_search']}, what a pymilvus user gets. Milvus Lite {_version('milvus_lite')} "
             f"embedded in the process (pymilvus {_version('pymilvus')}). Insert (vectors/s, index built): Milvus "
             f"{figures['milvus_insert_vectors_per_s']:,.0f}, local {figures['local_insert_vectors_per_s']:,.0f}. "
             f"Contract suite, Milvus cases: {summary}."]
    return figures, tables, notes


def _version(module: str) -> str:
    from importlib.metadata import version

    return version(module.replace("_", "-"))


PART_FIGURES = {"encode": ("ray_", "resume_", "encode_", "local_texts"),
                "milvus": ("milvus_", "pymilvus_", "local_recall", "local_qps", "local_insert")}
PART_TABLES = {"encode": ("Corpus encoding", "Resume and memory"), "milvus": ("Milvus",)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["encode", "milvus", "all"], default="all")
    parser.add_argument("--ray-docs", type=int, default=16384)
    parser.add_argument("--shard-size", type=int, default=2048)
    parser.add_argument("--nq", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    parts = ["encode", "milvus"] if args.part == "all" else [args.part]
    path = RESULTS / "scale.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    figures = dict(old.get("figures", {}))
    tables = list(old.get("tables", []))
    notes = list(old.get("notes", []))
    for part in parts:
        got_figures, got_tables, got_notes = (encode_part if part == "encode" else milvus_part)(args)
        figures = {k: v for k, v in figures.items() if not k.startswith(PART_FIGURES[part])} | got_figures
        tables = [t for t in tables if not t["title"].startswith(PART_TABLES[part])] + got_tables
        notes = [n for n in notes if not n.startswith(f"[{part}]")] + [f"[{part}] {n}" for n in got_notes]
    notes = [n for n in notes if n.startswith(("[encode]", "[milvus]"))]
    write_results("scale", figures, tables=tables, notes=notes, command="python benchmarks/scale.py --part encode && "
                  "python benchmarks/scale.py --part milvus  (the same as python benchmarks/scale.py)")


if __name__ == "__main__":
    main()
