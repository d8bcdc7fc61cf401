"""Is an upgrade safe without re-indexing? :func:`compatibility_report` puts the three ways to use a new model
side by side on a collection built by the old one:

- ``old_on_old``: the old model's queries on the old index (today);
- ``new_on_old``: the new model's queries (through its alignment map, when it has one) on the same old index: the
  upgrade with no document re-encoded (:mod:`embedlab.train.compat`);
- ``reindexed``: the new model on both sides, every document re-encoded (the cost the others avoid);

and the *backfill* curve between them: a seeded random share ``p`` of the documents re-encoded with the new model
(mapped into the old space, so one query vector ranks both kinds), the rest kept, and the smallest share whose
nDCG@k reaches ``target`` times the re-indexed one (Shen et al. 2020, "Towards Backward-Compatible Representation
Learning", sec. 5, call this backfilling).

The old index is searched through the collection itself; the re-indexed and backfilled ones by exact search.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from embedlab.errors import InvalidInputError
from embedlab.eval.metrics import evaluate_run

SHARES = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
_OWNER = "compatibility_report"
_GET_CHUNK = 10_000


@dataclass(frozen=True)
class CompatReport:
    """nDCG@k (``metric``) of the three setups, the backfill curve ``[(share, ndcg)]`` and ``share_needed`` (None
    when no share in the curve reaches ``target * reindexed``). ``render()`` gives a table a person can read."""

    metric: str
    old_on_old: float
    new_on_old: float
    reindexed: float
    backfill: tuple[tuple[float, float], ...]
    target: float
    share_needed: float | None
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"metric": self.metric, "old_on_old": self.old_on_old, "new_on_old": self.new_on_old,
                "reindexed": self.reindexed, "backfill": [list(p) for p in self.backfill], "target": self.target,
                "share_needed": self.share_needed, **self.details}

    def render(self) -> str:
        lines = [f"{'setup':<44}{self.metric:>10}",
                 f"{'old model, old index (today)':<44}{self.old_on_old:>10.4f}",
                 f"{'new model (+map), old index: no re-encoding':<44}{self.new_on_old:>10.4f}",
                 f"{'new model, re-indexed':<44}{self.reindexed:>10.4f}", "",
                 "backfill (share of documents re-encoded -> " + self.metric + "):"]
        lines += [f"  {share:>5.0%}  {value:.4f}" for share, value in self.backfill]
        need = "not reached" if self.share_needed is None else f"{self.share_needed:.0%}"
        lines.append(f"share needed for {self.target:.0%} of re-indexed: {need}")
        return "\n".join(lines)


def compatibility_report(collection, new_encoder, dataset, *, split: str = "test", k: int = 10,
                         shares=SHARES, target: float = 0.95, seed: int = 0, batch_size: int = 64,
                         new_corpus: np.ndarray | None = None) -> CompatReport:
    """The report (see the module docstring) for ``collection`` (built by the old model, holding the documents of
    ``dataset``, a :class:`~embedlab.eval.data.BeirDataset`, under their ids) and ``new_encoder`` (aligned to the
    collection's space: :func:`~embedlab.train.compat.align`, ``fit(..., old_encoder=)`` or a distilled student).

    ``new_corpus``: the new model's own (unmapped) unit vectors of ``dataset.corpus_texts`` ``[n_docs, d_new]`` when
    already computed (e.g. cached); else they are encoded. ``shares`` (in [0, 1]) are the backfill points."""
    from embedlab.eval.retrieval import exact_metrics, run_from_positions
    from embedlab.index.collection.base import open_encoder

    if collection.encoder is None:
        raise InvalidInputError(f"{_OWNER}: collection must name the old model (created with encoder=), got one "
                                "without an encoder. Re-create it with encoder=the old model.")
    if not 0 < target <= 1 or any(not 0 <= s <= 1 for s in shares):
        raise InvalidInputError(f"{_OWNER}: target must be in (0, 1] and shares in [0, 1], got target={target!r} and "
                                f"shares={list(shares)!r}.")
    _, alignment = open_encoder(new_encoder, collection._manifest, _OWNER)  # refuses an unaligned model
    query_ids, query_texts, qrels = dataset.split(split)
    ids = dataset.corpus_ids
    if not bool(np.all(collection.contains(ids))) or collection.count() != len(ids):
        raise InvalidInputError(f"{_OWNER}: collection must hold exactly the {len(ids)} documents of the dataset under "
                                f"their ids, got {collection.count()} items. Index the dataset's corpus with the old "
                                "model.")

    def on_index(queries: np.ndarray) -> float:  # through the collection's own index
        hits = collection.search(queries, k)
        rows = np.array([[position.get(i, -1) if i is not None else -1 for i in row] for row in hits.ids])
        return evaluate_run(run_from_positions(query_ids, ids, hits.scores, rows), qrels, (k,))[metric]

    def exact(queries: np.ndarray, corpus: np.ndarray) -> float:
        return exact_metrics(queries, corpus, query_ids, ids, qrels, (k,))[metric]

    position, metric = {d: i for i, d in enumerate(ids)}, f"ndcg@{k}"
    old_q = collection.encoder.encode(query_texts, batch_size=batch_size)
    new_q = new_encoder.encode(query_texts, batch_size=batch_size)
    mapped_q = new_q if alignment is None else alignment.apply(new_q)
    old_on_old, new_on_old = on_index(old_q), on_index(mapped_q)
    if new_corpus is None:
        new_corpus = new_encoder.encode(dataset.corpus_texts, batch_size=batch_size)
    elif new_corpus.shape != (len(ids), new_encoder.dim):
        raise InvalidInputError(f"{_OWNER}: new_corpus must have shape ({len(ids)}, {new_encoder.dim}), one row per "
                                f"document, got {new_corpus.shape}. Encode dataset.corpus_texts with new_encoder.")
    reindexed = exact(new_q, new_corpus)

    old_corpus = np.concatenate([np.stack([item["vector"] for item in collection.get(ids[i:i + _GET_CHUNK])])
                                 for i in range(0, len(ids), _GET_CHUNK)])
    mapped_corpus = new_corpus if alignment is None else alignment.apply(new_corpus)
    order = np.random.default_rng(seed).permutation(len(ids))
    curve = []
    for share in sorted(set(float(s) for s in shares)):
        mixed = old_corpus.copy()
        chosen = order[:int(round(share * len(ids)))]
        mixed[chosen] = mapped_corpus[chosen]
        curve.append((share, exact(mapped_q, mixed)))
    needed = next((share for share, value in curve if value >= target * reindexed), None)
    return CompatReport(metric, old_on_old, new_on_old, reindexed, tuple(curve), target, needed,
                        {"alignment": None if alignment is None else alignment.method, "queries": len(query_ids)})
