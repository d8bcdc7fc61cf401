"""The compression benchmark: what each byte saved costs in retrieval quality, on one corpus.

For float32 and every codec, with and without rescoring, on the same corpus and query vectors:
RAM bytes per vector (the codes), disk bytes per vector (codes + the rescoring tier), nDCG@10 and its
retention vs float32, recall@10 of the float32 exact top-10, queries per second and fit time. In the same
run, sentence-transformers' own quantisation pipeline (``quantize_embeddings`` + ``semantic_search_faiss``,
int8 as its ``uint8`` grid and ``ubinary``) is measured on the same vectors as the peer.

Our codecs are fitted on ``fit_vectors``, a sample that is never the corpus being quantised (e.g. training
queries), so the reported quality is what a user gets on vectors the calibration did not see. Rescoring reads
the candidates' float32 (or int8) rows from a memory-mapped ``.npy`` file in ``workdir``.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from embedlab.compress import CodeSearcher, Codec, codec as make_codec, rescore
from embedlab.compress.chain import ChainCodec
from embedlab.compress.search import kernel_of
from embedlab.errors import InvalidInputError
from embedlab.eval.data import Qrels
from embedlab.eval.metrics import evaluate_run
from embedlab.eval.retrieval import run_from_positions

DEFAULT_CODECS = ("float16", "int8", "int8:calibration=percentile", "int4", "int4:calibration=percentile", "binary",
                  "binary:query=float",
                  "pq:48", "pq:64", "opq:48", "opq:64", "pq:96", "truncate:128", "truncate:256",
                  "truncate:256+int8", "truncate:256+binary")
K = 10


@dataclass
class CompressionInputs:
    """Everything one benchmark run scores: float32 unit vectors, ids and judgements.

    ``corpus`` ``[n, d]``, ``queries`` ``[nq, d]`` (``query_ids[i]`` names row ``i``), ``qrels`` the split's
    judgements, ``fit_vectors`` ``[m, d]`` the calibration sample (disjoint from ``corpus``), ``fit_source`` says
    where it came from (reported). ``codebook_sample`` (rows of ``corpus``) is how many seeded corpus rows train
    product-quantisation codebooks, faiss's protocol (the codebook is part of the index); 0 = use ``fit_vectors``.
    PQ/OPQ are then measured both ways, so the strict number is reported too.
    """

    corpus: np.ndarray
    corpus_ids: list[str]
    queries: np.ndarray
    query_ids: list[str]
    qrels: Qrels
    fit_vectors: np.ndarray
    fit_source: str
    name: str = "corpus"
    codebook_sample: int = 0


@dataclass
class Row:
    method: str
    codec: str
    rescore: str
    ram_bytes: float
    disk_bytes: float
    ndcg10: float
    recall10: float
    qps: float
    fit_s: float = 0.0
    fit_on: str = "-"
    retention: float = 0.0
    note: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class CompressionResult:
    rows: list[Row] = field(default_factory=list)
    baseline_ndcg10: float = 0.0
    dim: int = 0
    n: int = 0
    nq: int = 0
    fit_source: str = ""
    oversample: int = 4
    threads: int = 1
    skipped: list[str] = field(default_factory=list)

    def row(self, method: str, codec: str, rescore: str) -> Row | None:
        return next((r for r in self.rows if (r.method, r.codec, r.rescore) == (method, codec, rescore)), None)


def _ndcg(inputs: CompressionInputs, scores: np.ndarray, positions: np.ndarray) -> float:
    run = run_from_positions(inputs.query_ids, inputs.corpus_ids, scores, positions)
    return evaluate_run(run, {q: inputs.qrels[q] for q in inputs.query_ids if q in inputs.qrels}, (K,))["ndcg@10"]


def _recall(positions: np.ndarray, exact: np.ndarray) -> float:
    hits = [np.intersect1d(p[p >= 0], e).size for p, e in zip(positions[:, :K], exact[:, :K])]
    return float(np.mean(hits)) / K


def _timed(fn: Callable[[], object], repeat: int = 1) -> tuple[object, float]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def run_compression(
    inputs: CompressionInputs,
    *,
    codecs: tuple[str, ...] = DEFAULT_CODECS,
    oversample: int = 4,
    qps_queries: int = 1000,
    threads: int = 1,
    peer: bool = True,
    binary_oversample: tuple[int, ...] = (2, 8, 16),
    workdir: str | os.PathLike | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> CompressionResult:
    """Measure float32, every codec in ``codecs`` (with/without float32 rescoring; binary codecs also with int8
    rescoring and with float32 rescoring at each factor of ``binary_oversample``) and the sentence-transformers peer. QPS is timed on the first ``qps_queries`` queries in one
    batch, with ``threads`` faiss/BLAS threads. Codecs that cannot be fitted here are listed in ``skipped``."""
    from threadpoolctl import threadpool_limits
    import faiss

    x, q = np.ascontiguousarray(inputs.corpus, np.float32), np.ascontiguousarray(inputs.queries, np.float32)
    if x.ndim != 2 or q.ndim != 2 or x.shape[1] != q.shape[1] or len(q) != len(inputs.query_ids):
        raise InvalidInputError(f"run_compression: corpus and queries must be (n, d) and (nq, d) with one id per query, "
                                f"got {x.shape}, {q.shape} and {len(inputs.query_ids)} ids.")
    d, nq_t = x.shape[1], min(qps_queries, len(q))
    result = CompressionResult(dim=d, n=len(x), nq=len(q), fit_source=inputs.fit_source, oversample=oversample,
                               threads=threads)
    faiss_threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        with threadpool_limits(threads), tempfile.TemporaryDirectory(dir=workdir) as tmp:
            float_path = Path(tmp) / "float32.npy"
            np.save(float_path, x)
            on_disk = np.load(float_path, mmap_mode="r")
            exact_codec = make_codec("float32").fit(x[:1])
            searcher = CodeSearcher(exact_codec, x)
            (scores, exact), _ = _timed(lambda: searcher.search(q, K))
            _, t = _timed(lambda: searcher.search(q[:nq_t], K))
            base = _ndcg(inputs, scores, exact)
            result.baseline_ndcg10 = base
            result.rows.append(Row("embedlab", "float32", "none", 4 * d, 4 * d, base, 1.0, nq_t / t))
            log(f"float32: nDCG@10 {base:.4f}, {nq_t / t:.0f} QPS")
            int8_rescorer = make_codec("int8").fit(inputs.fit_vectors)
            int8_path = Path(tmp) / "int8.npy"
            np.save(int8_path, int8_rescorer.encode(x))
            int8_disk = np.load(int8_path, mmap_mode="r")
            del searcher
            for spec in codecs:
                _measure_codec(spec, inputs, x, q, exact, on_disk, int8_rescorer, int8_disk, result, oversample, nq_t, log,
                               binary_oversample)
            if peer:
                _measure_peer(inputs, x, q, exact, result, oversample, nq_t, log)
    finally:
        faiss.omp_set_num_threads(faiss_threads)
    for r in result.rows:
        r.retention = r.ndcg10 / base if base else 0.0
    return result


def _measure_codec(spec, inputs, x, q, exact, on_disk, int8_rescorer, int8_disk, result, oversample, nq_t, log,
                   sweep=()):
    fits = [(inputs.fit_vectors, "calibration sample")]
    if inputs.codebook_sample and kernel_of(make_codec(spec)) == "adc":
        rows = np.random.default_rng(0).choice(len(x), min(len(x), inputs.codebook_sample), replace=False)
        fits.insert(0, (x[np.sort(rows)], f"corpus sample ({len(rows)})"))
    for fit_vectors, fit_on in fits:
        c: Codec = make_codec(spec)
        try:
            c.check_dim(x.shape[1])
            _, fit_s = _timed(lambda: c.fit(fit_vectors))
        except InvalidInputError as exc:
            result.skipped.append(f"{spec}: {exc}")
            log(f"skipped {spec}: {exc}")
            return
        _measure_fitted(c, fit_s, fit_on, x, q, exact, on_disk, int8_rescorer, int8_disk, result, oversample, nq_t,
                        log, sweep, inputs)


def _measure_fitted(c, fit_s, fit_on, x, q, exact, on_disk, int8_rescorer, int8_disk, result, oversample, nq_t, log,
                    sweep, inputs):
    stages = c.stages if isinstance(c, ChainCodec) else [c]
    if not any(stage._arrays for stage in stages):
        fit_on = "-"  # the codec learns nothing
    searcher = CodeSearcher(c, c.encode(x))
    ram, d = c.bytes_per_vector, x.shape[1]
    is_binary = "binary" in c.spec
    factors = sorted({oversample, *(sweep if is_binary else ())})
    (scores, cand), _ = _timed(lambda: searcher.search(q, K * max(factors)))
    _, t_plain = _timed(lambda: searcher.search(q[:nq_t], K))
    ndcg = _ndcg(inputs, scores[:, :K], cand[:, :K])
    result.rows.append(Row("embedlab", c.spec, "none", ram, ram, ndcg, _recall(cand, exact), nq_t / t_plain, fit_s,
                           fit_on))
    log(f"{c.spec} [{fit_on}]: {ram} B, nDCG@10 {ndcg:.4f} ({ndcg / result.baseline_ndcg10:.3f}), fit {fit_s:.1f}s")
    tiers = [("float32", on_disk, None, 4 * d, f) for f in factors]
    if is_binary:
        tiers.append(("int8", int8_disk, int8_rescorer, d, oversample))
    for name, store, store_codec, tier_bytes, factor in tiers:
        s, p = rescore(q, cand[:, : K * factor], store, K, codec=store_codec)

        def timed_search():
            _, c_t = searcher.search(q[:nq_t], K * factor)
            return rescore(q[:nq_t], c_t, store, K, codec=store_codec)

        _, t = _timed(timed_search)
        result.rows.append(Row("embedlab", c.spec, f"{name} x{factor}", ram, ram + tier_bytes, _ndcg(inputs, s, p),
                               _recall(p, exact), nq_t / t, fit_s, fit_on))


def _measure_peer(inputs, x, q, exact, result, oversample, nq_t, log):
    """sentence-transformers on the same vectors: ``quantize_embeddings`` codes searched as its pipelines do.

    int8: signed codes, the query quantised with the same ranges, int8·int8 inner products (what its usearch
    ``i8`` index ranks by), rescoring = float query · its dequantised int8 rows (``_dequantize_embeddings``), as
    ``semantic_search_usearch(rescore=True)`` does. binary: ``semantic_search_faiss(corpus_precision="ubinary")``
    itself (faiss binary flat; its rescoring = float query · the unpacked 0/1 bits); its Hamming distances are
    negated into scores (it returns them as "score", lower = better).
    """
    try:
        import logging

        from sentence_transformers.util import quantization as stq
    except ImportError:  # optional test dependency
        result.skipped.append("sentence-transformers peer: the package is not installed")
        return
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    for ranges, label in ((np.stack([x.min(0), x.max(0)]), "int8 (corpus ranges, ST default)"),
                          (np.stack([inputs.fit_vectors.min(0), inputs.fit_vectors.max(0)]),
                           "int8 (calibration-sample ranges)")):
        codes = stq.quantize_embeddings(x, "int8", ranges=ranges)
        codes_f = codes.astype(np.float32)
        searcher = CodeSearcher(make_codec("float32").fit(codes_f[:1]), codes_f)

        def search(queries, k):
            return searcher.search(stq.quantize_embeddings(queries, "int8", ranges=ranges).astype(np.float32), k)

        def search_rescore(queries):
            _, cand = search(queries, K * oversample)
            return rescore(queries, cand, _Dequantised(codes, ranges, stq._dequantize_embeddings), K)

        (sc, pos), _ = _timed(lambda: search(q, K))
        _, t = _timed(lambda: search(q[:nq_t], K))
        result.rows.append(Row("sentence-transformers", label, "none", x.shape[1], x.shape[1], _ndcg(inputs, sc, pos),
                               _recall(pos, exact), nq_t / t, note="int8 query · int8 codes"))
        (sc, pos), _ = _timed(lambda: search_rescore(q))
        _, t = _timed(lambda: search_rescore(q[:nq_t]))
        result.rows.append(Row("sentence-transformers", label, f"dequantised int8 x{oversample}", x.shape[1], x.shape[1],
                               _ndcg(inputs, sc, pos), _recall(pos, exact), nq_t / t))
        log(f"sentence-transformers {label}: nDCG@10 {result.rows[-2].ndcg10:.4f} / rescored {result.rows[-1].ndcg10:.4f}")
        del searcher, codes_f
    codes = stq.quantize_embeddings(x, "ubinary")
    for rescore_on in (False, True):
        def search(queries):
            return stq.semantic_search_faiss(queries, corpus_embeddings=codes, corpus_precision="ubinary", top_k=K,
                                             rescore=rescore_on, rescore_multiplier=oversample, exact=True)[0]

        hits, _ = _timed(lambda: search(q))
        _, t = _timed(lambda: search(q[:nq_t]))
        pos = np.full((len(q), K), -1, np.int64)
        sc = np.full((len(q), K), -np.inf, np.float32)
        for i, row in enumerate(hits):
            for j, h in enumerate(row[:K]):
                pos[i, j], sc[i, j] = h["corpus_id"], h["score"] if rescore_on else -h["score"]
        result.rows.append(Row("sentence-transformers", "binary", f"0/1 bits x{oversample}" if rescore_on else "none",
                               codes.shape[1], codes.shape[1], _ndcg(inputs, sc, pos), _recall(pos, exact), nq_t / t))
        log(f"sentence-transformers binary rescore={rescore_on}: nDCG@10 {result.rows[-1].ndcg10:.4f}")


class _Dequantised:
    """Rows of sentence-transformers int8 codes, dequantised by its own function when read."""

    def __init__(self, codes, ranges, dequantise):
        self.codes, self.ranges, self.dequantise = codes, ranges, dequantise
        self.shape, self.ndim = codes.shape, 2

    def __len__(self):
        return len(self.codes)

    def __getitem__(self, rows):
        return self.dequantise(self.codes[rows], "int8", self.ranges).astype(np.float32)


def beir_inputs(dataset, encoder, *, split: str = "test", fit_split: str | None = None, cache_root=None,
                batch_size: int = 64, fit_size: int = 20000, codebook_sample: int = 20000,
                seed: int = 0) -> CompressionInputs:
    """Encode a BEIR set through the embedding cache (:func:`embedlab.models.cache.cached_encode`).

    The calibration sample is the queries of ``fit_split`` (default: ``"dev"``, else ``"train"``, whichever exists
    and is not ``split``), at most ``fit_size`` of them (seeded sample); with no other split, a seeded half of
    ``split``'s queries (queries are never quantised, so this does not calibrate on the coded corpus).
    """
    from embedlab.models.cache import cached_encode

    root = cache_root
    query_ids, query_texts, qrels = dataset.split(split)
    others = [s for s in ("dev", "train") if s in dataset.splits and s != split]
    if fit_split is not None and fit_split not in dataset.splits:
        raise InvalidInputError(f"beir_inputs: fit_split must be one of {dataset.splits}, got {fit_split!r}.")
    fit_split = fit_split or (others[0] if others else None)
    rng = np.random.default_rng(seed)
    if fit_split is not None and fit_split != split:
        _, fit_texts, _ = dataset.split(fit_split)
        source = f"{fit_split}-split queries"
    else:
        fit_texts = list(query_texts)
        source = f"{split}-split queries (no other split)"
    if len(fit_texts) > fit_size:
        fit_texts = [fit_texts[i] for i in np.sort(rng.choice(len(fit_texts), fit_size, replace=False))]
        source += f", seeded sample of {fit_size}"
    corpus = cached_encode(encoder, dataset.corpus_texts, root=root, batch_size=batch_size)
    queries = cached_encode(encoder, query_texts, root=root, batch_size=batch_size)
    fit = cached_encode(encoder, fit_texts, root=root, batch_size=batch_size)
    return CompressionInputs(corpus, list(dataset.corpus_ids), queries, query_ids, qrels, fit,
                             f"{len(fit)} {source}", name=Path(dataset.path).name, codebook_sample=codebook_sample)
