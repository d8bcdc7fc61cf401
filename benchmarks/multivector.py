"""Multi-vector retrieval: MUVERA FDE candidates + exact MaxSim rerank vs brute-force MaxSim and vs the
single-vector heuristic, on WordNet-BEIR (117k documents) and LIMIT-small.

    python benchmarks/multivector.py [--queries 300] [--seed 0]

1. Recall of the exact-Chamfer top-10 inside the first ``c`` candidates, c in {10, 20, 50, 100, 200, 300, 500}:
   MUVERA FDE candidates (exact inner product over the FDEs) vs the single-vector heuristic of
   Dhulipala et al. 2024 §3 (token-level kNN over all document tokens, deduplicated to documents:
   every query token ranks documents by their best token, and documents enter the candidate list
   in round-robin order of those per-token ranks).
2. End to end: nDCG@10 and QPS of MUVERA + rerank vs brute-force MaxSim, measured on the same fixed
   random subset of test queries in the same run (brute force over 117k documents for all 4,388 test
   queries would take most of an hour here), plus memory per document; with the default flat FDE search, one more
   row runs the same FDEs under an HNSW graph (``--no-hnsw-row`` skips it).
3. LIMIT-small recall@2/10/20: multi-vector (MaxSim) vs single-vector (mean pooled) with the same model.

Token vectors come from the default model (float16, cached under ``.cache/embeddings``).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from embedlab.eval import load_beir  # noqa: E402
from embedlab.models.cache import cached_encode_tokens  # noqa: E402
from embedlab.eval.metrics import evaluate_run  # noqa: E402
from embedlab.eval.retrieval import run_from_positions  # noqa: E402
from embedlab.index import exact_search  # noqa: E402
from embedlab.index.multivector.maxsim import item_blocks, maxsim_search  # noqa: E402
from embedlab.index.multivector.fde import Muvera  # noqa: E402
from embedlab.index.multivector.index import MuveraIndex  # noqa: E402
from embedlab.types import MultiVectors  # noqa: E402

CANDIDATES = (10, 20, 50, 100, 200, 300, 500)
ENCODE_CHUNK = 4096  # texts per cached piece of the corpus's token vectors: an interrupted encoding resumes
TARGET_RECALL = 0.8
HEURISTIC_DEPTH = max(CANDIDATES)


def take(mv: MultiVectors, rows: np.ndarray) -> MultiVectors:
    """The items ``rows`` of ``mv`` as a new (in-memory, float32) MultiVectors."""
    return MultiVectors.from_list([np.asarray(mv[int(i)], dtype=np.float32) for i in rows])


# ---------------------------------------------------------------- the single-vector heuristic
def heuristic_candidates(queries: MultiVectors, documents: MultiVectors, depth: int) -> np.ndarray:
    """Token-level kNN candidates ``[nq, depth]`` (exact: every document token is scanned).

    For every query token, documents are ranked by their best token's inner product (the token kNN
    list deduplicated to documents, kept to ``depth``); a query's candidates are the union over its
    tokens, ordered by the best rank any of its tokens gives the document (ties: higher similarity),
    so the first ``c`` candidates are the union of every token's top-``k'`` documents for growing ``k'``.
    """
    q_tokens = np.asarray(queries.vectors, dtype=np.float32)
    t = len(q_tokens)
    best_s = np.full((t, depth), -np.inf, dtype=np.float32)
    best_i = np.full((t, depth), -1, dtype=np.int64)
    for da, db in item_blocks(documents.offsets, (1 << 26) // (4 * t)):
        off = documents.offsets[da : db + 1]
        sims = np.asarray(documents.vectors[off[0] : off[-1]], dtype=np.float32) @ q_tokens.T
        per_doc = np.maximum.reduceat(sims, off[:-1] - off[0], axis=0).T  # [t, nd_block]
        ids = np.broadcast_to(np.arange(da, db), per_doc.shape)
        s, i = np.concatenate([best_s, per_doc], axis=1), np.concatenate([best_i, ids], axis=1)
        top = np.argpartition(-s, depth - 1, axis=1)[:, :depth]
        best_s, best_i = np.take_along_axis(s, top, axis=1), np.take_along_axis(i, top, axis=1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    best_s, best_i = np.take_along_axis(best_s, order, axis=1), np.take_along_axis(best_i, order, axis=1)
    out = np.full((len(queries), depth), -1, dtype=np.int64)
    for q in range(len(queries)):
        rows = slice(queries.offsets[q], queries.offsets[q + 1])
        ids, sims = best_i[rows].ravel(), best_s[rows].ravel()
        ranks = np.tile(np.arange(depth), rows.stop - rows.start)
        key = np.lexsort((-sims, ranks))  # by rank, then by similarity
        _, first = np.unique(ids[key], return_index=True)
        chosen = ids[key][np.sort(first)][:depth]
        out[q, : len(chosen)] = chosen
    return out


def recall_in(candidates: np.ndarray, truth: np.ndarray, c: int) -> float:
    """Mean fraction of each query's ``truth`` row found in its first ``c`` candidates."""
    return float(np.mean([len(set(cand[:c]) & set(t[t >= 0])) / max((t >= 0).sum(), 1)
                          for cand, t in zip(candidates, truth)]))


def candidates_needed(recalls: dict[int, float], target: float) -> float | None:
    """Candidates needed to reach ``target`` recall, interpolated linearly in log(c); None if never reached."""
    cs = sorted(recalls)
    if recalls[cs[0]] >= target:
        return float(cs[0])
    for lo, hi in zip(cs, cs[1:]):
        if recalls[lo] < target <= recalls[hi]:
            frac = (target - recalls[lo]) / (recalls[hi] - recalls[lo])
            return float(np.exp(np.log(lo) + frac * (np.log(hi) - np.log(lo))))
    return None


def corpus_tokens(encoder, texts: list[str]) -> MultiVectors:
    """Float16 token vectors of ``texts``, encoded and cached ``ENCODE_CHUNK`` texts at a time."""
    pieces = []
    for start in range(0, len(texts), ENCODE_CHUNK):
        t0 = time.perf_counter()
        pieces.append(cached_encode_tokens(encoder, texts[start : start + ENCODE_CHUNK], root=common.CACHE,
                                           batch_size=common.BATCH_SIZE, dtype=np.float16))
        print(f"  token vectors {start + len(pieces[-1])}/{len(texts)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    offsets = np.concatenate([[0], *[p.offsets[1:] + sum(len(q.vectors) for q in pieces[:i]) for i, p in enumerate(pieces)]])
    return MultiVectors(np.concatenate([np.asarray(p.vectors) for p in pieces]), offsets)


# ---------------------------------------------------------------- WordNet-BEIR
def load_encoder(args):
    """The model whose token vectors are measured: the default model, or ``--model`` (a trained folder, run with
    the ONNX runtime for speed; its token vectors equal torch's to 1e-4, tests/train/test_maxsim.py)."""
    if not args.model:
        return common.default_encoder()
    from embedlab.models import Encoder

    return Encoder.load(args.model, backend="onnx")


def wordnet(args, tables: list, notes: list) -> dict:
    encoder = load_encoder(args)
    ds = common.wordnet()
    qids, qtexts, qrels = ds.split("test")
    rng = np.random.default_rng(args.seed)
    subset = np.sort(rng.choice(len(qids), size=min(args.queries, len(qids)), replace=False))
    # documents in encoding order: the measured queries' relevant documents first, then a seeded permutation
    position = {d: i for i, d in enumerate(ds.corpus_ids)}
    first = sorted({position[d] for q in subset for d in qrels[qids[q]]})
    perm = rng.permutation(len(ds.corpus_ids))
    order = np.concatenate([first, perm[~np.isin(perm, first)]]).astype(np.int64)
    cut = bool(args.max_docs) and args.max_docs < len(order)
    keep = order[: max(ENCODE_CHUNK, args.max_docs // ENCODE_CHUNK * ENCODE_CHUNK)] if cut else order
    ds.corpus_ids = [ds.corpus_ids[i] for i in keep]
    ds.corpus_texts = [ds.corpus_texts[i] for i in keep]
    queries_all = cached_encode_tokens(encoder, qtexts, root=common.CACHE, batch_size=common.BATCH_SIZE, dtype=np.float32)
    t0 = time.perf_counter()
    docs = corpus_tokens(encoder, ds.corpus_texts)
    print(f"document token vectors: {docs.vectors.shape} ({time.perf_counter() - t0:.0f} s, cached after the first run)")
    if args.encode_only:
        return {}
    if cut:
        notes.append(f"WordNet-BEIR was cut to {len(keep):,} of its {len(order):,} documents (--max-docs {args.max_docs}: "
                     "the measured queries' relevant documents plus a seeded random sample), because encoding token "
                     "vectors for the whole corpus did not fit the session on this shared 2-core machine.")
    queries = take(queries_all, subset)
    sub_ids = [qids[i] for i in subset]
    sub_qrels = {q: qrels[q] for q in sub_ids}
    n, nq = len(docs), len(queries)
    avg_doc_tokens, avg_q_tokens = docs.offsets[-1] / n, queries.offsets[-1] / nq
    print(f"{n} documents ({avg_doc_tokens:.1f} tokens each), {nq} of {len(qids)} test queries ({avg_q_tokens:.1f} tokens)")

    # brute-force MaxSim: the ground truth and the speed reference
    t0 = time.perf_counter()
    bf_scores, bf_pos = maxsim_search(queries, docs, 100)
    bf_seconds = time.perf_counter() - t0
    bf_qps = nq / bf_seconds
    truth = bf_pos[:, :10]
    maxsim_ndcg = evaluate_run(run_from_positions(sub_ids, ds.corpus_ids, bf_scores, bf_pos), sub_qrels, (10,))["ndcg@10"]
    print(f"brute-force MaxSim: {bf_seconds:.1f} s, {bf_qps:.2f} QPS, nDCG@10 {maxsim_ndcg:.4f}")

    # single-vector baseline (pooled embeddings from the shared cache) on the same queries, for context
    single_ndcg = None
    if args.single_vector_model:  # a fine-tuned single-vector model (its corpus vectors cached by its evaluation)
        from embedlab.models import Encoder
        from embedlab.models.cache import cached_encode

        single = Encoder.load(args.single_vector_model, backend="onnx")
        full = common.wordnet()
        corpus_vectors = cached_encode(single, full.corpus_texts, root=common.CACHE, batch_size=common.BATCH_SIZE)
        if keep is not None:
            corpus_vectors = corpus_vectors[keep]
        sv_s, sv_p = exact_search(single.encode([qtexts[i] for i in subset]), corpus_vectors, 10)
        single_ndcg = evaluate_run(run_from_positions(sub_ids, ds.corpus_ids, sv_s, sv_p), sub_qrels, (10,))["ndcg@10"]
        del corpus_vectors
    elif common.wordnet_encode_stats(encoder) is not None:  # never start a second full-corpus encoding here
        full = common.wordnet()
        corpus_vectors = common.wordnet_corpus_embeddings(encoder, full)
        if keep is not None:
            corpus_vectors = corpus_vectors[keep]
        all_ids, query_vectors = common.wordnet_query_embeddings("test", encoder, full)
        row = {q: i for i, q in enumerate(all_ids)}
        sv_s, sv_p = exact_search(query_vectors[[row[q] for q in sub_ids]], corpus_vectors, 10)
        single_ndcg = evaluate_run(run_from_positions(sub_ids, ds.corpus_ids, sv_s, sv_p), sub_qrels, (10,))["ndcg@10"]
        del corpus_vectors

    # 1. recall of the exact top-10 inside the candidates
    t0 = time.perf_counter()
    heuristic = heuristic_candidates(queries, docs, HEURISTIC_DEPTH)
    print(f"single-vector heuristic candidates: {time.perf_counter() - t0:.1f} s")
    curves = {"single-vector heuristic (token kNN)": {c: recall_in(heuristic, truth, c) for c in CANDIDATES}}
    default_name = "MUVERA defaults k_sim=5 d_proj=16 r_reps=20 (10,240 d)"
    tuned = {"k_sim": args.k_sim, "d_proj": args.d_proj, "r_reps": args.r_reps}
    tuned_name = f"MUVERA k_sim={args.k_sim} d_proj={args.d_proj} r_reps={args.r_reps} ({Muvera(**tuned).dim:,} d)"
    for name, muvera in ((default_name, Muvera(seed=args.seed)), (tuned_name, Muvera(seed=args.seed, **tuned))):
        if name in curves:
            continue
        index = MuveraIndex(docs.dim, muvera=muvera, fde_codec="float16")  # exact FDE inner products, half the memory
        t0 = time.perf_counter()
        index.add(docs)
        print(f"{name}: FDEs of {n} documents in {time.perf_counter() - t0:.0f} s", flush=True)
        curves[name] = {c: recall_in(index.candidates_for(queries, HEURISTIC_DEPTH), truth, c) for c in CANDIDATES}
        del index
        gc.collect()
    muvera = Muvera(seed=args.seed, final_dim=args.final_dim or None, **tuned)
    e2e_name = f"{tuned_name.split(' (')[0]}, final_dim={args.final_dim or None} ({muvera.dim:,} d, {args.index} {args.fde_codec})"
    index = MuveraIndex(docs.dim, muvera=muvera, index=args.index, fde_codec=args.fde_codec, candidates=args.candidates)
    t0 = time.perf_counter()
    index.add(docs)
    build_seconds = time.perf_counter() - t0
    print(f"{e2e_name}: built in {build_seconds:.0f} s", flush=True)
    curves[e2e_name] = {c: recall_in(index.candidates_for(queries, HEURISTIC_DEPTH), truth, c) for c in CANDIDATES}
    tables.append(common.print_table(
        f"WordNet-BEIR: recall of the exact-MaxSim top-10 inside the first c candidates ({nq} test queries)",
        ["method", *[f"c={c}" for c in CANDIDATES]],
        [[name, *[curve[c] for c in CANDIDATES]] for name, curve in curves.items()]))
    sv_curve = curves["single-vector heuristic (token kNN)"]
    best_name = max((default_name, tuned_name), key=lambda k: sum(curves[k].values()))
    muvera_curve = curves[best_name]
    target = TARGET_RECALL
    if max(muvera_curve.values()) < target or max(sv_curve.values()) < target:
        target = min(max(muvera_curve.values()), max(sv_curve.values()))
        notes.append(f"Recall {TARGET_RECALL} of the exact top-10 is not reached by both methods within "
                     f"{max(CANDIDATES)} candidates; the candidate reduction is measured at recall {target:.3f}, "
                     "the highest both reach.")
    c_mu, c_sv = candidates_needed(muvera_curve, target), candidates_needed(sv_curve, target)
    reduction = c_sv / c_mu if c_mu and c_sv else None

    # 2. end to end: MUVERA + rerank vs brute force, same queries, same run
    index.documents  # noqa: B018 -- materialise the token store before timing
    rows = []
    e2e = {}
    for c in sorted({args.candidates, *args.sweep}):
        t0 = time.perf_counter()
        hits = index.search(queries, 10, candidates=c)
        seconds = time.perf_counter() - t0
        ndcg = evaluate_run(run_from_positions(sub_ids, ds.corpus_ids, hits.scores, hits.ids), sub_qrels, (10,))["ndcg@10"]
        top10 = float(np.mean([len(set(a[:10]) & set(b)) / 10 for a, b in zip(hits.ids, truth)]))
        e2e[c] = (ndcg, nq / seconds, top10)
        rows.append([f"MUVERA+rerank c={c}", ndcg, nq / seconds, nq / seconds / bf_qps, top10])
    hnsw = {}
    if args.index == "flat" and args.hnsw_row:  # the same FDEs under an HNSW graph, at the headline candidate count
        graph = MuveraIndex(docs.dim, muvera=muvera, index="hnsw", fde_codec=args.fde_codec, candidates=args.candidates)
        t0 = time.perf_counter()
        graph.add(docs)
        hnsw["build_seconds"] = time.perf_counter() - t0
        print(f"HNSW over the FDEs: built in {hnsw['build_seconds']:.0f} s", flush=True)
        graph.documents  # noqa: B018 -- materialise the token store before timing
        t0 = time.perf_counter()
        hits = graph.search(queries, 10)
        seconds = time.perf_counter() - t0
        hnsw["ndcg"] = evaluate_run(run_from_positions(sub_ids, ds.corpus_ids, hits.scores, hits.ids), sub_qrels,
                                    (10,))["ndcg@10"]
        hnsw["qps"] = nq / seconds
        hnsw["top10"] = float(np.mean([len(set(a[:10]) & set(b)) / 10 for a, b in zip(hits.ids, truth)]))
        rows.append([f"MUVERA (HNSW M={graph.M}, ef={graph.ef_search})+rerank c={args.candidates}", hnsw["ndcg"],
                     hnsw["qps"], hnsw["qps"] / bf_qps, hnsw["top10"]])
        del graph
        gc.collect()
    rows.append(["brute-force MaxSim", maxsim_ndcg, bf_qps, 1.0, 1.0])
    rows.append(["single-vector (mean pooled, exact)", single_ndcg, None, None, None])
    tables.append(common.print_table(
        f"WordNet-BEIR end to end ({nq} test queries, one batch; index={args.index}, fde_codec={args.fde_codec}, "
        f"FDE dim {index.muvera.dim:,})",
        ["method", "nDCG@10", "QPS", "QPS / brute force", "recall of exact top-10"],
        [[r[0], *["" if v is None else v for v in r[1:]]] for r in rows]))
    ndcg, qps, top10 = e2e[args.candidates]
    ndcg_all = None
    if not cut:  # every test query, for the record
        all_hits = index.search(queries_all, 10)
        ndcg_all = evaluate_run(run_from_positions(qids, ds.corpus_ids, all_hits.scores, all_hits.ids), qrels, (10,))["ndcg@10"]
    sizes = index.bytes_per_document()
    tables.append(common.print_table("WordNet-BEIR: bytes per document", ["store", "bytes"],
                                     [["FDE index", sizes["fde"]], ["token vectors (float16) + offset", sizes["tokens"]],
                                      ["MUVERA total", sizes["total"]], ["brute force (token vectors only)", sizes["tokens"]],
                                      ["single vector (float32)", 4 * docs.dim]]))
    if ndcg < maxsim_ndcg - 0.005:
        notes.append(f"MUVERA+rerank nDCG@10 {ndcg:.4f} is more than 0.5 points below brute-force MaxSim {maxsim_ndcg:.4f}.")
    if qps < 10 * bf_qps:
        notes.append(f"MUVERA+rerank reached {qps / bf_qps:.1f}x the brute-force QPS, short of the 10x goal.")
    if reduction is None:
        notes.append(f"MUVERA ({best_name}) does not reach recall {target:.3f} of the exact top-10 within "
                     f"{max(CANDIDATES)} candidates; no candidate reduction can be measured.")
    elif reduction < 2 and not args.model:
        notes.append(f"At recall {target:.3f} of the exact top-10, MUVERA ({best_name}) needs {c_mu:.0f} candidates and "
                     f"the token-kNN heuristic {c_sv:.0f}: a {reduction:.2f}x reduction, short of the paper's 2-5x. "
                     "all-MiniLM-L6-v2 was not trained for late interaction, and WordNet's short definitions and "
                     "example sentences share exact words, which token kNN finds directly.")
    everyone = (f"; MUVERA+rerank nDCG@10 over all {len(qids)} test queries is {ndcg_all:.4f}" if ndcg_all is not None
                else "")
    measured = (f"all {nq} test queries (brute force took {bf_seconds:.0f} s)" if nq == len(qids) else
                f"a fixed random subset of {nq} of the {len(qids)} test queries (seed {args.seed}; --queries {len(qids)} "
                f"measures every one: about an hour here){everyone}")
    notes.append(f"Brute-force MaxSim, the recall curves and the end-to-end figures use {measured}. Both methods run in "
                 "one process on the same machine in the same run, each answering the whole query batch in one call.")
    return {
        "candidate_reduction_vs_single_vector": reduction,
        "candidate_reduction_muvera_config": best_name,
        "candidate_reduction_recall_target": target,
        "muvera_candidates_at_target": c_mu,
        "single_vector_candidates_at_target": c_sv,
        "muvera_recall_at_100_candidates": muvera_curve[100],
        "single_vector_recall_at_100_candidates": sv_curve[100],
        "muvera_ndcg_at_10": ndcg,
        "maxsim_ndcg_at_10": maxsim_ndcg,
        "single_vector_ndcg_at_10": single_ndcg,
        "muvera_ndcg_at_10_all_test_queries": ndcg_all,
        "muvera_recall_of_exact_top10": top10,
        "muvera_qps": qps,
        "bruteforce_qps": bf_qps,
        "muvera_qps_ratio_vs_bruteforce": qps / bf_qps,
        **({"muvera_hnsw_ndcg_at_10": hnsw["ndcg"], "muvera_hnsw_qps_ratio_vs_bruteforce": hnsw["qps"] / bf_qps,
            "muvera_hnsw_recall_of_exact_top10": hnsw["top10"], "muvera_hnsw_build_seconds": hnsw["build_seconds"]}
           if hnsw else {}),
        "muvera_bytes_per_doc": sizes["total"],
        "bruteforce_bytes_per_doc": sizes["tokens"],
        "muvera_build_seconds": build_seconds,
        "wordnet_queries_measured": nq,
        "wordnet_avg_doc_tokens": avg_doc_tokens,
    }


# ---------------------------------------------------------------- LIMIT-small
def limit_small(args, tables: list, notes: list) -> dict:
    encoder = load_encoder(args)
    ds = load_beir(common.LIMIT_SMALL)
    qids, qtexts, qrels = ds.split("test")
    docs = encoder.encode_tokens(ds.corpus_texts)
    queries = encoder.encode_tokens(qtexts)
    k_values = (2, 10, 20)
    results = {}
    s, p = maxsim_search(queries, docs, 20)
    results["multi-vector (exact MaxSim)"] = evaluate_run(run_from_positions(qids, ds.corpus_ids, s, p), qrels, k_values)
    index = MuveraIndex(docs.dim, candidates=20)
    index.add(docs)
    hits = index.search(queries, 20)
    results["MUVERA + rerank (20 candidates)"] = evaluate_run(run_from_positions(qids, ds.corpus_ids, hits.scores, hits.ids),
                                                             qrels, k_values)
    s, p = exact_search(encoder.encode(qtexts), encoder.encode(ds.corpus_texts), 20)
    results["single-vector (mean pooled)"] = evaluate_run(run_from_positions(qids, ds.corpus_ids, s, p), qrels, k_values)
    tables.append(common.print_table(
        f"LIMIT-small ({len(ds.corpus_ids)} documents, {len(qids)} queries, default model, max_length {encoder.max_length})",
        ["method", "recall@2", "recall@10", "recall@20"],
        [[name, *[r[f"recall@{k}"] for k in k_values]] for name, r in results.items()]))
    mv, sv = results["multi-vector (exact MaxSim)"], results["single-vector (mean pooled)"]
    return {
        "limit_small_multivector_recall_at_2": mv["recall@2"],
        "limit_small_multivector_recall_at_10": mv["recall@10"],
        "limit_small_multivector_recall_at_20": mv["recall@20"],
        "limit_small_muvera_recall_at_2": results["MUVERA + rerank (20 candidates)"]["recall@2"],
        "limit_small_single_vector_recall_at_2": sv["recall@2"],
        "limit_small_single_vector_recall_at_10": sv["recall@10"],
        "limit_small_single_vector_recall_at_20": sv["recall@20"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=300, help="test queries in the brute-force subset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", type=int, default=200, help="FDE candidates reranked (headline figure)")
    parser.add_argument("--sweep", type=int, nargs="*", default=[50, 100, 500], help="more candidate counts to report")
    parser.add_argument("--k-sim", type=int, default=3, help="MUVERA k_sim of the tuned / end-to-end configuration")
    parser.add_argument("--d-proj", type=int, default=64, help="MUVERA d_proj of the tuned / end-to-end configuration")
    parser.add_argument("--r-reps", type=int, default=20, help="MUVERA r_reps of the tuned / end-to-end configuration")
    parser.add_argument("--index", default="flat", choices=["flat", "hnsw"])
    parser.add_argument("--no-hnsw-row", dest="hnsw_row", action="store_false",
                        help="skip the extra end-to-end row with an HNSW graph over the same FDEs (flat runs only)")
    parser.add_argument("--fde-codec", default="float32", choices=["float32", "float16", "int8"])
    parser.add_argument("--final-dim", type=int, default=2048, help="final projection width, 0 for none")
    parser.add_argument("--max-docs", type=int, default=0, help="cut the corpus to this many documents, rounded down to whole encoding chunks (noted in the results)")
    parser.add_argument("--model", help="measure this trained folder (e.g. a MaxSimContrastive run) instead of the "
                                        "default model; its rows are added to the results as trained_* figures")
    parser.add_argument("--single-vector-model", help="with --model: the single-vector model to compare against "
                                                      "(e.g. the same budget of InfoNCE fine-tuning)")
    parser.add_argument("--dry-run", action="store_true", help="print the tables, write no results file")
    parser.add_argument("--encode-only", action="store_true", help="only encode (and cache) the token vectors")
    args = parser.parse_args()
    tables: list = []
    notes: list = []
    if args.encode_only:
        wordnet(args, tables, notes)
        return
    figures = limit_small(args, tables, notes)
    figures = {**wordnet(args, tables, notes), **figures}
    if args.dry_run:
        print(figures, notes)
        return
    if args.model:
        path = add_trained_rows(args, figures, tables, notes)
    else:
        path = common.write_results("multivector", figures, tables=tables, notes=notes)
    print(f"wrote {path}")


def add_trained_rows(args, figures: dict, tables: list, notes: list) -> Path:
    """Add a trained model's figures (``trained_*``), tables and notes to multivector.json, keeping the rest."""
    import json

    path = common.RESULTS / "multivector.json"
    old = json.loads(path.read_text()) if path.exists() else {"figures": {}, "tables": [], "notes": []}
    label = f"trained model {Path(args.model).name}"
    keep = lambda items, key: [t for t in items if not key(t).startswith("[trained")]
    merged = {k: v for k, v in old["figures"].items() if not k.startswith("trained_")}
    merged.update({f"trained_{k}": v for k, v in figures.items()})
    merged["trained_model"] = str(args.model)
    tables = keep(old["tables"], lambda t: t["title"]) + [{**t, "title": f"[{label}] {t['title']}"} for t in tables]
    notes = keep(old["notes"], lambda n: n) + [f"[{label}] {n}" for n in notes]
    command = old.get("command")
    common.write_results("multivector", merged, tables=tables, notes=notes, command=command)
    payload = json.loads(path.read_text())
    payload["trained_command"] = "python " + " ".join(
        os.path.relpath(a, common.ROOT) if os.path.isabs(a) else a for a in sys.argv)
    from embedlab.files import atomic_write

    atomic_write(path, (json.dumps(payload, indent=2) + "\n").encode())
    return path


if __name__ == "__main__":
    main()
