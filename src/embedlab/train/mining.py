"""Hard-negative mining through a :class:`~embedlab.index.Collection`: for each anchor, the corpus texts that score
high against it but are not its positive.

The recipe is the "positive-aware" mining of NV-Retriever (Moreira et al. 2024: TopK-MarginPos, an absolute margin
below the positive's score, and TopK-PercPos, a fraction of it), as NV-Embed trains with and sentence-transformers'
``mine_hard_negatives`` offers: rank the corpus against the anchor, skip the best ``range_min`` ranks, keep
candidates up to rank ``range_max``, and drop any candidate whose score is within a margin of the positive's score
(a likely unlabelled positive: a false negative). The output is a contrastive
:class:`~embedlab.train.data.PairDataset` with a ``negative`` column, and optionally the JSON-lines file that
:meth:`PairDataset.from_jsonl` reads back.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from embedlab.errors import InvalidInputError
from embedlab.files import atomic_write
from embedlab.index import MAX_K, MAX_RESULTS, Collection
from embedlab.params import check_choice, check_int
from embedlab.train.data import PairDataset
from embedlab.types import ProgressCallback, report_progress

MARGIN_KINDS = ("absolute", "relative")
_OWNER = "mine_hard_negatives"


@dataclass(frozen=True)
class MiningSummary:
    """What :func:`mine_hard_negatives` did, attached to its result as ``.mining``.

    ``rows``: rows of the input data set; ``kept``: rows written (each with ``num_negatives`` negatives);
    ``dropped``: rows that found fewer than ``num_negatives`` negatives and were left out; ``anchors``: distinct
    anchor texts searched; ``corpus``: texts searched over; ``margin_dropped``: candidates dropped by the margin
    (counted per row, within ``[range_min, range_max)``); ``out``: the file written, or ``None``.
    """

    rows: int
    kept: int
    dropped: int
    anchors: int
    corpus: int
    margin_dropped: int
    out: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def mine_hard_negatives(encoder, dataset: PairDataset, corpus: list[str] | None = None, *, collection=None,
                        range_min: int = 0, range_max: int = 50, num_negatives: int = 1, margin: float | None = None,
                        margin_kind: str = "absolute", batch_size: int = 64, out: str | os.PathLike | None = None,
                        progress: ProgressCallback | None = None) -> PairDataset:
    """Mine ``num_negatives`` hard negatives per row of a contrastive ``dataset``.

    The corpus (``corpus``, default: the data set's distinct positives, in first-seen order; duplicates searched
    once) is encoded with ``encoder`` (the ``positive`` column's prompt) into a temporary exact (``"flat"``, cosine)
    :class:`~embedlab.index.Collection`; or pass ``collection``, an open collection of the corpus with its texts
    stored (``add(..., texts=...)``) and vectors from this ``encoder``, which is searched as it is (its metric
    gives the scores). Anchors are encoded with the ``anchor`` prompt; each distinct anchor is searched once.

    For each row, the candidates are the hits that are none of: the anchor's text, the row's positive, or any other
    positive of the same anchor in ``dataset`` (a labelled positive is never a negative); duplicate texts count once.
    Ranks count these candidates only: rank 0 is the best-scoring non-positive. Candidates ranked in
    ``[range_min, range_max)`` are kept, less those within ``margin`` of the positive's score ``s_pos`` (on the
    collection's metric): ``margin_kind="absolute"`` drops ``score > s_pos - margin``, ``"relative"`` drops
    ``score > s_pos * (1 - margin)`` (``margin`` in ``[0, 1]``); ``margin=None`` drops none. The first
    ``num_negatives`` left, best first, are the row's negatives.

    A row with fewer than ``num_negatives`` negatives is **dropped** (every row of a data set has the same count of
    negatives); the counts are in the result's ``.mining`` (:class:`MiningSummary`). When every row is dropped,
    :class:`~embedlab.errors.InvalidInputError` says so and nothing is written. Mined negatives replace a ``negative``
    column the data set already had; prompts carry over. ``out``: also write the rows as JSON lines
    ``{"anchor", "positive", "negative": [...]}`` (atomically). ``progress(done, total)`` counts the corpus texts
    encoded (when this call indexes them) and the anchors searched; returning ``False`` cancels.

    Returns a contrastive :class:`PairDataset` with ``anchor``, ``positive`` and ``negative`` (``num_negatives``
    texts per row), rows in input order.
    """
    if not isinstance(dataset, PairDataset) or dataset.kind != "contrastive":
        got = f"a {dataset.kind} PairDataset" if isinstance(dataset, PairDataset) else type(dataset).__name__
        raise InvalidInputError(f"{_OWNER}: dataset must be a contrastive PairDataset (anchor, positive), got {got}. "
                                "Mine negatives for anchor/positive pairs, not scored pairs.")
    if not (hasattr(encoder, "encode") and hasattr(encoder, "dim")):
        raise InvalidInputError(f"{_OWNER}: encoder must be an Encoder (with encode and dim), got "
                                f"{type(encoder).__name__}. Pass Encoder.load(...).")
    range_min = check_int(range_min, _OWNER, "range_min", low=0)
    range_max = check_int(range_max, _OWNER, "range_max", low=range_min + 1, high=MAX_K,
                          hint="range_max must be above range_min (ranks [range_min, range_max)).")
    num_negatives = check_int(num_negatives, _OWNER, "num_negatives")
    batch_size = check_int(batch_size, _OWNER, "batch_size")
    margin_kind = check_choice(margin_kind, MARGIN_KINDS, _OWNER, "margin_kind")
    margin = _check_margin(margin, margin_kind)
    if collection is not None and corpus is not None:
        raise InvalidInputError(f"{_OWNER}: corpus must be None when collection is given, got {len(corpus)} texts "
                                "too. Pass the corpus or a collection of it, not both.")
    if collection is not None and not hasattr(collection, "search"):
        raise InvalidInputError(f"{_OWNER}: collection must be a Collection, got {type(collection).__name__}.")

    columns = {name: dataset.batch(range(len(dataset)))[name] for name in ("anchor", "positive")}
    anchors, positives = columns["anchor"], columns["positive"]
    prompt_a, prompt_p = dataset.prompts.get("anchor"), dataset.prompts.get("positive")
    labelled: dict[str, set[str]] = {}
    for a, p in zip(anchors, positives):
        labelled.setdefault(a, {a}).add(p)
    distinct = list(labelled)

    distinct_pos = list(dict.fromkeys(positives))
    with tempfile.TemporaryDirectory(prefix="embedlab-mining-") as tmp:
        if collection is None:
            texts = _check_corpus(distinct_pos if corpus is None else corpus)
            total = len(texts) + len(distinct)
            vectors = encoder.encode(texts, prompt=prompt_p, batch_size=batch_size,
                                     progress=None if progress is None else (lambda d, t: progress(d, total)))
            index = Collection.create(Path(tmp) / "corpus", dim=vectors.shape[1], metric="cosine", index="flat")
            index.add(list(range(len(texts))), vectors, texts=texts)
            corpus_size, done = len(texts), len(texts)
        else:
            index, corpus_size, total, done, texts = collection, collection.count(), len(distinct), 0, None
        try:
            metric = getattr(index, "metric", "cosine")
            ranked: dict[str, list[tuple[str, float]]] = {}
            anchor_vecs = []
            k = min(range_max + max(len(s) for s in labelled.values()), MAX_K)
            step = max(1, min(batch_size, MAX_RESULTS // k))
            for start in range(0, len(distinct), step):
                chunk = distinct[start:start + step]
                q = encoder.encode(chunk, prompt=prompt_a, batch_size=batch_size)
                hits = index.search(q, k, include=("text",))
                for i, anchor in enumerate(chunk):
                    ranked[anchor] = _candidates(hits, i, labelled[anchor])
                anchor_vecs.append(q)
                done += len(chunk)
                report_progress(progress, done, total)
        finally:
            if collection is None:
                index.close()
        # the positive's score on the index's scale (the default corpus is the distinct positives, already encoded)
        pos_vecs = vectors if texts == distinct_pos else encoder.encode(distinct_pos, prompt=prompt_p,
                                                                         batch_size=batch_size)
    a_row = {t: i for i, t in enumerate(distinct)}
    p_row = {t: i for i, t in enumerate(distinct_pos)}
    pos_scores = _scores(np.concatenate(anchor_vecs)[[a_row[a] for a in anchors]],
                         pos_vecs[[p_row[p] for p in positives]], metric)

    rows, margin_dropped = {"anchor": [], "positive": [], "negative": []}, 0
    for a, p, s_pos in zip(anchors, positives, pos_scores):
        window = ranked[a][range_min:range_max]
        if margin is not None:
            limit = s_pos - margin if margin_kind == "absolute" else s_pos * (1.0 - margin)
            kept = [t for t, s in window if s <= limit]
            margin_dropped += len(window) - len(kept)
        else:
            kept = [t for t, _ in window]
        if len(kept) >= num_negatives:
            rows["anchor"].append(a)
            rows["positive"].append(p)
            rows["negative"].append(kept[:num_negatives])
    kept_rows = len(rows["anchor"])
    if kept_rows == 0:
        raise InvalidInputError(
            f"{_OWNER}: every row must find num_negatives={num_negatives} negatives to be kept, got none of "
            f"{len(anchors)} rows that did (ranks [{range_min}, {range_max}) of a {corpus_size}-text corpus, "
            f"margin {margin!r} {margin_kind}; {margin_dropped} candidates dropped by the margin). Use a larger "
            "corpus, a wider rank range, fewer negatives or a smaller margin.")
    mined = PairDataset(rows, prompts=dataset.prompts, source=str(out) if out is not None else dataset.source)
    if out is not None:
        lines = (json.dumps({"anchor": a, "positive": p, "negative": n}, ensure_ascii=False)
                 for a, p, n in zip(rows["anchor"], rows["positive"], rows["negative"]))
        atomic_write(out, ("\n".join(lines) + "\n").encode("utf-8"))
    mined.mining = MiningSummary(rows=len(anchors), kept=kept_rows, dropped=len(anchors) - kept_rows,
                                 anchors=len(distinct), corpus=corpus_size, margin_dropped=margin_dropped,
                                 out=None if out is None else str(out))
    return mined


def _check_margin(margin, kind: str) -> float | None:
    if margin is None:
        return None
    high = 1.0 if kind == "relative" else math.inf
    ok = not isinstance(margin, bool) and isinstance(margin, (int, float, np.integer, np.floating))
    if ok and math.isfinite(margin) and 0 <= margin <= high:
        return float(margin)
    expect = "a number in [0, 1] for margin_kind='relative'" if kind == "relative" else "a finite number >= 0"
    raise InvalidInputError(f"{_OWNER}: margin must be {expect} or None, got {margin!r}. "
                            "A margin is how far below the positive's score a negative must score.")


def _check_corpus(corpus) -> list[str]:
    if not isinstance(corpus, (list, tuple)) or not corpus or not all(isinstance(t, str) for t in corpus):
        got = f"{len(corpus)} items" if isinstance(corpus, (list, tuple)) else type(corpus).__name__
        raise InvalidInputError(f"{_OWNER}: corpus must be a non-empty list of str, got {got}. "
                                "Pass the texts to mine from, or None for the data set's positives.")
    return list(dict.fromkeys(corpus))  # a duplicate text would take two ranks


def _candidates(hits, i: int, excluded: set[str]) -> list[tuple[str, float]]:
    """``[(text, score)]`` of query ``i``'s hits, best first: padding, ``excluded`` texts and repeats left out."""
    out, seen = [], set(excluded)
    for item, score in zip(hits.payload[i], hits.scores[i].tolist()):
        if item is None or not math.isfinite(score):
            continue
        text = item.get("text")
        if text is None:
            raise InvalidInputError(f"{_OWNER}: collection must store the corpus texts, got an item without one. "
                                    "Add the corpus with texts=... .")
        if text not in seen:
            seen.add(text)
            out.append((text, score))
    return out


def _scores(a: np.ndarray, p: np.ndarray, metric: str) -> list[float]:
    """Row-wise scores of ``a`` and ``p`` (float32 ``[n, d]``) on a collection metric: cosine, ip, minus squared l2."""
    if metric == "l2":
        return (-((a - p) ** 2).sum(axis=1)).tolist()
    if metric == "cosine":
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    return (a * p).sum(axis=1).tolist()
