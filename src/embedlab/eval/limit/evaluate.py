"""The LIMIT retrieval table (Weller et al. 2025, figures 3 and 4): recall of single-vector retrieval at
several embedding dimensions next to BM25, hybrid fusion and (when available) multi-vector MaxSim.

Dense rows truncate the default model's embedding to ``d`` coordinates and re-normalise
(``Encoder.encode(dim=d)``, Matryoshka-style; Kusupati et al. 2022). The BM25 and hybrid rows search one
:class:`~embedlab.index.Collection` holding the widest dense vectors and the texts (``text_index=True``, exact
``flat`` index): ``mode="sparse"``, and ``mode="hybrid"`` fusing 100 candidates of each side by reciprocal rank
fusion (Cormack et al. 2009), min-max weighted score fusion and distribution-based score fusion.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from embedlab.errors import InvalidInputError
from embedlab.eval.data import BeirDataset
from embedlab.eval.metrics import evaluate_run
from embedlab.eval.retrieval import run_from_positions
from embedlab.index import Collection, DenseRetriever, maxsim_search
from embedlab.types import Hits, ProgressCallback, report_progress

DEFAULT_DIMS = (32, 64, 128, 256, 384)


def _recalls(hits: Hits, query_ids, corpus_ids, qrels, k_values) -> dict[str, float]:
    run = run_from_positions(query_ids, corpus_ids, hits.scores, hits.ids)
    metrics = evaluate_run(run, qrels, k_values)
    return {f"recall@{k}": metrics[f"recall@{k}"] for k in k_values}


def evaluate_limit(
    dataset: BeirDataset,
    encoder,
    *,
    dims: Sequence[int] = DEFAULT_DIMS,
    k_values: Sequence[int] = (2, 10, 20),
    split: str = "test",
    corpus_embeddings: np.ndarray | None = None,
    multivector: bool = True,
    batch_size: int = 64,
    progress: ProgressCallback | None = None,
) -> dict[str, dict[str, float]]:
    """Recall@k of each retriever on ``split``: ``{"dense d=32": {"recall@2": ...}, ..., "BM25": ...,
    "hybrid RRF": ..., "hybrid weighted": ..., "hybrid DBSF": ..., ["multi-vector MaxSim": ...]}``.

    ``corpus_embeddings`` (float32 ``[n_docs, >= max(dims)]``, full-width, in corpus order) skips
    encoding the corpus: each dense row truncates and re-normalises it, which equals encoding with
    ``dim``. ``multivector`` adds the exact MaxSim row over the encoder's token vectors.
    ``progress(done, total)`` is called after each row.
    """
    query_ids, query_texts, qrels = dataset.split(split)
    if not query_ids:
        raise InvalidInputError(f"evaluate_limit: split {split!r} must judge at least one query, got none.")
    dims = sorted({int(d) for d in dims})
    if not dims or dims[0] < 1 or dims[-1] > encoder.dim:
        raise InvalidInputError(f"evaluate_limit: dims must be ints in [1, {encoder.dim}], got {list(dims)!r}.")
    if not k_values or min(k_values) < 1:
        raise InvalidInputError(f"evaluate_limit: k_values must be positive ints, got {list(k_values)!r}.")
    if not isinstance(multivector, bool):
        raise InvalidInputError(f"evaluate_limit: multivector must be True or False, got {multivector!r}.")
    if corpus_embeddings is not None and corpus_embeddings.shape[0] != len(dataset.corpus_ids):
        raise InvalidInputError(
            f"evaluate_limit: corpus_embeddings must have {len(dataset.corpus_ids)} rows (one per document), "
            f"got {corpus_embeddings.shape[0]}."
        )
    total = len(dims) + 4 + int(bool(multivector))
    rows: dict[str, dict[str, float]] = {}
    dense: dict[int, DenseRetriever] = {}
    for d in dims:
        retriever = DenseRetriever(encoder, dim=d, batch_size=batch_size)
        if corpus_embeddings is None:
            retriever.fit(dataset.corpus_texts)
        else:
            retriever.fit(embeddings=corpus_embeddings)
        dense[d] = retriever
        rows[f"dense d={d}"] = _recalls(retriever.search(query_texts, max(k_values)), query_ids, dataset.corpus_ids,
                                        qrels, k_values)
        report_progress(progress, len(rows), total)
    widest = dense[dims[-1]]
    with tempfile.TemporaryDirectory(prefix="embedlab-limit-") as tmp:
        with Collection.create(Path(tmp) / "limit", dim=dims[-1], index="flat", text_index=True) as col:
            col.add(list(range(len(dataset.corpus_ids))), widest.embeddings_, texts=list(dataset.corpus_texts))
            q = encoder.encode(query_texts, dim=dims[-1], batch_size=batch_size)
            for label, mode, fusion in (("BM25", "sparse", "rrf"), ("hybrid RRF", "hybrid", "rrf"),
                                        ("hybrid weighted", "hybrid", "weighted"), ("hybrid DBSF", "hybrid", "dbsf")):
                hits = col.search(q, max(k_values), mode=mode, fusion=fusion, query_texts=list(query_texts))
                positions = np.array([[-1 if i is None else i for i in row] for row in hits.ids], np.int64)
                rows[label] = _recalls(Hits(positions, hits.scores), query_ids, dataset.corpus_ids, qrels, k_values)
                report_progress(progress, len(rows), total)
    if multivector:
        rows["multi-vector MaxSim"] = _multivector(dataset, encoder, query_ids, query_texts, qrels, k_values, batch_size)
        report_progress(progress, len(rows), total)
    return rows


def _multivector(dataset, encoder, query_ids, query_texts, qrels, k_values, batch_size) -> dict[str, float]:
    """Exact MaxSim (Khattab and Zaharia 2020) of the encoder's token vectors over all documents."""
    docs = encoder.encode_tokens(dataset.corpus_texts, batch_size=batch_size)
    queries = encoder.encode_tokens(query_texts, batch_size=batch_size)
    scores, positions = maxsim_search(queries, docs, max(k_values))
    return _recalls(Hits(positions, scores), query_ids, dataset.corpus_ids, qrels, k_values)
