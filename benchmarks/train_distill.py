"""Distillation and compatible upgrades on 2 CPU cores (issue 15): LEAF students, upgrades without re-indexing, soups.

    python benchmarks/train_distill.py [--only NAME ...] [--fresh] [--leaf-steps 3000 --leaf-lr 4e-4 ...] [--weights 1.0 ...]

Experiments, each in its own process, each result kept in ``.cache/distill-bench/<config>/<name>.json`` so an
interrupted run resumes with the next one (``--fresh`` re-runs them):

- ``leaf-<config>``: the default model (teacher, 6 layers) distilled into a 3-layer student made of its first 3
  blocks (``--student-init truncate``) or initialised from paraphrase-MiniLM-L3-v2 (``--student-init L3``: the
  bundled ONNX model's weights in a trainable copy, ``onnx_student``), by MSE (plus ``--leaf-cosine`` times the
  cosine term) to the teacher's vectors of the WordNet documents and train queries (no labels; batches of
  documents and of queries in turn, ``--leaf-query-weight`` query batches per document batch). Each configuration's
  result is kept under its own name, and the report lists every configuration tried (the figures are those of the
  current one). Asymmetric retrieval on WordNet test: student queries against the teacher-built index, nDCG@10
  over the teacher's own; student / teacher query texts per second (the ONNX fp32 runtime of each, same threads,
  alternated rounds in one process); STS-B test Spearman of the student.
- ``finetune_s<seed>``: Training I's plain InfoNCE fine-tune (``--steps`` 300, batch 64, lr 2e-5) with seeds 0, 1, 2:
  nDCG@10 on WordNet test (re-indexed) and dev (for the soup). Seed 0 is the "new" model of the upgrades.
- ``upgrade_map``: old = paraphrase-MiniLM-L3-v2 (the prebuilt ONNX package), new = ``finetune_s0``. The old model's
  collection of the corpus (flat: exact search, so no figure carries an ANN loss); ``align`` fits the map on the
  corpus documents (both models' vectors) and the train split's (query, relevant document) pairs (new query -> old
  document); the documents-only map is reported beside it. ``compatibility_report``: old->old, new+map->old,
  re-indexed, the backfill curve.
- ``compat_w<w>``: backward-compatible fine-tuning from the default model (same data, steps and seed as
  ``finetune_s0``) with ``old_encoder`` = the untrained default model and compatibility weight ``w``: new queries on
  the old (untrained-model) index and new->new. ``w = 0`` evaluates ``finetune_s0`` itself (no training).
- ``soup``: uniform and greedy soups of the three ``finetune_s*`` runs, greedy chosen on the dev split (a sub-corpus:
  the dev-relevant documents and 20,000 others, seeded), all scored on the test split over the full corpus.

Teacher / old-model vectors are cached under ``.cache/embeddings`` keyed by model fingerprint and text hash.
Trained models are evaluated with their ONNX fp32 runtime. Writes ``benchmarks/results/distill.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

BENCH = common.ROOT / ".cache" / "distill-bench"
TRAINING_I = {"base": 0.2034, "st_ndcg": 0.4976}  # the issue's figures (sentence-transformers' trainer, 300 steps)
DEV_DISTRACTORS = 20_000
SEEDS = (0, 1, 2)
SMOKE = 0  # --smoke N: every experiment on the first N documents (and the queries judging them), a few steps


def wordnet():
    """WordNet-BEIR, or its first ``SMOKE`` documents with the qrels and queries that judge only them."""
    import dataclasses

    ds = common.wordnet()
    if not SMOKE:
        return ds
    keep = set(ds.corpus_ids[:SMOKE])
    qrels = {split: {q: j for q, j in judged.items() if set(j) <= keep} for split, judged in ds.qrels.items()}
    return dataclasses.replace(ds, corpus_ids=ds.corpus_ids[:SMOKE], corpus_texts=ds.corpus_texts[:SMOKE],
                               metadata=ds.metadata[:SMOKE], qrels=qrels)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def ndcg(queries: np.ndarray, corpus: np.ndarray, ds, split: str, ids=None) -> float:
    from embedlab.eval.retrieval import exact_metrics

    query_ids, _, qrels = ds.split(split)
    return exact_metrics(queries, corpus, query_ids, ids or ds.corpus_ids, qrels)["ndcg@10"]


def teacher():
    from embedlab.models import Encoder

    return Encoder.load(backend="onnx")


def distill_texts(ds) -> list[str]:
    """The WordNet documents and train queries, duplicates dropped (the distillation data and its target cache)."""
    _, train_queries, _ = ds.split("train")
    return list(dict.fromkeys(ds.corpus_texts + train_queries))


def base_corpus(ds) -> np.ndarray:
    """The untrained default model's unit vectors of the corpus: the teacher's (cached) targets, normalised."""
    from embedlab.train.distill import teacher_targets

    texts = distill_texts(ds)
    targets = teacher_targets(teacher(), texts, cache=common.CACHE, show_progress=True)
    row = {t: i for i, t in enumerate(texts)}
    return unit(targets[[row[t] for t in ds.corpus_texts]])


def queries(encoder, ds, split: str = "test") -> np.ndarray:
    return encoder.encode(ds.split(split)[1], batch_size=common.BATCH_SIZE)


def corpus_of(encoder, ds) -> np.ndarray:
    from embedlab.models.cache import cached_encode

    return cached_encode(encoder, ds.corpus_texts, root=common.CACHE, batch_size=common.BATCH_SIZE)


def onnx_of(folder: Path):
    from embedlab.models import Encoder

    return Encoder.load(folder, backend="onnx")


def texts_per_second(encoders: dict, texts: list[str], rounds: int) -> dict:
    """Median texts/s of each encoder over ``rounds`` alternated passes over ``texts`` (one warm-up pass each)."""
    rates = {name: [] for name in encoders}
    for enc in encoders.values():
        enc.encode(texts[:256])
    for _ in range(rounds):
        for name, enc in encoders.items():
            t0 = time.perf_counter()
            enc.encode(texts, batch_size=common.BATCH_SIZE)
            rates[name].append(len(texts) / (time.perf_counter() - t0))
    return {name: float(np.median(r)) for name, r in rates.items()}


def sts(encoder) -> float:
    from embedlab.eval import evaluate_sts, load_sts

    return evaluate_sts(encoder, load_sts(common.STSB, "test"))["spearman"]


# ---------------------------------------------------------------- experiments
def exp_leaf(args, work: Path) -> dict:
    from embedlab.train.distill import distill

    ds = wordnet()
    texts = distill_texts(ds)
    t0 = time.perf_counter()
    index = base_corpus(ds)  # computes (or reads) the teacher's targets of every distillation text
    target_seconds = time.perf_counter() - t0
    student = initial_student(args)
    folder = work / leaf_name(args)
    groups = {"documents": ds.corpus_texts, "queries": ds.split("train")[1]}  # in turn, queries weighted
    result = distill(teacher(), student, groups, steps=args.leaf_steps, batch_size=args.leaf_batch_size,
                     lr=args.leaf_lr, cosine=args.leaf_cosine,
                     weights={"documents": 1, "queries": args.leaf_query_weight},
                     seed=args.seed, out=folder, cache=common.CACHE,
                     show_progress=True)
    student_onnx, teacher_onnx = onnx_of(folder), teacher()
    initial = initial_student(args)
    teacher_ndcg = ndcg(queries(teacher_onnx, ds), index, ds, "test")
    student_ndcg = ndcg(queries(student_onnx, ds), index, ds, "test")
    untrained_ndcg = ndcg(queries(initial, ds), index, ds, "test")
    rates = texts_per_second({"teacher": teacher_onnx, "student": student_onnx}, ds.split("test")[1], args.rounds)
    return {"teacher_ndcg_at_10": teacher_ndcg, "student_asymmetric_ndcg_at_10": student_ndcg,
            "untrained_truncated_asymmetric_ndcg_at_10": untrained_ndcg,
            "asymmetric_ndcg_ratio": student_ndcg / teacher_ndcg, "teacher_texts_per_s": rates["teacher"],
            "student_texts_per_s": rates["student"], "speedup": rates["student"] / rates["teacher"],
            "student_sts_spearman": sts(student_onnx), "teacher_sts_spearman": sts(teacher_onnx),
            "steps": result.steps, "texts": len(texts), "train_seconds": result.train_seconds,
            "target_seconds": target_seconds, "final_loss": float(np.mean(result.losses[-50:])),
            "config": {k: getattr(args, k) for k in LEAF_KEYS}}


def initial_student(args):
    """The untrained student of ``--student-init``: the teacher's first blocks, or a trainable copy of a smaller
    model (of ``--student-layers`` layers)."""
    from embedlab.models import Encoder
    from embedlab.train.distill import onnx_student, truncated_student

    smaller = STUDENT_INITS[args.student_init]
    if smaller is None:
        return truncated_student(Encoder.load(), args.student_layers)
    student = onnx_student(Encoder.load(), Encoder.load(smaller, backend="onnx"))
    if student.num_layers != args.student_layers:
        raise SystemExit(f"--student-init {args.student_init} has {student.num_layers} layers, got --student-layers "
                         f"{args.student_layers}. Pass --student-layers {student.num_layers}.")
    return student


def init_label(args) -> str:
    smaller = STUDENT_INITS[args.student_init]
    return "its first blocks" if smaller is None else f"initialised from {smaller}"


def exp_finetune(args, work: Path, seed: int) -> dict:
    import train_contrastive as tc
    from embedlab.train import InfoNCE

    ds = wordnet()
    folder = work / f"finetune_s{seed}"
    run = tc.fit_ours(argparse.Namespace(**{**vars(args), "seed": seed}), tc.train_pairs(), lambda e: InfoNCE(), folder)
    enc = onnx_of(folder)
    corpus = corpus_of(enc, ds)
    return {**run, "seed": seed, "test_ndcg_at_10": ndcg(queries(enc, ds), corpus, ds, "test"),
            "dev_ndcg_at_10": ndcg(queries(enc, ds, "dev"), corpus, ds, "dev")}


def exp_upgrade_map(args, work: Path) -> dict:
    from embedlab.eval.compat import compatibility_report
    from embedlab.index import Collection
    from embedlab.models import Encoder
    from embedlab.train.compat import align

    ds = wordnet()
    old = Encoder.load("paraphrase-MiniLM-L3-v2", backend="onnx")
    new = onnx_of(work / "finetune_s0")
    old_corpus, new_corpus = corpus_of(old, ds), corpus_of(new, ds)
    folder = work / "upgrade_map" / "old-index"
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    collection = Collection.create(folder, dim=old.dim, index="flat", encoder=old)  # exact: no ANN loss in the figures
    for i in range(0, len(ds.corpus_ids), 20_000):
        collection.add(ds.corpus_ids[i:i + 20_000], old_corpus[i:i + 20_000])
    collection.compact()
    build_seconds = time.perf_counter() - t0
    test_queries = queries(new, ds)
    align(new, old, ds.corpus_texts, cache=common.CACHE)  # documents only: both encodings are the cached corpus
    docs_only = {"new_on_old_ndcg_at_10": ndcg(new.alignment.apply(test_queries), old_corpus, ds, "test"),
                 "fit": new.alignment.fit}
    import train_contrastive as tc

    pairs = tc.train_pairs()  # the train split's (query, relevant document) rows
    pairs = pairs.batch(range(len(pairs)))
    t0 = time.perf_counter()
    align(new, old, ds.corpus_texts, pairs=(pairs["anchor"], pairs["positive"]), cache=common.CACHE)
    map_seconds = time.perf_counter() - t0
    report = compatibility_report(collection, new, ds, new_corpus=new_corpus)
    print(report.render(), flush=True)
    collection.close()
    return {**report.as_dict(), "map_fit": new.alignment.fit, "index_build_seconds": build_seconds,
            "map_seconds": map_seconds, "old_sts_spearman": sts(old), "docs_only_map": docs_only}


def exp_compat(args, work: Path, weight: float) -> dict:
    from embedlab.models import Encoder
    from embedlab.train import Batches, InfoNCE, fit

    import train_contrastive as tc

    ds = wordnet()
    old_index = base_corpus(ds)
    if weight == 0:  # the plain fine-tune: no compatibility term, its queries on the old index
        enc = onnx_of(work / "finetune_s0")
        q = queries(enc, ds)
        return {"weight": 0.0, "new_on_old_ndcg_at_10": ndcg(q, old_index, ds, "test"),
                "new_on_new_ndcg_at_10": ndcg(q, corpus_of(enc, ds), ds, "test"), "alignment": None}
    folder = work / f"compat_w{weight:g}"
    encoder = Encoder.load()
    result = fit(encoder, Batches(tc.train_pairs(), args.batch_size, seed=args.seed), InfoNCE(), steps=args.steps,
                 lr=args.lr, warmup=args.warmup, seed=args.seed, out=folder, show_progress=True,
                 old_encoder=teacher(), compat_weight=weight)
    enc = onnx_of(folder)
    q = queries(enc, ds)
    return {"weight": weight, "new_on_old_ndcg_at_10": ndcg(q, old_index, ds, "test"),
            "new_on_new_ndcg_at_10": ndcg(q, corpus_of(enc, ds), ds, "test"),
            "train_seconds": result.train_seconds, "pairs_per_second": result.pairs_per_second,
            "alignment": enc.alignment.method if enc.alignment else None}


def exp_soup(args, work: Path) -> dict:
    from embedlab.models import Encoder
    from embedlab.train.soup import soup

    ds = wordnet()
    sub_ids, sub_texts = common.wordnet_subcorpus(ds, "dev", DEV_DISTRACTORS)
    folders = [work / f"finetune_s{s}" for s in SEEDS]

    def dev(encoder) -> float:
        return ndcg(queries(encoder, ds, "dev"), encoder.encode(sub_texts, batch_size=common.BATCH_SIZE), ds, "dev",
                    ids=sub_ids)

    t0 = time.perf_counter()
    greedy = soup([Encoder.load(f) for f in folders], method="greedy", evaluate=dev)
    greedy_seconds = time.perf_counter() - t0
    uniform = soup([Encoder.load(f) for f in folders], method="uniform")
    out = {"singles_dev_subcorpus": list(greedy.scores), "greedy_members": list(greedy.members),
           "greedy_dev_subcorpus": greedy.soup_score, "greedy_seconds": greedy_seconds}
    for name, result in (("greedy", greedy), ("uniform", uniform)):
        folder = work / "soup" / name
        shutil.rmtree(folder, ignore_errors=True)
        result.encoder.save(folder)
        enc = onnx_of(folder)
        out[f"{name}_test_ndcg_at_10"] = ndcg(queries(enc, ds), corpus_of(enc, ds), ds, "test")
    return out


EXPERIMENTS = {**{f"finetune_s{s}": (lambda a, w, s=s: exp_finetune(a, w, s)) for s in SEEDS},
               "upgrade_map": exp_upgrade_map, "soup": exp_soup}
CONFIG_KEYS = ("smoke", "steps", "batch_size", "lr", "warmup", "seed")  # the fine-tuning runs' folder
LEAF_KEYS = ("student_layers", "leaf_steps", "leaf_batch_size", "leaf_lr", "leaf_cosine", "leaf_query_weight",
             "student_init")
LEAF_BEFORE = {"leaf_query_weight": 1, "student_init": "truncate"}  # what runs before these keys existed did
STUDENT_INITS = {"truncate": None, "L3": "paraphrase-MiniLM-L3-v2"}  # --student-init -> the smaller model, if any


def leaf_name(args) -> str:
    """The LEAF experiment of this configuration: ``leaf-L3-s3000-b64-lr0.0004-c24-q3``."""
    return (f"leaf-L{args.student_layers}-s{args.leaf_steps}-b{args.leaf_batch_size}-lr{args.leaf_lr:g}"
            f"-c{args.leaf_cosine:g}-q{args.leaf_query_weight}"
            + ("" if args.student_init == "truncate" else f"-init{args.student_init}"))


def experiments(args) -> dict:
    out = {leaf_name(args): exp_leaf, **EXPERIMENTS}
    for w in args.weights:
        out[f"compat_w{w:g}"] = lambda a, work, w=w: exp_compat(a, work, w)
    order = [leaf_name(args), "finetune_s0", "upgrade_map", *(f"compat_w{w:g}" for w in args.weights[:1]), "finetune_s1",
             "finetune_s2", "soup", *(f"compat_w{w:g}" for w in args.weights[1:])]
    return {name: out[name] for name in order}


def work_dir(args) -> Path:
    config = {k: getattr(args, k) for k in CONFIG_KEYS}
    return BENCH / hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="run these experiments (default: all, in order)")
    parser.add_argument("--fresh", action="store_true", help="re-run experiments whose results are kept")
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps (Training I's budget)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--warmup", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--student-layers", type=int, default=3)
    parser.add_argument("--leaf-steps", type=int, default=3000)
    parser.add_argument("--leaf-batch-size", type=int, default=64)
    parser.add_argument("--leaf-lr", type=float, default=4e-4)
    parser.add_argument("--leaf-cosine", type=float, default=24.0,
                        help="weight of the cosine term (24 is the teacher's mean squared norm: the MSE's own scale)")
    parser.add_argument("--leaf-query-weight", type=int, default=1,
                        help="query batches per document batch (3 was tried: 0.796 against 1's 0.814)")
    parser.add_argument("--student-init", choices=list(STUDENT_INITS), default="truncate",
                        help="the student's initialisation: the teacher's first blocks, or paraphrase-MiniLM-L3-v2")
    parser.add_argument("--weights", type=float, nargs="+", default=[1.0, 0.3, 0.0],
                        help="compatibility weights (the first runs before the soup's extra fine-tunes)")
    parser.add_argument("--rounds", type=int, default=5, help="alternated speed rounds (leaf)")
    parser.add_argument("--smoke", type=int, default=0, help="smoke run on the first N documents, 10 steps, no results file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global SMOKE, DEV_DISTRACTORS
    SMOKE = args.smoke
    if SMOKE:
        args.steps = args.leaf_steps = 10
        DEV_DISTRACTORS = SMOKE // 4
    work = work_dir(args)
    exps = experiments(args)
    results = common.run_experiments(__file__, work, exps, args)
    if results is None:  # this process was one experiment's child
        return
    for kept in work.glob("leaf-*.json"):  # every LEAF configuration tried, for the report
        if not kept.name.endswith(".child.json"):
            results.setdefault(kept.stem, json.loads(kept.read_text()))
    report(args, results)


def report(args, r: dict) -> None:
    figures, tables, notes = {}, [], []
    leaf = r.get(leaf_name(args))
    tried = sorted((v for k, v in r.items() if k.startswith("leaf-")), key=lambda v: v["date"])
    if tried:
        rows = [[" / ".join(str(v["config"].get(k, LEAF_BEFORE.get(k))) for k in LEAF_KEYS),
                 v["student_asymmetric_ndcg_at_10"], v["asymmetric_ndcg_ratio"], v["student_sts_spearman"],
                 v["train_seconds"] / 60] for v in tried]
        tables.append(common.print_table(
            "LEAF configurations tried (each a full run; the figures are the current configuration's)",
            ["student layers / steps / batch / lr / cosine / query weight / init", "student->teacher-index nDCG@10",
             "ratio", "STS-B", "train minutes"], previous_leaf_rows({row[0] for row in rows}) + rows))
    if leaf:
        figures.update(leaf_asymmetric_ndcg_ratio=leaf["asymmetric_ndcg_ratio"], leaf_student_speedup=leaf["speedup"],
                       leaf_student_sts_spearman=leaf["student_sts_spearman"],
                       leaf_teacher_ndcg_at_10=leaf["teacher_ndcg_at_10"],
                       leaf_student_asymmetric_ndcg_at_10=leaf["student_asymmetric_ndcg_at_10"])
        tables.append(common.print_table(
            f"LEAF: {args.student_layers}-layer student of the default model ({init_label(args)}), WordNet test "
            "(teacher-built index)",
            ["model", "queries on teacher index nDCG@10", "ratio", "query texts/s (ONNX fp32)", "STS-B Spearman"],
            [["teacher (6 layers)", leaf["teacher_ndcg_at_10"], 1.0, leaf["teacher_texts_per_s"],
              leaf["teacher_sts_spearman"]],
             [f"student ({args.student_layers} layers), distilled", leaf["student_asymmetric_ndcg_at_10"],
              leaf["asymmetric_ndcg_ratio"], leaf["student_texts_per_s"], leaf["student_sts_spearman"]],
             [f"student ({args.student_layers} layers), untrained", leaf["untrained_truncated_asymmetric_ndcg_at_10"],
              leaf["untrained_truncated_asymmetric_ndcg_at_10"] / leaf["teacher_ndcg_at_10"], "", ""]]))
        for goal, value, name in ((0.95, leaf["asymmetric_ndcg_ratio"], "nDCG ratio"), (1.8, leaf["speedup"], "speedup")):
            if value < goal:
                notes.append(f"LEAF {name} {value:.3f} is below the goal {goal}.")
    up = r.get("upgrade_map")
    if up:
        figures.update(map_new_on_old_ndcg_at_10=up["new_on_old"], old_on_old_ndcg_at_10=up["old_on_old"],
                       reindexed_ndcg_at_10=up["reindexed"], map_share_needed_for_95pct=up["share_needed"],
                       map_docs_only_new_on_old_ndcg_at_10=up["docs_only_map"]["new_on_old_ndcg_at_10"],
                       map_gap_to_reindexing_points=100 * (up["reindexed"] - up["new_on_old"]))
        fit = up["map_fit"]
        tables.append(common.print_table(
            "Upgrade without re-indexing: old paraphrase-MiniLM-L3-v2 index, new = WordNet fine-tune (map: "
            f"{fit['method']}{'' if fit['alpha'] is None else ' alpha ' + str(fit['alpha'])}, held-out cosine "
            f"{max(fit['heldout_cosine'].values()):.3f})",
            ["setup", "nDCG@10"],
            [["old model, old index", up["old_on_old"]],
             ["new model + documents-only map, old index", up["docs_only_map"]["new_on_old_ndcg_at_10"]],
             ["new model + map (documents and train pairs), old index", up["new_on_old"]],
             ["new model, re-indexed", up["reindexed"]],
             *[[f"backfill {share:.0%} re-encoded", value] for share, value in up["backfill"]]]))
        if up["new_on_old"] < up["old_on_old"]:
            notes.append(f"new+map on the old index {up['new_on_old']:.4f} is below the old model's own "
                         f"{up['old_on_old']:.4f}.")
    base = r.get("finetune_s0")
    compat = sorted((v for k, v in r.items() if k.startswith("compat_w")), key=lambda v: v["weight"])
    if base and compat:
        base_on_old = TRAINING_I["base"]
        if leaf:
            base_on_old = leaf["teacher_ndcg_at_10"]
        rows = [[c["weight"], c["new_on_old_ndcg_at_10"], c["new_on_new_ndcg_at_10"]] for c in compat]
        tables.append(common.print_table(
            "Backward-compatible fine-tuning: new queries on the untrained model's index vs re-indexed, by weight",
            ["compat weight", "new -> old nDCG@10", "new -> new nDCG@10"], rows))
        gain = base["test_ndcg_at_10"] - base_on_old
        trained = [c for c in compat if c["weight"] > 0]
        ok = [c for c in trained if c["new_on_new_ndcg_at_10"] - base_on_old >= 0.8 * gain]
        best = max(ok or trained, key=lambda c: c["new_on_old_ndcg_at_10"])
        figures.update(compat_finetune_gain_on_old_index_points=100 * (best["new_on_old_ndcg_at_10"] - base_on_old),
                       compat_finetune_weight=best["weight"],
                       compat_finetune_new_on_new_share_of_gain=(best["new_on_new_ndcg_at_10"] - base_on_old) / gain,
                       compat_curve=[[c["weight"], c["new_on_old_ndcg_at_10"], c["new_on_new_ndcg_at_10"]] for c in compat])
        if not ok:
            notes.append("no compatibility weight kept 80% of the plain fine-tune's gain on the re-indexed corpus.")
    singles = [r.get(f"finetune_s{s}") for s in SEEDS]
    soup_r = r.get("soup")
    if soup_r and all(singles):
        best_single = max(s["test_ndcg_at_10"] for s in singles)
        figures.update(soup_gain_vs_best_single_points=100 * (soup_r["greedy_test_ndcg_at_10"] - best_single),
                       uniform_soup_gain_vs_best_single_points=100 * (soup_r["uniform_test_ndcg_at_10"] - best_single))
        if soup_r["greedy_test_ndcg_at_10"] < best_single:
            notes.append(f"the greedy soup ({soup_r['greedy_test_ndcg_at_10']:.4f}) is below the best single run "
                         f"({best_single:.4f}) on test, though it led on dev: the three seeds are within 0.3 points of "
                         "each other, so averaging has little to gain at this budget.")
        tables.append(common.print_table(
            "Model soups of three fine-tunes (seeds 0, 1, 2), WordNet test nDCG@10 (greedy chosen on dev)",
            ["model", "test nDCG@10"],
            [*[[f"seed {s['seed']}", s["test_ndcg_at_10"]] for s in singles],
             [f"greedy soup (members {soup_r['greedy_members']})", soup_r["greedy_test_ndcg_at_10"]],
             ["uniform soup", soup_r["uniform_test_ndcg_at_10"]]]))
    if not figures or SMOKE:
        return
    missing = [prefix for name, prefixes in CARRIED.items() if not any(k.startswith(name) for k in r)
               for prefix in prefixes]
    common.write_results("distill", figures, tables=tables, notes=notes, carry=missing)


# experiment -> the prefixes of its figures, which a partial run carries from the previous results file
CARRIED = {"upgrade_map": ("map_", "old_on_old_", "reindexed_"), "compat_w": ("compat_",),
           "soup": ("soup_", "uniform_soup_")}


def previous_leaf_rows(current: set[str]) -> list[list[str]]:
    """The rows of LEAF configurations tried in earlier runs (from the results file; the keys a run predates are
    given their values of then, ``LEAF_BEFORE``), except those of this run."""
    path = common.RESULTS / "distill.json"
    if not path.exists():
        return []
    tables = json.loads(path.read_text()).get("tables", [])
    rows = next((t["rows"] for t in tables if t["title"].startswith("LEAF configurations tried")), [])
    rows = [[" / ".join([*row[0].split(" / "), *(str(LEAF_BEFORE[k]) for k in LEAF_KEYS[row[0].count(" / ") + 1:])]),
             *row[1:]] for row in rows]
    return [row for row in rows if row[0] not in current]


if __name__ == "__main__":
    main()
