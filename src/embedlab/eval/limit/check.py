"""Can a ``D``-dimensional embedding realise *your* qrels? The free-embedding test of Weller et al. (2025,
section 4) run on a user's relevance judgements instead of all ``C(n, k)`` subsets.

Free query and document vectors are optimised on the qrels themselves (best case: no encoder, no
natural language); if they cannot put every query's relevant documents strictly above all others in
``D`` dimensions, no single-vector model of that width can either (sign-rank bound, their section 3).
Documents relevant to no query are left out (as in LIMIT-small): only the qrel core is optimised.
"""

from __future__ import annotations

import time
from typing import Mapping

from embedlab.errors import InvalidInputError
from embedlab.params import check_int
from embedlab.eval.limit.capacity import optimize_free_embeddings
from embedlab.eval.limit.qrel_graph import qrel_graph_stats


def _relevant_sets(qrels: Mapping[str, Mapping[str, int]], corpus_ids, owner: str):
    known = None if corpus_ids is None else set(corpus_ids)
    query_ids, sets, doc_pos = [], [], {}
    for qid, docs in qrels.items():
        rel = [d for d, r in docs.items() if r > 0]
        if not rel:
            continue
        if known is not None:
            unknown = [d for d in rel if d not in known]
            if unknown:
                raise InvalidInputError(
                    f"{owner}: qrels must reference documents of the corpus, got unknown document id {unknown[0]!r} "
                    f"in query {qid!r}. Fix the qrels or the corpus."
                )
        query_ids.append(qid)
        sets.append([doc_pos.setdefault(d, len(doc_pos)) for d in rel])
    if not sets:
        raise InvalidInputError(f"{owner}: qrels must hold at least one query with a relevant document, got none. "
                                "Check the split name and the relevance scores (> 0).")
    return query_ids, sets, len(doc_pos)


def check_qrels(
    qrels: Mapping[str, Mapping[str, int]],
    dim: int,
    *,
    corpus_ids=None,
    find_smallest: bool = True,
    max_failing: int = 50,
    **options,
) -> dict:
    """Run the free-embedding optimiser on ``qrels`` (query id -> {doc id -> relevance}) at ``dim``.

    Returns a dict: ``dim``, ``realisable`` (every query's top-``k_i`` is exactly its relevant set),
    ``accuracy`` (fraction of queries right), ``failing_queries`` (up to ``max_failing`` query ids)
    and ``n_failing``; ``smallest_dim``: the smallest dimension found to realise the qrels (galloping
    from ``dim`` then binary search, each probe with ``options["seeds"]``; ``None`` if
    ``find_smallest`` is False), ``dims_tried``; the qrel-graph statistics ``graph_density`` and
    ``average_query_strength`` (Weller et al. 2025, appendix 10); ``n_queries``, ``n_documents``
    (the qrel core) and ``seconds``. ``corpus_ids`` (optional) rejects qrels naming unknown
    documents. ``options`` go to :func:`~embedlab.eval.limit.capacity.optimize_free_embeddings`.
    """
    owner = "check_qrels"
    dim = check_int(dim, owner, "dim")
    start = time.perf_counter()
    query_ids, sets, n_docs = _relevant_sets(qrels, corpus_ids, owner)
    if n_docs < 2:
        raise InvalidInputError(f"{owner}: qrels must name at least 2 distinct relevant documents, got {n_docs}.")
    results = {}

    def run(d: int):
        if d not in results:
            results[d] = optimize_free_embeddings(sets, n_docs, d, **options)
        return results[d]

    main = run(dim)
    smallest = None
    if find_smallest:
        # d = n_docs always works (one-hot documents, each query the sum of its relevant ones).
        lo, hi = 0, None  # largest failing dim, smallest solving dim
        if main.solved:
            hi, probe = dim, dim // 2
            while probe >= 1 and run(probe).solved:
                hi, probe = probe, probe // 2
            lo = max(probe, 0)
        else:
            lo, probe = dim, min(dim * 2, n_docs)
            while not run(probe).solved and probe < n_docs:
                lo, probe = probe, min(probe * 2, n_docs)
            hi = probe if results[probe].solved else None
        while hi is not None and hi - lo > 1:
            mid = (lo + hi) // 2
            if run(mid).solved:
                hi = mid
            else:
                lo = mid
        smallest = hi
    failing = [query_ids[i] for i in main.failing_queries.tolist()] if not main.solved else []
    return {
        "dim": dim,
        "realisable": main.solved,
        "accuracy": main.accuracy,
        "n_failing": len(failing),
        "failing_queries": failing[:max_failing],
        "smallest_dim": smallest,
        "dims_tried": {str(d): r.solved for d, r in sorted(results.items())},
        **{key: value for key, value in qrel_graph_stats(qrels).items() if key != "n_documents"},
        "n_documents": n_docs,
        "seconds": time.perf_counter() - start,
    }
