"""Elastic models on 2 CPU cores (issue 16): Starbucks, 2DMSE and Matryoshka against a plain fine-tune truncated.

    python benchmarks/train_elastic.py [--only NAME ...] [--fresh] [--steps 300] [--subcorpus 20000]

Experiments, each in its own process, each result kept in ``.cache/elastic-bench/<config>/<name>.json`` so an
interrupted run resumes with the next one (``--fresh`` re-runs them):

- ``untrained``: the default model (6 layers, 384 dims) truncated to each (layer, dim) pair.
- ``plain``: Training I's InfoNCE fine-tune (WordNet train pairs, batch 64, lr 2e-5, 10% warm-up, ``--steps``), the
  fair baseline: same data and budget, truncated to each pair at inference.
- ``starbucks``: ``Starbucks(InfoNCE(), PAIRS)`` (Zhuang et al. 2024; its fine-tuning stage, no MAE pre-training).
- ``twodmse``: ``TwoDMatryoshka(InfoNCE(), PAIRS)`` (Li et al. 2024), equal steps.
- ``matryoshka``: ``Matryoshka(InfoNCE(), dims of PAIRS)`` (Kusupati et al. 2022; last layer only), equal steps.
- ``starbucks_full_weighted``: Starbucks with the full pair weighted ``--full-weight`` (20) and the others 1: with equal
  weights the full pair is one term of eleven in each step, and the full model loses quality at this budget.
- ``funnel``: the ``--funnel-model``'s (default: the Matryoshka model, which trains the last layer's 64-d prefix)
  vectors of the full corpus (117,659 x 384) in a ``funnel=[64, 384]`` collection against a full-dimension HNSW
  collection and exact search: oversample chosen for recall@10 >= 0.95, QPS one query per call, index RAM; and the
  same funnel over the plain fine-tune's vectors (not trained for nested dims).

Every model is scored at every pair on STS-B test (Spearman x 100) and WordNet test nDCG@10 x 100 over the whole
117,659-document corpus (exact search; ``--subcorpus N`` scores the judged documents and N others instead, for a quick
look). The torch runtime encodes all five depths in one pass (``Encoder.encode_layers``), ~4 minutes a model here. Also the elastic query path: queries at
fewer layers (full width) against documents at the full model. Writes ``benchmarks/results/elastic.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

BENCH = common.ROOT / ".cache" / "elastic-bench"
PAIRS = [(2, 32), (2, 64), (3, 128), (4, 192), (5, 256), (6, 384)]
TRAINED = ("plain", "starbucks", "twodmse", "matryoshka", "starbucks_full_weighted")
RECIPES = ("starbucks", "twodmse", "matryoshka", "starbucks_full_weighted")  # the elastic ones, against "plain"
CONFIG_KEYS = ("steps", "batch_size", "lr", "warmup", "seed", "subcorpus")


# ---------------------------------------------------------------- evaluation at every pair
def evaluate_pairs(encoder, args, save: Path | None = None) -> dict:
    """STS-B test Spearman and WordNet test nDCG@10 (both x 100) at every pair, plus the elastic query path.
    ``save``: a folder that receives the full model's unit vectors of the corpus and the test queries (the funnel's)."""
    from scipy.stats import spearmanr

    from embedlab.eval import load_sts
    from embedlab.eval.retrieval import exact_metrics

    layers = sorted({layer for layer, _ in PAIRS})
    started = time.perf_counter()
    sts = load_sts(common.STSB, "test")
    gold = [p.score for p in sts]
    left = encoder.encode_layers([p.sentence1 for p in sts], layers, normalize=False)
    right = encoder.encode_layers([p.sentence2 for p in sts], layers, normalize=False)
    ds = common.wordnet()
    query_ids, query_texts, qrels = ds.split("test")
    doc_ids, doc_texts = ((ds.corpus_ids, ds.corpus_texts) if not args.subcorpus
                          else common.wordnet_subcorpus(ds, "test", args.subcorpus))
    queries = encoder.encode_layers(query_texts, layers, normalize=False)
    docs = encoder.encode_layers(doc_texts, layers, normalize=False, show_progress=True)

    def unit(x: np.ndarray, d: int) -> np.ndarray:
        x = x[:, :d]
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    rows = {}
    for layer, d in PAIRS:
        cos = (unit(left[layer], d) * unit(right[layer], d)).sum(1)
        ndcg = exact_metrics(unit(queries[layer], d), unit(docs[layer], d), query_ids, doc_ids, qrels)["ndcg@10"]
        rows[f"{layer}x{d}"] = {"sts": 100 * float(spearmanr(cos, gold).statistic), "ndcg": 100 * ndcg}
    full = unit(docs[layers[-1]], 384)
    if save is not None:
        save_vectors(save, full, unit(queries[layers[-1]], 384))
    elastic = {str(layer): 100 * exact_metrics(unit(queries[layer], 384), full, query_ids, doc_ids, qrels)["ndcg@10"]
               for layer in layers}
    return {"pairs": rows, "elastic_query_ndcg": elastic, "corpus_documents": len(doc_ids),
            "eval_seconds": time.perf_counter() - started}


# ---------------------------------------------------------------- experiments (each runs in a child process)
def train(args, work: Path, name: str, make_loss) -> dict:
    from embedlab.models import Encoder
    from embedlab.train import Batches, PairDataset, fit

    encoder = Encoder.load()
    batches = Batches(PairDataset.from_beir(common.WORDNET, "train"), args.batch_size, seed=args.seed)
    result = fit(encoder, batches, make_loss(), steps=args.steps, lr=args.lr, warmup=args.warmup, seed=args.seed,
                 out=work / name, show_progress=True)
    trained = Encoder.load(work / name)
    return {"steps": result.steps, "train_seconds": result.train_seconds, "final_loss": result.losses[-1],
            **evaluate_pairs(trained, args, save=work / f"{name}-vectors")}


def save_vectors(folder: Path, corpus: np.ndarray, queries: np.ndarray) -> None:
    from embedlab.files import atomic_write

    folder.mkdir(parents=True, exist_ok=True)
    for name, array in (("corpus", corpus), ("queries", queries)):
        atomic_write(folder / f"{name}.npy", np.ascontiguousarray(array, dtype=np.float32).tobytes())
    atomic_write(folder / "shape.json", json.dumps({"corpus": list(corpus.shape), "queries": list(queries.shape)}).encode())


def load_vectors(args, work: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The full model's unit vectors ``(corpus [117659, 384], test queries [4387, 384])`` of trained model ``name``
    (saved by its evaluation, else encoded now)."""
    from embedlab.models import Encoder

    folder = work / f"{name}-vectors"
    if not (folder / "shape.json").exists():
        encoder = Encoder.load(work / name)
        ds = common.wordnet()
        corpus = encoder.encode(ds.corpus_texts, batch_size=common.BATCH_SIZE, show_progress=True)
        save_vectors(folder, corpus, encoder.encode(ds.split("test")[1], batch_size=common.BATCH_SIZE))
    shape = json.loads((folder / "shape.json").read_text())
    return tuple(np.fromfile(folder / f"{n}.npy", dtype=np.float32).reshape(shape[n]) for n in ("corpus", "queries"))


def exp_funnel(args, work: Path) -> dict:
    """A ``funnel=[64, 384]`` collection of ``--funnel-model``'s corpus vectors against a full-width HNSW collection
    (defaults: M 16, efConstruction 128, efSearch 64) and exact search: the smallest oversample whose recall@10 against
    exact full-width search is >= 0.95, then QPS one query per call (alternated rounds) and index RAM per vector. The same
    funnel over the plain fine-tune's vectors (not trained for nested dims) shows what an untrained prefix costs."""
    import shutil

    from embedlab.index import Collection, exact_search

    def build(folder: Path, x: np.ndarray, **params) -> tuple[Collection, float]:
        shutil.rmtree(folder, ignore_errors=True)
        t0 = time.perf_counter()
        col = Collection.create(folder, dim=x.shape[1], **params)
        for s in range(0, len(x), 20_000):
            col.add(list(range(s, min(len(x), s + 20_000))), x[s : s + 20_000])
        return col, time.perf_counter() - t0

    def recall(col, q, exact, **options) -> float:
        ids = col.search(q, 10, **options).ids.astype(np.int64)
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)]))

    def per_call_qps(col, q, **options) -> float:
        t0 = time.perf_counter()
        for row in q:
            col.search(row[None], 10, **options)
        return len(q) / (time.perf_counter() - t0)

    out: dict = {"oversample_sweep": {}}
    for model in (args.funnel_model, "plain"):
        x, q = load_vectors(args, work, model)
        _, exact = exact_search(q, x, 10)
        funnel, funnel_build = build(work / "funnel" / model, x, funnel=[args.funnel_first, x.shape[1]])
        sweep = {}
        for oversample in (1, 2, 4, 8, 16, 32):
            sweep[oversample] = recall(funnel, q, exact, oversample=oversample)
            if sweep[oversample] >= 0.95:
                break
        out["oversample_sweep"][model] = sweep
        chosen = next((o for o, r in sweep.items() if r >= 0.95), max(sweep))
        if model != args.funnel_model:
            out["untrained_prefix"] = {"model": model, "oversample": chosen, "recall_at_10": sweep[chosen]}
            funnel.close()
            continue
        full, full_build = build(work / "funnel" / "full-hnsw", x, index="hnsw")
        probe = q[: args.qps_queries]
        rounds = []
        for _ in range(args.qps_rounds):
            rounds.append({"funnel": per_call_qps(funnel, probe, oversample=chosen), "full": per_call_qps(full, probe)})
        qps_f = float(np.median([r["funnel"] for r in rounds]))
        qps_h = float(np.median([r["full"] for r in rounds]))
        ram_f, ram_h = funnel.stats()["ram_bytes_per_vector"], full.stats()["ram_bytes_per_vector"]
        r_full = recall(full, q, exact)
        out.update(model=model, oversample=chosen, funnel_recall_at_10=sweep[chosen], full_hnsw_recall_at_10=r_full,
                   qps_funnel=qps_f, qps_full=qps_h, qps_ratio=qps_f / qps_h, qps_rounds=rounds,
                   ram_funnel=ram_f, ram_full=ram_h, ram_ratio=ram_f / ram_h, build_seconds_funnel=funnel_build,
                   build_seconds_full=full_build, queries_per_call=1, qps_queries=len(probe),
                   rows=[[f"funnel [{args.funnel_first}, 384] HNSW, oversample {chosen}", sweep[chosen], qps_f,
                          ram_f * len(x) / 2**20],
                         ["full 384-d HNSW (defaults)", r_full, qps_h, ram_h * len(x) / 2**20]])
        funnel.close()
        full.close()
    shutil.rmtree(work / "funnel", ignore_errors=True)
    return out


def exp_untrained(args, work: Path) -> dict:
    return evaluate_pairs(common.default_encoder(), args)


def exp_plain(args, work: Path) -> dict:
    from embedlab.train import InfoNCE

    return train(args, work, "plain", InfoNCE)


def exp_starbucks(args, work: Path) -> dict:
    from embedlab.train import InfoNCE, Starbucks

    return train(args, work, "starbucks", lambda: Starbucks(InfoNCE(), PAIRS))


def exp_starbucks_full_weighted(args, work: Path) -> dict:
    """Starbucks with the full pair weighted ``--full-weight`` (the others 1): the full model's share of each step's
    gradient, against the paper's equal weights."""
    from embedlab.train import InfoNCE, Starbucks

    weights = [1.0] * (len(PAIRS) - 1) + [args.full_weight]
    return {**train(args, work, "starbucks_full_weighted", lambda: Starbucks(InfoNCE(), PAIRS, weights=weights)),
            "full_weight": args.full_weight}


def exp_twodmse(args, work: Path) -> dict:
    from embedlab.train import InfoNCE, TwoDMatryoshka

    return train(args, work, "twodmse", lambda: TwoDMatryoshka(InfoNCE(), PAIRS))


def exp_matryoshka(args, work: Path) -> dict:
    from embedlab.train import InfoNCE, Matryoshka

    return train(args, work, "matryoshka", lambda: Matryoshka(InfoNCE(), [d for _, d in PAIRS]))


def experiments() -> dict:
    return {"untrained": exp_untrained, "plain": exp_plain, "starbucks": exp_starbucks, "twodmse": exp_twodmse,
            "matryoshka": exp_matryoshka, "funnel": exp_funnel, "starbucks_full_weighted": exp_starbucks_full_weighted}


# ---------------------------------------------------------------- report
def margins(model: dict, base: dict) -> dict[str, float]:
    """Per pair, the smaller of (STS, nDCG) model-minus-baseline margins, in points."""
    return {key: min(model["pairs"][key][m] - base["pairs"][key][m] for m in ("sts", "ndcg")) for key in base["pairs"]}


def report(args, r: dict) -> None:
    figures, tables, notes = {}, [], []
    names = [n for n in ("untrained", *TRAINED) if n in r]
    keys = [f"{layer}x{d}" for layer, d in PAIRS]
    for metric, title in (("sts", "STS-B test Spearman x 100"), ("ndcg", "WordNet test nDCG@10 x 100")):
        tables.append(common.print_table(
            f"{title} at each (layer, dim)", ["model", *keys],
            [[n, *[r[n]["pairs"][k][metric] for k in keys]] for n in names]))
    if "plain" in r:
        base = r["plain"]
        rows = []
        for name in RECIPES:
            if name not in r:
                continue
            m = margins(r[name], base)
            figures[f"{name}_min_margin_vs_truncated_points"] = min(m.values())
            rows.append([name, *[m[k] for k in keys]])
            if min(m.values()) < 0:
                worst = min(m, key=m.get)
                notes.append(f"{name} is below the plain fine-tune truncated at {worst} by {-m[worst]:.2f} points "
                             "(the smaller of its STS and nDCG margins).")
        tables.append(common.print_table("Margin over the plain fine-tune truncated to the pair (points, the smaller "
                                         "of STS and nDCG)", ["model", *keys], rows))
        full = keys[-1]
        for name in ("starbucks", "starbucks_full_weighted"):
            if name in r:
                drop = max(base["pairs"][full][m] - r[name]["pairs"][full][m] for m in ("sts", "ndcg"))
                figures[f"{name}_full_size_drop_points"] = drop
                if drop > 1:
                    notes.append(f"{name} at full size is {drop:.2f} points below the plain fine-tune on its worse "
                                 "metric (goal: within 1).")
        if "starbucks_full_weighted" in r:
            figures["starbucks_full_weighted_full_weight"] = r["starbucks_full_weighted"]["full_weight"]
        winners = []
        for k in keys:
            for metric in ("sts", "ndcg"):
                best = max((n for n in ("starbucks", "twodmse", "matryoshka") if n in r),  # the three recipes
                           key=lambda n: r[n]["pairs"][k][metric])
                winners.append([k, metric, best, r[best]["pairs"][k][metric]])
        tables.append(common.print_table("Which recipe wins at which pair", ["pair", "metric", "best", "value"], winners))
    elastic = [[n, *[r[n]["elastic_query_ndcg"][str(layer)] for layer in sorted({a for a, _ in PAIRS})]] for n in names]
    tables.append(common.print_table(
        "Elastic queries: query encoded with L layers (384 dims) against full-model documents, nDCG@10 x 100",
        ["model", *[f"L={layer}" for layer in sorted({a for a, _ in PAIRS})]], elastic))
    train_rows = [[n, r[n]["steps"], r[n]["train_seconds"] / 60] for n in TRAINED if n in r]
    tables.append(common.print_table("Training runs", ["model", "steps", "train minutes"], train_rows))
    if "funnel" in r:
        f = r["funnel"]
        figures.update(funnel_recall_at_10=f["funnel_recall_at_10"], funnel_qps_ratio_vs_full=f["qps_ratio"],
                       funnel_ram_ratio_vs_full=f["ram_ratio"], funnel_oversample=f["oversample"])
        tables.append(common.print_table(
            f"Funnel search, WordNet 117,659 documents, {f['model']} model, {f['qps_queries']} test queries one per "
            "call, k=10 (recall over all 4,387 test queries, against exact full-width search)",
            ["index", "recall@10 vs exact", "QPS", "index RAM MB"], f["rows"]))
        sweep = [[m, *[v.get(str(o), "") for o in (1, 2, 4, 8, 16, 32)]] for m, v in f["oversample_sweep"].items()]
        tables.append(common.print_table("Funnel recall@10 by oversample (the sweep stops at the first >= 0.95)",
                                         ["model", *[f"x{o}" for o in (1, 2, 4, 8, 16, 32)]], sweep))
        u = f["untrained_prefix"]
        figures["funnel_plain_model_recall_at_10"] = u["recall_at_10"]
        figures["funnel_plain_model_oversample"] = u["oversample"]
        notes.append(f"The same funnel over the plain fine-tune (no nested-dimension training) needs oversample "
                     f"{u['oversample']} for recall@10 {u['recall_at_10']:.3f}.")
        for goal, value, name in ((0.95, f["funnel_recall_at_10"], "recall@10"), (1.5, f["qps_ratio"], "QPS ratio")):
            if value < goal:
                notes.append(f"funnel {name} {value:.3f} is below the goal {goal}.")
        if f["ram_ratio"] > 0.5:
            notes.append(f"funnel RAM ratio {f['ram_ratio']:.3f} is above the goal 0.5.")
    common.write_results("elastic", figures, tables=tables, notes=notes)


def work_dir(args) -> Path:
    config = {k: getattr(args, k) for k in CONFIG_KEYS}
    return BENCH / hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="run these experiments (default: all, in order)")
    parser.add_argument("--fresh", action="store_true", help="re-run experiments whose results are kept")
    parser.add_argument("--steps", type=int, default=300, help="training steps of every recipe (Training I's budget)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--warmup", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subcorpus", type=int, default=0,
                        help="score WordNet on the judged documents and this many others (default 0: the whole corpus)")
    parser.add_argument("--full-weight", type=float, default=20.0,
                        help="starbucks_full_weighted: the full pair's weight (the other pairs weigh 1; 5 was tried: "
                             "full-size drop 2.31 points)")
    parser.add_argument("--funnel-model", default="matryoshka", choices=TRAINED[1:],
                        help="the trained model whose vectors the funnel searches")
    parser.add_argument("--funnel-first", type=int, default=64, help="first-stage dims of the funnel")
    parser.add_argument("--qps-queries", type=int, default=1000, help="queries sent one per call for QPS")
    parser.add_argument("--qps-rounds", type=int, default=3, help="alternated QPS rounds (funnel, full, ...)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = work_dir(args)
    kept = work / "starbucks_full_weighted.json"  # its weight is not in the folder's config: a kept other weight is stale
    if kept.exists() and json.loads(kept.read_text())["full_weight"] != args.full_weight:
        print(f"starbucks_full_weighted: kept result has another --full-weight, re-running with {args.full_weight:g}")
        kept.unlink()
    exps = experiments()
    results = common.run_experiments(__file__, work, exps, args)
    if results is None:  # this process was one experiment's child
        return
    report(args, results)


if __name__ == "__main__":
    main()
