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
- ``funnel``: the Starbucks model's vectors of the full corpus (117,659 x 384, ONNX fp32) in a ``funnel=[64, 384]``
  collection against a full-dimension HNSW collection and exact search, one query per call.

Every model is scored at every pair on STS-B test (Spearman x 100) and WordNet test nDCG@10 x 100 over the whole
117,659-document corpus (exact search; ``--subcorpus N`` scores the judged documents and N others instead, for a quick
look). The torch runtime encodes all five depths in one pass (``Encoder.encode_layers``), ~4 minutes a model here. Also the elastic query path: queries at
fewer layers (full width) against documents at the full model. Writes ``benchmarks/results/elastic.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

BENCH = common.ROOT / ".cache" / "elastic-bench"
PAIRS = [(2, 32), (2, 64), (3, 128), (4, 192), (5, 256), (6, 384)]
TRAINED = ("plain", "starbucks", "twodmse", "matryoshka")
CONFIG_KEYS = ("steps", "batch_size", "lr", "warmup", "seed", "subcorpus")


# ---------------------------------------------------------------- evaluation at every pair
def evaluate_pairs(encoder, args) -> dict:
    """STS-B test Spearman and WordNet test nDCG@10 (both x 100) at every pair, plus the elastic query path."""
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
            **evaluate_pairs(trained, args)}


def exp_untrained(args, work: Path) -> dict:
    return evaluate_pairs(common.default_encoder(), args)


def exp_plain(args, work: Path) -> dict:
    from embedlab.train import InfoNCE

    return train(args, work, "plain", InfoNCE)


def exp_starbucks(args, work: Path) -> dict:
    from embedlab.train import InfoNCE, Starbucks

    return train(args, work, "starbucks", lambda: Starbucks(InfoNCE(), PAIRS))


def exp_twodmse(args, work: Path) -> dict:
    from embedlab.train import InfoNCE, TwoDMatryoshka

    return train(args, work, "twodmse", lambda: TwoDMatryoshka(InfoNCE(), PAIRS))


def exp_matryoshka(args, work: Path) -> dict:
    from embedlab.train import InfoNCE, Matryoshka

    return train(args, work, "matryoshka", lambda: Matryoshka(InfoNCE(), [d for _, d in PAIRS]))


def experiments() -> dict:
    return {"untrained": exp_untrained, "plain": exp_plain, "starbucks": exp_starbucks, "twodmse": exp_twodmse,
            "matryoshka": exp_matryoshka}


# ---------------------------------------------------------------- report
def margins(model: dict, base: dict) -> dict[str, float]:
    """Per pair, the smaller of (STS, nDCG) model-minus-baseline margins, in points."""
    return {key: min(model["pairs"][key][m] - base["pairs"][key][m] for m in ("sts", "ndcg")) for key in base["pairs"]}


def report(args, r: dict) -> None:
    figures, tables, notes = {}, [], []
    names = [n for n in ("untrained", "plain", "starbucks", "twodmse", "matryoshka") if n in r]
    keys = [f"{layer}x{d}" for layer, d in PAIRS]
    for metric, title in (("sts", "STS-B test Spearman x 100"), ("ndcg", "WordNet test nDCG@10 x 100")):
        tables.append(common.print_table(
            f"{title} at each (layer, dim)", ["model", *keys],
            [[n, *[r[n]["pairs"][k][metric] for k in keys]] for n in names]))
    if "plain" in r:
        base = r["plain"]
        rows = []
        for name, figure in (("starbucks", "starbucks"), ("twodmse", "twodmse"), ("matryoshka", "matryoshka")):
            if name not in r:
                continue
            m = margins(r[name], base)
            figures[f"{figure}_min_margin_vs_truncated_points"] = min(m.values())
            rows.append([name, *[m[k] for k in keys]])
            if min(m.values()) < 0:
                worst = min(m, key=m.get)
                notes.append(f"{name} is below the plain fine-tune truncated at {worst} by {-m[worst]:.2f} points "
                             "(the smaller of its STS and nDCG margins).")
        tables.append(common.print_table("Margin over the plain fine-tune truncated to the pair (points, the smaller "
                                         "of STS and nDCG)", ["model", *keys], rows))
        if "starbucks" in r:
            full = keys[-1]
            drop = max(base["pairs"][full][m] - r["starbucks"]["pairs"][full][m] for m in ("sts", "ndcg"))
            figures["starbucks_full_size_drop_points"] = drop
            if drop > 1:
                notes.append(f"Starbucks at full size is {drop:.2f} points below the plain fine-tune (goal: within 1).")
        winners = []
        for k in keys:
            for metric in ("sts", "ndcg"):
                best = max((n for n in ("starbucks", "twodmse", "matryoshka") if n in r),
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
            f"Funnel search, WordNet 117,659 documents, Starbucks model, one query per call, k=10",
            ["index", "recall@10 vs exact", "QPS", "index RAM MB"], f["rows"]))
        for goal, value, name in ((0.95, f["funnel_recall_at_10"], "recall@10"), (1.5, f["qps_ratio"], "QPS ratio")):
            if value < goal:
                notes.append(f"funnel {name} {value:.3f} is below the goal {goal}.")
        if f["ram_ratio"] > 0.5:
            notes.append(f"funnel RAM ratio {f['ram_ratio']:.3f} is above the goal 0.5.")
    figures["per_pair"] = {n: r[n]["pairs"] for n in names}
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
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = work_dir(args)
    exps = experiments()
    if args.child:
        payload = exps[args.child](args, work)
        (work / f"{args.child}.child.json").write_text(json.dumps(payload, indent=2, default=common._json_default))
        return

    def run(name: str) -> dict:
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--child", name, *common.child_argv()], check=True)
        payload = json.loads((work / f"{name}.child.json").read_text())
        return {**payload, "wall_seconds": time.perf_counter() - started}

    results = common.kept_experiments(work, args.only or list(exps), list(exps), run, fresh=args.fresh)
    report(args, results)


if __name__ == "__main__":
    main()
