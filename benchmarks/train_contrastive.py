"""Contrastive fine-tuning on 2 CPU cores: embedlab's trainer against sentence-transformers' in the same run.

    python benchmarks/train_contrastive.py [--steps 300] [--batch-size 64] [--only NAME ...] [--fresh]

Experiments (issue 12), each run in its own process so that its peak RSS is its own:

- ``base``: nDCG@10 of the untrained default model on WordNet-BEIR test (full 117,659-document corpus).
- ``infonce``: in-batch InfoNCE (temperature 0.05 = MNRL's scale 20) on the 33,828 train-qrels pairs, no-duplicates
  batches of 64, lr 2e-5, 10% warm-up, ``--steps`` steps.
- ``st``: sentence-transformers' ``SentenceTransformerTrainer`` + ``MultipleNegativesRankingLoss`` with the same pairs,
  batch, steps, lr, warm-up, seed and the no-duplicates sampler: nDCG@10, training pairs/s and peak RSS beside ours.
- ``hardneg``: InfoNCE with one mined hard negative per row (mined through a ``Collection`` of the corpus with the
  base model; NV-Retriever's positive-aware filter: candidates scoring above 95% of the positive's score are dropped).
- ``hardneg_ft``: the same, with the negatives mined by the ``infonce`` model (training still starts from the base).
- ``gist``: GISTEmbed guided by the base model, same budget.
- ``cosent`` / ``st_cosent``: CoSENT on STS-B train, test Spearman, ours beside ST's ``CoSENTLoss``.
- ``cached``: CachedInfoNCE (GradCache) at an effective batch of 1024 against uncached InfoNCE at the largest batch
  whose peak RSS stays within the same 3 GB (probed), equal steps: peak RSS, pairs/s, nDCG@10.
- ``budget``: the best of those recipes for as many steps as fit ``--budget-minutes`` of training.
- ``throughput``: ours and ST's trainer alternated in short runs, the training pairs/s ratio.
- ``maxsim``: MaxSimContrastive (token vectors projected 384 -> 128) at the same budget; MaxSim nDCG@10 against the
  single-vector model fine-tuned with the same budget, on the same random test-query subset (brute-force MaxSim
  over 117k documents for every test query would take most of an hour here).

Trained models are evaluated with the ONNX runtime (fp32, ~2.4x faster than torch here; its cosine to torch is
measured on 256 texts and reported). Corpus embeddings are cached under ``.cache/embeddings`` keyed by model
fingerprint (a retrained model is bit-identical, so a re-run reuses them; training is always re-run unless its
result is kept: see below). Each finished experiment's result is kept in ``.cache/train-bench/<config>/<name>.json``
so an interrupted run resumes with the next experiment; ``--fresh`` re-runs everything.
Writes ``benchmarks/results/training.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

BENCH = common.ROOT / ".cache" / "train-bench"
ST_ANCHOR = {"ndcg": 0.4976, "pairs_per_second": 24.4, "rss_gb": 3.4}  # the measurement of ST's trainer
COSENT_GOAL = 0.8303
CACHED_RSS_GB = 3.0
SKIP_EVAL = False  # --no-eval: a smoke run of the training paths


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# ---------------------------------------------------------------- evaluation
def onnx_twin(folder: Path):
    """The ONNX (fp32) encoder of a trained folder and its mean / min cosine to the torch encoder on 256 texts."""
    from embedlab.models import Encoder

    torch_enc = Encoder.load(folder)
    onnx_enc = Encoder.load(folder, backend="onnx")
    ds = common.wordnet()
    texts = ds.split("test")[1][:128] + ds.corpus_texts[:128]
    a, b = torch_enc.encode(texts), onnx_enc.encode(texts)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return onnx_enc, {"onnx_cosine_mean": float(cos.mean()), "onnx_cosine_min": float(cos.min())}


def wordnet_ndcg(encoder, *, split: str = "test") -> dict:
    """nDCG@10 / recall@10 of ``encoder`` on WordNet-BEIR ``split`` over the full corpus (corpus vectors cached)."""
    from embedlab.eval import evaluate_retrieval
    from embedlab.models.cache import cached_encode

    ds = common.wordnet()
    t0 = time.perf_counter()
    corpus = cached_encode(encoder, ds.corpus_texts, root=common.CACHE, batch_size=common.BATCH_SIZE)
    metrics = evaluate_retrieval(encoder, ds, split=split, k_values=(10,), corpus_embeddings=corpus)
    return {"ndcg_at_10": metrics["ndcg@10"], "recall_at_10": metrics["recall@10"],
            "eval_seconds": time.perf_counter() - t0}


def evaluate_folder(folder: Path) -> dict:
    if SKIP_EVAL:
        return {}
    encoder, check = onnx_twin(folder)
    return {**check, **wordnet_ndcg(encoder)}


# ---------------------------------------------------------------- training, ours and theirs
def train_pairs():
    from embedlab.train import PairDataset

    return PairDataset.from_beir(common.WORDNET, "train")


def fit_ours(args, dataset, make_loss, folder: Path, *, batch_size: int | None = None,
             steps: int | None = None) -> dict:
    """Fine-tune the default model with ``make_loss(encoder)`` on ``dataset``; the trained model goes to ``folder``."""
    from embedlab.models import Encoder
    from embedlab.train import Batches, fit

    encoder = Encoder.load()
    batches = Batches(dataset, batch_size or args.batch_size, seed=args.seed)
    result = fit(encoder, batches, make_loss(encoder), steps=steps or args.steps, lr=args.lr, warmup=args.warmup, seed=args.seed,
                 out=folder, show_progress=True)
    return {"steps": result.steps, "pairs": result.pairs, "train_seconds": result.train_seconds,
            "pairs_per_second": result.pairs_per_second, "final_loss": result.losses[-1],
            "peak_rss_gb": peak_rss_gb()}


def fit_st(args, columns: dict, loss_name: str, folder: Path, *, batch_size: int | None = None) -> dict:
    """sentence-transformers' own trainer on the same rows, batch, steps, lr, warm-up and seed."""
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments, losses)
    from sentence_transformers.training_args import BatchSamplers

    from embedlab.models.folder import resolve_model_path

    model = SentenceTransformer(str(resolve_model_path(None)), device="cpu")
    loss = {"mnrl": losses.MultipleNegativesRankingLoss, "cosent": losses.CoSENTLoss}[loss_name](model)
    sampler = BatchSamplers.NO_DUPLICATES if loss_name == "mnrl" else BatchSamplers.BATCH_SAMPLER
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(folder.parent / f"{folder.name}-trainer"), max_steps=args.steps,
        per_device_train_batch_size=batch_size or args.batch_size, learning_rate=args.lr, warmup_ratio=args.warmup,
        seed=args.seed, batch_sampler=sampler, save_strategy="no", report_to="none",
        logging_steps=max(1, args.steps // 10), dataloader_drop_last=True, use_cpu=True)
    trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=Dataset.from_dict(columns), loss=loss)
    out = trainer.train()
    rss = peak_rss_gb()
    model.save(str(folder))
    seconds = out.metrics["train_runtime"]
    pairs = args.steps * (batch_size or args.batch_size)
    return {"steps": args.steps, "pairs": pairs, "train_seconds": seconds, "pairs_per_second": pairs / seconds,
            "final_loss": out.training_loss, "peak_rss_gb": rss}


# ---------------------------------------------------------------- experiments (each runs in a child process)
def exp_base(args, work: Path) -> dict:
    encoder = common.default_encoder()
    return wordnet_ndcg(encoder)


def exp_infonce(args, work: Path) -> dict:
    from embedlab.train import InfoNCE

    out = fit_ours(args, train_pairs(), lambda e: InfoNCE(), work / "infonce")
    return {**out, **evaluate_folder(work / "infonce")}


def exp_st(args, work: Path) -> dict:
    pairs = train_pairs()
    rows = pairs.batch(range(len(pairs)))
    out = fit_st(args, {"anchor": list(rows["anchor"]), "positive": list(rows["positive"])}, "mnrl", work / "st")
    return {**out, **evaluate_folder(work / "st")}


def hard_negative_run(args, work: Path, name: str, miner, corpus: np.ndarray) -> dict:
    """Mine ``--hard-negatives`` per row with ``miner`` (``corpus``: its vectors of the WordNet corpus) through a
    ``Collection``, then train InfoNCE from the base model on the mined rows for ``--steps``."""
    from embedlab.index import Collection
    from embedlab.train import InfoNCE, mine_hard_negatives

    ds = common.wordnet()
    t0 = time.perf_counter()
    with Collection.create(work / f"{name}-corpus", dim=corpus.shape[1], metric="cosine", index="flat") as coll:
        coll.add(list(range(len(corpus))), corpus, texts=ds.corpus_texts)
        mined = mine_hard_negatives(miner, train_pairs(), collection=coll, range_min=0, range_max=50,
                                    num_negatives=args.hard_negatives, margin=0.05, margin_kind="relative",
                                    out=work / f"{name}-pairs.jsonl")
    shutil.rmtree(work / f"{name}-corpus", ignore_errors=True)
    mining = {"mining_seconds": time.perf_counter() - t0, **{f"mining_{k}": v for k, v in mined.mining.as_dict().items()
                                                             if k != "out"}}
    out = fit_ours(args, mined, lambda e: InfoNCE(), work / name)
    return {**mining, **out, **evaluate_folder(work / name)}


def exp_hardneg(args, work: Path) -> dict:
    """Negatives mined by the base model (its vectors through ONNX, ~2.4x faster than torch, cosine ~1 - 1e-7)."""
    from embedlab.models import Encoder

    return hard_negative_run(args, work, "hardneg", Encoder.load(backend="onnx"), common.wordnet_corpus_embeddings())


def exp_hardneg_ft(args, work: Path) -> dict:
    """Negatives mined by the in-batch fine-tuned model of ``infonce`` (a stronger miner ranks more positives near
    the top, so fewer rows lose every candidate to the 95%-of-positive filter); training starts from the base model."""
    from embedlab.models import Encoder
    from embedlab.models.cache import cached_encode

    miner = Encoder.load(work / "infonce", backend="onnx")
    corpus = cached_encode(miner, common.wordnet().corpus_texts, root=common.CACHE, batch_size=common.BATCH_SIZE)
    return hard_negative_run(args, work, "hardneg_ft", miner, corpus)


def exp_gist(args, work: Path) -> dict:
    from embedlab.models import Encoder
    from embedlab.train import GISTEmbed

    guide = Encoder.load(backend="onnx")  # the base model; the guide only encodes (no gradients)
    out = fit_ours(args, train_pairs(), lambda e: GISTEmbed(guide), work / "gist")
    return {**out, **evaluate_folder(work / "gist")}


def sts_spearman(folder: Path | None) -> float:
    from embedlab.eval import evaluate_sts, load_sts
    from embedlab.models import Encoder

    encoder = Encoder.load(folder) if folder is not None else Encoder.load()
    return evaluate_sts(encoder, load_sts(common.STSB, "test"))["spearman"]


def cosent_args(args):
    return argparse.Namespace(**{**vars(args), "steps": args.cosent_steps})


def exp_cosent(args, work: Path) -> dict:
    from embedlab.train import CoSENT, PairDataset

    out = fit_ours(cosent_args(args), PairDataset.from_sts(common.STSB, "train"), lambda e: CoSENT(), work / "cosent",
                   batch_size=args.cosent_batch_size)
    return {**out, "sts_spearman": sts_spearman(work / "cosent"), "base_sts_spearman": sts_spearman(None)}


def exp_st_cosent(args, work: Path) -> dict:
    from embedlab.train import PairDataset

    ds = PairDataset.from_sts(common.STSB, "train")
    rows = ds.batch(range(len(ds)))
    columns = {"sentence1": list(rows["sentence1"]), "sentence2": list(rows["sentence2"]),
               "score": [float(s) for s in rows["score"]]}
    out = fit_st(cosent_args(args), columns, "cosent", work / "st_cosent", batch_size=args.cosent_batch_size)
    return {**out, "sts_spearman": sts_spearman(work / "st_cosent")}


def _cached_probe(args, work: Path) -> dict:
    """Child of ``cached``: two steps of uncached InfoNCE at ``--probe-batch``, its peak RSS."""
    from embedlab.train import InfoNCE

    folder = work / f"probe-{args.probe_batch}"
    shutil.rmtree(folder, ignore_errors=True)
    out = fit_ours(args, train_pairs(), lambda e: InfoNCE(), folder, batch_size=args.probe_batch, steps=2)
    shutil.rmtree(folder, ignore_errors=True)
    return out


def exp_cached_uncached(args, work: Path) -> dict:
    """Child of ``cached``: uncached InfoNCE at ``--probe-batch`` for ``--cached-steps`` steps, evaluated."""
    from embedlab.train import InfoNCE

    folder = work / "uncached"
    out = fit_ours(args, train_pairs(), lambda e: InfoNCE(), folder, batch_size=args.probe_batch,
                   steps=args.cached_steps)
    return {**out, **evaluate_folder(folder)}


def exp_cached_1024(args, work: Path) -> dict:
    from embedlab.train import CachedInfoNCE

    folder = work / "cached"
    out = fit_ours(args, train_pairs(), lambda e: CachedInfoNCE(mini_batch=args.mini_batch), folder,
                   batch_size=args.cached_batch, steps=args.cached_steps)
    return {**out, **evaluate_folder(folder)}


def exp_cached(args, work: Path) -> dict:
    """The largest uncached batch within the RSS budget (probed), then both losses at equal steps."""
    probes = {}
    for batch in args.probe_batches:
        probes[batch] = child("_cached_probe", args, work, extra=["--probe-batch", str(batch)])
        print(f"  uncached batch {batch}: peak RSS {probes[batch]['peak_rss_gb']:.2f} GB", flush=True)
    fitting = [b for b, p in probes.items() if p["peak_rss_gb"] <= CACHED_RSS_GB] or [min(probes)]
    largest = max(fitting)
    uncached = child("cached_uncached", args, work, extra=["--probe-batch", str(largest)])
    cached = child("cached_1024", args, work)
    return {"probes": {str(b): p["peak_rss_gb"] for b, p in probes.items()}, "uncached_batch": largest,
            "uncached": uncached, "cached": cached}


def exp_maxsim(args, work: Path) -> dict:
    """Train late interaction, then measure it with benchmarks/multivector.py (its trained_* rows) against the
    InfoNCE model of the same budget on the same test queries."""
    from embedlab.train import MaxSimContrastive

    out = fit_ours(args, train_pairs(), lambda e: MaxSimContrastive(e, dim=args.maxsim_dim), work / "maxsim")
    if SKIP_EVAL:
        return out
    cmd = [sys.executable, str(Path(__file__).parent / "multivector.py"), "--model", str(work / "maxsim"),
           "--single-vector-model", str(work / "infonce"), "--no-hnsw-row"]
    subprocess.run(cmd, check=True)
    figures = json.loads((common.RESULTS / "multivector.json").read_text())["figures"]
    return {**out, **{k: v for k, v in figures.items() if k.startswith("trained_")}}


def exp_throughput(args, work: Path) -> dict:
    """Training pairs/s of ours and ST's trainer, alternated (ours, ST, ours, ST ...) in fresh processes for
    ``--throughput-steps`` steps each, so that a slow spell on this shared machine hits both."""
    rounds = []
    for r in range(args.throughput_rounds):
        pair = {}
        for who in ("throughput_ours", "throughput_st"):
            pair[who] = child(who, args, work)["pairs_per_second"]
        rounds.append(pair)
        print(f"  round {r}: ours {pair['throughput_ours']:.1f} pairs/s, ST {pair['throughput_st']:.1f}", flush=True)
    ratios = [p["throughput_ours"] / p["throughput_st"] for p in rounds]
    return {"rounds": rounds, "ratios": ratios, "median_ratio": float(np.median(ratios)),
            "steps_per_run": args.throughput_steps}


def _throughput_ours(args, work: Path) -> dict:
    from embedlab.train import InfoNCE

    folder = work / "throughput-ours"
    shutil.rmtree(folder, ignore_errors=True)
    out = fit_ours(args, train_pairs(), lambda e: InfoNCE(), folder, steps=args.throughput_steps)
    shutil.rmtree(folder, ignore_errors=True)
    return out


def _throughput_st(args, work: Path) -> dict:
    pairs = train_pairs()
    rows = pairs.batch(range(len(pairs)))
    folder = work / "throughput-st"
    shutil.rmtree(folder, ignore_errors=True)
    short = argparse.Namespace(**{**vars(args), "steps": args.throughput_steps})
    out = fit_st(short, {"anchor": list(rows["anchor"]), "positive": list(rows["positive"])}, "mnrl", folder)
    shutil.rmtree(folder, ignore_errors=True)
    return out


def exp_budget(args, work: Path) -> dict:
    """The best recipe of ``infonce`` / ``hardneg`` / ``hardneg_ft`` (by nDCG@10 at equal steps) for as many steps as
    fit in ``--budget-minutes`` of training at the pairs/s of a 20-step probe of that recipe run just before (so
    that the step count follows this run's speed, not that of an earlier run on a busier machine)."""
    from embedlab.train import InfoNCE, PairDataset

    kept = {n: json.loads((work / f"{n}.json").read_text()) for n in ("infonce", "hardneg", "hardneg_ft")
            if (work / f"{n}.json").exists()}
    if "infonce" not in kept:
        raise SystemExit("budget: run the infonce experiment first (it picks the recipe and the step count)")
    recipe = max(kept, key=lambda n: kept[n]["ndcg_at_10"])
    dataset = train_pairs()
    if recipe != "infonce":
        dataset = PairDataset.from_jsonl(work / f"{recipe}-pairs.jsonl")  # the rows that run mined
    probe = fit_ours(args, dataset, lambda e: InfoNCE(), work / "budget-probe", steps=20)
    steps = int(args.budget_minutes * 60 * probe["pairs_per_second"] // args.batch_size)
    out = fit_ours(args, dataset, lambda e: InfoNCE(), work / "budget", steps=steps)
    return {"recipe": recipe, "budget_minutes": args.budget_minutes, "probe_pairs_per_second": probe["pairs_per_second"],
            **out, **evaluate_folder(work / "budget")}


EXPERIMENTS = {"base": exp_base, "infonce": exp_infonce, "st": exp_st, "cosent": exp_cosent,
               "st_cosent": exp_st_cosent, "hardneg": exp_hardneg, "hardneg_ft": exp_hardneg_ft, "gist": exp_gist,
               "cached": exp_cached,
               "maxsim": exp_maxsim, "throughput": exp_throughput, "budget": exp_budget}
CHILDREN = {"_cached_probe": _cached_probe, "cached_uncached": exp_cached_uncached, "cached_1024": exp_cached_1024,
            "throughput_ours": _throughput_ours, "throughput_st": _throughput_st}


# ---------------------------------------------------------------- plumbing
CONFIG_KEYS = ("no_eval", "steps", "batch_size", "lr", "warmup", "seed", "hard_negatives", "cosent_steps", "cosent_batch_size",
               "cached_steps", "cached_batch", "mini_batch", "probe_batches", "maxsim_dim", "throughput_steps",
               "throughput_rounds", "budget_minutes")


def work_dir(args) -> Path:
    """The folder of one configuration's models and kept results (settings added later, the throughput ones, are
    recorded in their experiment's result instead, so that earlier kept results stay found)."""
    config = {k: getattr(args, k) for k in CONFIG_KEYS[:CONFIG_KEYS.index("throughput_steps")]}
    return BENCH / hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def passthrough(args) -> list[str]:
    out = ["--no-eval"] if args.no_eval else []
    for k in CONFIG_KEYS[1:]:
        value = getattr(args, k)
        out += [f"--{k.replace('_', '-')}", *(map(str, value) if isinstance(value, list) else [str(value)])]
    return out


def child(name: str, args, work: Path, extra: list[str] | None = None) -> dict:
    """Run experiment ``name`` in a fresh Python process; return what it wrote."""
    result = work / f"{name}.child.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--child", name, *passthrough(args), *(extra or [])]
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    payload = json.loads(result.read_text())
    payload["wall_seconds"] = time.perf_counter() - started
    return payload


def run_child(args) -> None:
    work = work_dir(args)
    fn = EXPERIMENTS.get(args.child) or CHILDREN[args.child]
    payload = fn(args, work)
    (work / f"{args.child}.child.json").write_text(json.dumps(payload, indent=2, default=common._json_default))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=list(EXPERIMENTS), help="run these experiments (default: all)")
    parser.add_argument("--fresh", action="store_true", help="re-run experiments whose results are kept")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--warmup", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hard-negatives", type=int, default=1)
    parser.add_argument("--cosent-steps", type=int, default=360, help="CoSENT steps (360 x 16 = one STS-B epoch)")
    parser.add_argument("--cosent-batch-size", type=int, default=16)
    parser.add_argument("--cached-steps", type=int, default=10)
    parser.add_argument("--cached-batch", type=int, default=1024)
    parser.add_argument("--mini-batch", type=int, default=64, help="GradCache mini-batch")
    parser.add_argument("--probe-batches", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--probe-batch", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--maxsim-dim", type=int, default=128)
    parser.add_argument("--throughput-steps", type=int, default=30, help="steps per alternated throughput run")
    parser.add_argument("--throughput-rounds", type=int, default=2)
    parser.add_argument("--budget-minutes", type=float, default=22.0,
                        help="training minutes of the 'budget' run (its evaluation adds ~5: within 30 in all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print the tables, write no results file")
    parser.add_argument("--no-eval", action="store_true", help="smoke run: train only, evaluate nothing, write nothing")
    args = parser.parse_args()
    global SKIP_EVAL
    SKIP_EVAL = args.no_eval
    args.no_write = args.no_write or args.no_eval
    if args.child:
        run_child(args)
        return
    work = work_dir(args)
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps({k: getattr(args, k) for k in CONFIG_KEYS}, indent=2))
    results = common.kept_experiments(work, args.only or list(EXPERIMENTS), list(EXPERIMENTS),
                                      lambda name: child(name, args, work), fresh=args.fresh)
    report(args, results)


def report(args, r: dict) -> None:
    """Print the tables and write benchmarks/results/training.json from the experiments that have run."""
    figures, tables, notes = {}, [], []
    get = lambda name, key: r.get(name, {}).get(key)
    points = lambda a, b: None if a is None or b is None else 100 * (a - b)
    base, ours = get("base", "ndcg_at_10"), get("infonce", "ndcg_at_10")
    figures.update(base_ndcg_at_10=base, finetune_ndcg_at_10=ours, finetune_ndcg_gain_points=points(ours, base),
                   hard_negative_ndcg_at_10=get("hardneg", "ndcg_at_10"),
                   hard_negative_ndcg_gain_points=points(get("hardneg", "ndcg_at_10"), ours),
                   hard_negative_rows_kept=get("hardneg", "mining_kept"),
                   hard_negative_ft_miner_ndcg_at_10=get("hardneg_ft", "ndcg_at_10"),
                   hard_negative_ft_miner_ndcg_gain_points=points(get("hardneg_ft", "ndcg_at_10"), ours),
                   hard_negative_ft_miner_rows_kept=get("hardneg_ft", "mining_kept"),
                   gist_ndcg_at_10=get("gist", "ndcg_at_10"), gist_ndcg_gain_points=points(get("gist", "ndcg_at_10"), ours),
                   st_trainer_ndcg_at_10=get("st", "ndcg_at_10"),
                   st_trainer_ndcg_gap_points=points(ours, get("st", "ndcg_at_10")))
    if "infonce" in r and "st" in r:
        figures["train_peak_rss_ratio_vs_st"] = r["infonce"]["peak_rss_gb"] / r["st"]["peak_rss_gb"]
        figures["train_throughput_ratio_vs_st_full_runs"] = r["infonce"]["pairs_per_second"] / r["st"]["pairs_per_second"]
        figures["train_throughput_ratio_vs_st"] = figures["train_throughput_ratio_vs_st_full_runs"]
    if "throughput" in r:
        figures["train_throughput_ratio_vs_st"] = r["throughput"]["median_ratio"]
    rows = []
    for name, label in (("base", "base model (all-MiniLM-L6-v2)"), ("infonce", "embedlab fit, InfoNCE in-batch"),
                        ("st", "sentence-transformers trainer, MNRL"),
                        ("hardneg", "embedlab fit, InfoNCE + 1 hard negative mined by the base model"),
                        ("hardneg_ft", "embedlab fit, InfoNCE + 1 hard negative mined by the in-batch model"),
                        ("gist", "embedlab fit, GISTEmbed (guide: base model)")):
        if name in r:
            x = r[name]
            rows.append([label, x["ndcg_at_10"], x["recall_at_10"], x.get("pairs_per_second", ""),
                         x.get("peak_rss_gb", ""), x["train_seconds"] / 60 if "train_seconds" in x else ""])
    tables.append(common.print_table(
        f"WordNet-BEIR test, full corpus: {args.steps} steps, batch {args.batch_size}, lr {args.lr}, "
        f"{args.warmup:.0%} warm-up, seed {args.seed}",
        ["run", "nDCG@10", "recall@10", "train pairs/s", "peak RSS GB", "train min"], rows))
    if "throughput" in r:
        t = r["throughput"]
        tables.append(common.print_table(
            f"Training throughput, alternated runs of {t['steps_per_run']} steps in fresh processes",
            ["round", "embedlab pairs/s", "sentence-transformers pairs/s", "ratio"],
            [[i, x["throughput_ours"], x["throughput_st"], q] for i, (x, q) in enumerate(zip(t["rounds"], t["ratios"]))]))
    if "cosent" in r or "st_cosent" in r:
        figures.update(cosent_sts_spearman=100 * r["cosent"]["sts_spearman"] if "cosent" in r else None,
                       base_sts_spearman=100 * r["cosent"]["base_sts_spearman"] if "cosent" in r else None,
                       st_cosent_sts_spearman=100 * r["st_cosent"]["sts_spearman"] if "st_cosent" in r else None)
        rows = [["base model", figures["base_sts_spearman"], "", ""]]
        for name, label in (("cosent", "embedlab fit, CoSENT"), ("st_cosent", "sentence-transformers trainer, CoSENTLoss")):
            if name in r:
                rows.append([label, 100 * r[name]["sts_spearman"], r[name]["pairs_per_second"], r[name]["peak_rss_gb"]])
        tables.append(common.print_table(
            f"STS-B test Spearman x 100 after {args.cosent_steps} steps of batch {args.cosent_batch_size} on STS-B train",
            ["run", "Spearman", "train pairs/s", "peak RSS GB"], rows))
    if "cached" in r:
        c, u = r["cached"]["cached"], r["cached"]["uncached"]
        figures.update(cached_effective_batch=args.cached_batch, cached_peak_rss_gb=c["peak_rss_gb"],
                       cached_pairs_per_second=c["pairs_per_second"], uncached_batch=r["cached"]["uncached_batch"],
                       uncached_peak_rss_gb=u["peak_rss_gb"], uncached_pairs_per_second=u["pairs_per_second"],
                       cached_throughput_ratio_vs_uncached=c["pairs_per_second"] / u["pairs_per_second"],
                       cached_ndcg_at_10=c["ndcg_at_10"], uncached_ndcg_at_10=u["ndcg_at_10"])
        tables.append(common.print_table(
            f"GradCache: {args.cached_steps} steps each (mini-batch {args.mini_batch}); uncached at the largest probed "
            f"batch within {CACHED_RSS_GB:g} GB (probes: "
            + ", ".join(f"{b}: {g:.2f} GB" for b, g in r["cached"]["probes"].items()) + ")",
            ["run", "batch", "peak RSS GB", "train pairs/s", "nDCG@10"],
            [["CachedInfoNCE", args.cached_batch, c["peak_rss_gb"], c["pairs_per_second"], c["ndcg_at_10"]],
             ["InfoNCE", r["cached"]["uncached_batch"], u["peak_rss_gb"], u["pairs_per_second"], u["ndcg_at_10"]]]))
        if c["peak_rss_gb"] > CACHED_RSS_GB:
            notes.append(f"CachedInfoNCE at batch {args.cached_batch} peaked at {c['peak_rss_gb']:.2f} GB RSS, above "
                         f"the {CACHED_RSS_GB:g} GB goal.")
    if "maxsim" in r and "trained_maxsim_ndcg_at_10" in r["maxsim"]:
        m = r["maxsim"]
        figures.update(maxsim_trained_ndcg_at_10=m["trained_maxsim_ndcg_at_10"],
                       maxsim_single_vector_same_queries_ndcg_at_10=m["trained_single_vector_ndcg_at_10"],
                       muvera_trained_ndcg_at_10=m["trained_muvera_ndcg_at_10"],
                       muvera_trained_candidate_reduction=m["trained_candidate_reduction_vs_single_vector"])
        tables.append(common.print_table(
            f"Late interaction after {args.steps} steps (token vectors {args.maxsim_dim}-d), "
            f"{m['trained_wordnet_queries_measured']} random test queries, full corpus",
            ["run", "nDCG@10"],
            [["MaxSimContrastive, brute-force MaxSim", m["trained_maxsim_ndcg_at_10"]],
             ["MaxSimContrastive, MUVERA + rerank", m["trained_muvera_ndcg_at_10"]],
             ["InfoNCE single vector, same budget", m["trained_single_vector_ndcg_at_10"]]]))
        if (m["trained_candidate_reduction_vs_single_vector"] or 0) < 2:
            notes.append(f"MUVERA's candidate reduction on the trained model is "
                         f"{m['trained_candidate_reduction_vs_single_vector']}, short of the 2x goal.")
        if m["trained_maxsim_ndcg_at_10"] < m["trained_single_vector_ndcg_at_10"]:
            notes.append("MaxSim nDCG@10 of the late-interaction model is below the single-vector model trained with "
                         "the same budget on the same queries.")
    if "budget" in r:
        b = r["budget"]
        figures.update(budget_recipe=b["recipe"], budget_steps=b["steps"], budget_train_minutes=b["train_seconds"] / 60,
                       budget_ndcg_at_10=b["ndcg_at_10"])
        tables.append(common.print_table(
            f"The better recipe ({b['recipe']}) for the steps that fit {b['budget_minutes']:g} training minutes",
            ["run", "steps", "train min", "train pairs/s", "nDCG@10", "recall@10"],
            [[b["recipe"], b["steps"], b["train_seconds"] / 60, b["pairs_per_second"], b["ndcg_at_10"],
              b["recall_at_10"]]]))
    checks = [r[n][k] for n in r for k in ("onnx_cosine_min",) if isinstance(r[n], dict) and k in r[n]]
    if checks:
        figures["onnx_eval_cosine_to_torch_min"] = min(checks)
    goals = [("finetune_ndcg_at_10", ST_ANCHOR["ndcg"], "the issue's ST anchor"),
             ("hard_negative_ndcg_gain_points", 1.0, "the goal"), ("st_trainer_ndcg_gap_points", -0.3, "the goal"),
             ("train_throughput_ratio_vs_st", 1.2, "the goal"), ("cosent_sts_spearman", 100 * COSENT_GOAL, "the goal")]
    for key, goal, what in goals:
        if figures.get(key) is not None and figures[key] < goal:
            notes.append(f"{key} = {figures[key]:.4g}, below {what} ({goal:g}).")
    if figures.get("hard_negative_ft_miner_ndcg_gain_points") is not None:
        notes.append(f"Hard negatives mined by the base model keep {figures['hard_negative_rows_kept']} rows after the "
                     f"95%-of-positive filter; mined by the in-batch fine-tuned model (training still from the base) "
                     f"{figures['hard_negative_ft_miner_rows_kept']} rows and "
                     f"{figures['hard_negative_ft_miner_ndcg_gain_points']:+.2f} points over in-batch InfoNCE "
                     "(hard_negative_ft_miner_ndcg_gain_points; goal +1).")
    if figures.get("train_peak_rss_ratio_vs_st") is not None and figures["train_peak_rss_ratio_vs_st"] > 1:
        notes.append(f"Peak training RSS is {figures['train_peak_rss_ratio_vs_st']:.2f}x sentence-transformers'.")
    notes.append("Each experiment ran in its own process (peak RSS is that process's, read right after training, "
                 "before evaluation); trained models were evaluated with the ONNX runtime (fp32), whose cosine to "
                 "torch is onnx_eval_cosine_to_torch_min at worst. Results are kept per experiment in "
                 ".cache/train-bench/, with the date and commit of each run: "
                 + "; ".join(f"{n} {r[n].get('date', '?')} ({r[n].get('commit', '?')})" for n in r) + ".")
    print(json.dumps(figures, indent=2, default=common._json_default))
    if not args.no_write:
        argv = sys.argv[1:]
        if "--only" in argv:  # the results file holds every kept experiment, not just the ones this call ran
            i = argv.index("--only")
            j = i + 1
            while j < len(argv) and not argv[j].startswith("--"):
                j += 1
            argv = argv[:i] + argv[j:]
        command = " ".join(["python benchmarks/train_contrastive.py", *argv])
        path = common.write_results("training", figures, tables=tables, notes=notes, command=command)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
