"""Compression on WordNet-BEIR (default model): what each byte saved costs in nDCG@10.

float32 and every codec, with and without rescoring (top ``k * oversample`` re-ranked with float32 rows
memory-mapped from disk; binary also with int8 rows): RAM / disk bytes per vector, nDCG@10 and retention vs
float32, recall@10 of the float32 exact top-10, QPS, fit time. sentence-transformers' ``quantize_embeddings``
(int8, binary) is measured on the same vectors in the same run. Scalar codecs are calibrated on the dev-split
queries (4,301 vectors), never on the 117,659 corpus vectors they quantise; PQ/OPQ codebooks are trained both on a
seeded 20,000-row corpus sample (faiss's protocol) and on the dev queries. The test split (4,387 queries) is scored.

    python benchmarks/compression.py [--oversample 4] [--threads 1] [--fit-split dev] [--codecs a,b,...]
                                     [--codebook-sample 20000] [--corpus-slice N]

Embeddings come from the shared cache (``common.wordnet_corpus_embeddings``). Writes
``benchmarks/results/compression.json`` (+ ``compression.png``, ``compression.html``); the same measurement
runs for any BEIR folder with ``embedlab bench compression --data DIR --split test``.
"""

from __future__ import annotations

import argparse
import sys

import faiss  # noqa: F401  (its version goes into the machine line)
import numpy as np

import common

from embedlab.eval.bench.compression import DEFAULT_CODECS, CompressionInputs, run_compression
from embedlab.eval.bench.compression_report import figures, table, write_all


def corpus_slice(dataset, encoder, query_ids, size: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Every document judged for the test queries plus seeded random distractors, ``size`` in all, encoded
    through the shared cache (its own key: a different text list)."""
    from embedlab.models.cache import cached_encode

    needed = {d for q in query_ids for d in dataset.qrels["test"][q]}
    must = np.array([i for i, cid in enumerate(dataset.corpus_ids) if cid in needed], dtype=np.int64)
    others = np.setdiff1d(np.arange(len(dataset.corpus_ids)), must)
    extra = np.random.default_rng(seed).choice(others, max(0, size - len(must)), replace=False)
    keep = np.sort(np.concatenate([must, extra]))
    texts = [dataset.corpus_texts[i] for i in keep]
    return [dataset.corpus_ids[i] for i in keep], cached_encode(encoder, texts, root=common.CACHE,
                                                                 batch_size=common.BATCH_SIZE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oversample", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fit-split", default="dev", choices=["dev", "train"])
    parser.add_argument("--codecs", default=",".join(DEFAULT_CODECS))
    parser.add_argument("--qps-queries", type=int, default=1000)
    parser.add_argument("--no-peer", action="store_true", help="skip the sentence-transformers rows")
    parser.add_argument("--codebook-sample", type=int, default=20000,
                        help="corpus rows that train PQ/OPQ codebooks (0 = the calibration queries only)")
    parser.add_argument("--corpus-slice", type=int, default=0,
                        help="0 = the full corpus; N = the test split's relevant documents plus seeded random "
                             "distractors up to N documents (for machines where the full encoding is not cached)")
    args = parser.parse_args()

    encoder = common.default_encoder()
    dataset = common.wordnet()
    query_ids, queries = common.wordnet_query_embeddings("test", encoder, dataset)
    _, fit = common.wordnet_query_embeddings(args.fit_split, encoder, dataset)
    if args.corpus_slice:
        corpus_ids, corpus = corpus_slice(dataset, encoder, query_ids, args.corpus_slice)
    else:
        corpus_ids, corpus = list(dataset.corpus_ids), common.wordnet_corpus_embeddings(encoder, dataset)
    inputs = CompressionInputs(corpus, corpus_ids, queries, query_ids, dataset.qrels["test"], fit,
                               f"{len(fit)} {args.fit_split}-split queries", name="wordnet-beir",
                               codebook_sample=args.codebook_sample)
    result = run_compression(inputs, codecs=tuple(c for c in args.codecs.split(",") if c), oversample=args.oversample,
                             qps_queries=args.qps_queries, threads=args.threads, peer=not args.no_peer,
                             workdir=common.ROOT / ".cache", log=lambda s: print(s, file=sys.stderr, flush=True))
    title = (f"WordNet-BEIR test ({result.n:,} docs, {result.nq:,} queries), all-MiniLM-L6-v2 {result.dim}-d: "
             f"nDCG@10 retention vs RAM bytes")
    columns, rows = table(result)
    shown = common.print_table(title, columns, rows)
    figs = figures(result)
    meta = {"machine": common.machine(), "corpus": f"{result.n} x {result.dim}", "queries": result.nq,
            "calibration": result.fit_source, "oversample": result.oversample, "threads": result.threads}
    report = write_all(result, common.RESULTS, name="compression", title=title, meta=meta)
    for note in report["notes"]:
        print(note)
    notes = report["notes"] + [f"Skipped: {s}" for s in result.skipped] + [
        "Report: benchmarks/results/compression.html, Pareto figure: benchmarks/results/compression.png."]
    path = common.write_results("compression", figs, tables=[shown], notes=notes)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
