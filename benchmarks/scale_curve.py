"""How search cost grows with n (issue 17): embedlab and LanceDB on seeded clustered 384-d vectors at 100k, 300k and 1M.

The vectors are 1,000 Gaussian clusters (seeded), unit-normalised. Each has one categorical field, ``cat``: 100 values,
so ``cat == "c7"`` selects 1%. Each also has one numeric field, ``num``: uniform in 0..999. The 200 queries are drawn
from the same clusters. Per size and engine, in a child process: build time, RSS growth, disk, and one-query p50
latency at the smallest setting reaching recall@10 >= 0.95 (chosen on 100 calibration queries), unfiltered and with
the 1% filter. The engines are embedlab (``Collection``, HNSW M=16 efC=128, payload indexes) and LanceDB
(IVF_HNSW_SQ m=16 efC=128 with a BITMAP index on ``cat``, prefilter, refine x10).

    python benchmarks/scale_curve.py [--sizes 100000 300000 1000000]

Writes ``benchmarks/results/scale_curve.png`` (log-log, each measure against n) and the ``scale_curve`` table in
``benchmarks/results/search_peers.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import RESULTS, print_table, write_results
from search_peers import WORK, one_per_call, rss, smallest_setting, truth

DIM, CLUSTERS, CATS, NQ = 384, 1000, 100, 200
FILTER = 'cat == "c7"'


def data(n: int):
    """``(x [n, 384] unit float32, cat codes [n], num [n], queries [NQ], calibration [100])``, seeded."""
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((CLUSTERS, DIM)).astype(np.float32)
    x = np.empty((n, DIM), np.float32)
    for s in range(0, n, 100_000):
        m = min(n, s + 100_000) - s
        x[s : s + m] = centers[rng.integers(0, CLUSTERS, m)] + 0.7 * rng.standard_normal((m, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cat, num = rng.integers(0, CATS, n), rng.integers(0, 1000, n)
    qs = centers[rng.integers(0, CLUSTERS, NQ + 100)] + 0.7 * rng.standard_normal((NQ + 100, DIM), dtype=np.float32)
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    return x, cat, num, qs[:NQ], qs[NQ:]


def build_embedlab(x, cat, num, tmp):
    from embedlab.index import Collection

    col = Collection.create(tmp / "c", dim=DIM, index="hnsw", schema={"cat": "str", "num": "int"})
    for s in range(0, len(x), 20_000):
        e = min(len(x), s + 20_000)
        col.add(list(range(s, e)), x[s:e], metadata=[{"cat": f"c{c}", "num": int(v)} for c, v in zip(cat[s:e], num[s:e])])
    col.close()
    col = Collection.open(tmp / "c", readonly=True)
    col.search(x[:1], 10, filter=FILTER)

    def factory(text, ef):
        return lambda v: {i for i in col.search(v, 10, filter=text, ef=ef).ids[0].tolist() if i is not None}
    return factory, [16, 32, 64, 96, 128, 192, 256, 384]


def build_lancedb(x, cat, num, tmp):
    import lancedb
    import pyarrow as pa

    db = lancedb.connect(str(tmp / "lancedb"))
    tbl = None
    for s in range(0, len(x), 100_000):
        e = min(len(x), s + 100_000)
        part = pa.table({"id": pa.array(np.arange(s, e)),
                         "vector": pa.FixedSizeListArray.from_arrays(pa.array(x[s:e].reshape(-1)), DIM),
                         "cat": pa.array([f"c{c}" for c in cat[s:e]]), "num": pa.array(num[s:e], type=pa.int64())})
        if tbl is None:
            tbl = db.create_table("docs", data=part)
        else:
            tbl.add(part)
    tbl.create_index(metric="cosine", index_type="IVF_HNSW_SQ", m=16, ef_construction=128)
    tbl.create_scalar_index("cat", index_type="BITMAP")
    sql = {FILTER: "cat = 'c7'"}

    def factory(text, setting):
        nprobes, ef = setting

        def search(v):
            query = tbl.search(v[0]).limit(10).nprobes(nprobes).ef(ef).refine_factor(10).select(["id"])
            if text is not None:
                query = query.where(sql[text], prefilter=True)
            return set(query.to_arrow()["id"].to_pylist())
        return search
    return factory, [(1, 100), (2, 100), (4, 100), (8, 100), (8, 200), (16, 200), (32, 400), (64, 800)]


ENGINES = {"embedlab": build_embedlab, "lancedb": build_lancedb}


def child(engine: str, n: int, out: Path) -> None:
    os.environ.setdefault("LANCE_LOG", "error")
    x, cat, num, q, qc = data(n)
    tmp = Path(tempfile.mkdtemp(prefix=f"scale-{engine}-", dir=WORK))
    try:
        before, t = rss(), time.perf_counter()
        factory, sweep = ENGINES[engine](x, cat, num, tmp)
        result = {"build_s": time.perf_counter() - t, "rss_mib": (rss() - before) / 2**20,
                  "disk_mib": sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file()) / 2**20}
        for label, text in (("unfiltered", None), ("1pct", FILTER)):
            mask = None if text is None else cat == 7
            setting, reached = smallest_setting(lambda s: factory(text, s), sweep, qc, truth(x, qc, mask))
            r = one_per_call(factory(text, setting), q, truth(x, q, mask))
            result[label] = {"setting": setting, "reached": reached, **r}
        print(engine, n, result, flush=True)
        out.write_text(json.dumps(result))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    parser.add_argument("--child", choices=list(ENGINES), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.n, args.out)
    keep = WORK / "scale-curve"
    keep.mkdir(parents=True, exist_ok=True)
    for n in args.sizes:
        for engine in args.engines:
            subprocess.run([sys.executable, __file__, "--child", engine, "--n", str(n), "--out",
                            str(keep / f"{engine}-{n}.json")], check=True)
    results = {(e, n): json.loads((keep / f"{e}-{n}.json").read_text()) for e in ENGINES for n in args.sizes
               if (keep / f"{e}-{n}.json").exists()}
    report(results, sorted(args.sizes))


def report(results: dict, sizes: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = [{"engine": e, "n": n, "build_s": r["build_s"], "rss_mib": r["rss_mib"], "disk_mib": r["disk_mib"],
              "p50_ms_unfiltered": r["unfiltered"]["p50_ms"], "recall_unfiltered": r["unfiltered"]["recall"],
              "setting_unfiltered": r["unfiltered"]["setting"], "p50_ms_1pct": r["1pct"]["p50_ms"],
              "recall_1pct": r["1pct"]["recall"], "setting_1pct": r["1pct"]["setting"]}
             for (e, n), r in sorted(results.items(), key=lambda kv: (kv[0][0], kv[0][1]))]
    measures = [("build_s", "build s"), ("rss_mib", "RSS growth MiB"), ("disk_mib", "disk MiB"),
                ("p50_ms_unfiltered", "p50 ms, unfiltered"), ("p50_ms_1pct", "p50 ms, 1% filter")]
    fig, axes = plt.subplots(1, len(measures), figsize=(4 * len(measures), 3.6))
    for ax, (key, title) in zip(axes, measures):
        for engine in ENGINES:
            pts = [(c["n"], c[key]) for c in curve if c["engine"] == engine]
            if pts:
                ax.loglog(*zip(*pts), marker="o", label=engine)
        ax.set_title(title)
        ax.set_xlabel("n")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "scale_curve.png", dpi=110)
    table = print_table("Scale curve: clustered 384-d vectors, one query per call, k=10, recall@10 >= 0.95 settings",
                        ["engine", "n", "build s", "RSS MiB", "disk MiB", "p50 ms unfiltered (recall @ setting)",
                         "p50 ms 1% filter (recall @ setting)"],
                        [[c["engine"], c["n"], c["build_s"], c["rss_mib"], c["disk_mib"],
                          f"{c['p50_ms_unfiltered']:.2f} ({c['recall_unfiltered']:.3f} @ {c['setting_unfiltered']})",
                          f"{c['p50_ms_1pct']:.2f} ({c['recall_1pct']:.3f} @ {c['setting_1pct']})"] for c in curve])
    slopes = []  # local log-log exponents between consecutive sizes: 1 = linear in n, 0 = flat; a change is a bend
    for engine in ENGINES:
        pts = [c for c in curve if c["engine"] == engine]
        for a, b in zip(pts, pts[1:]):
            slopes.append([engine, f"{a['n']:,} -> {b['n']:,}",
                           *[float(np.log(max(b[k], 1e-9) / max(a[k], 1e-9)) / np.log(b["n"] / a["n"]))
                             for k, _ in measures]])
    slope_table = print_table("Scale curve exponents: d log(measure) / d log(n) between sizes",
                              ["engine", "sizes", *[t for _, t in measures]], slopes)
    path = RESULTS / "search_peers.json"
    old = json.loads(path.read_text()) if path.exists() else {"figures": {}, "tables": [], "notes": []}
    old["figures"]["scale_curve"] = curve
    tables = [t for t in old["tables"] if not t["title"].startswith("Scale curve")] + [table, slope_table]
    notes = [n for n in old["notes"] if not n.startswith("Scale curve")] + [
        "Scale curve: plotted in benchmarks/results/scale_curve.png (log-log); the exponents table gives each curve's "
        "local slope, so a bend is where the exponent changes between size steps."]
    write_results("search_peers", old["figures"], tables=tables, notes=notes,
                  command="python benchmarks/filtered.py && python benchmarks/search_peers.py && "
                          "python benchmarks/scale_curve.py")


if __name__ == "__main__":
    main()
