"""Qrel-graph statistics of Weller et al. (2025), appendix 10 ("Metrics Measuring Qrel Graph Density").

Both treat queries as nodes joined when they share a relevant document (these are the definitions
that reproduce the paper's LIMIT values, 0.0855 and 28.47, from its qrels):

* graph density ``rho = 2 |E| / (|V| (|V| - 1))`` over that query graph;
* average query strength ``s = (1 / |V|) sum_i sum_{j != i} w_ij`` with ``w_ij`` the Jaccard
  similarity of the two queries' relevant sets.

High values mean many queries overlap in their relevant documents: the "dense" qrel patterns that
are hardest for single-vector retrieval.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from embedlab.errors import InvalidInputError


def qrel_graph_stats(qrels: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """``{"graph_density", "average_query_strength", "n_queries", "n_documents"}`` of positive qrels.

    ``qrels`` maps query id -> {document id -> relevance}; only relevance > 0 counts. Queries with no
    relevant document are left out. Computed with sparse matrix products, ``O(sum_d deg(d)^2)``.
    """
    import scipy.sparse as sp

    rel = {q: [d for d, r in docs.items() if r > 0] for q, docs in qrels.items()}
    rel = {q: docs for q, docs in rel.items() if docs}
    if not rel:
        raise InvalidInputError("qrel_graph_stats: qrels must hold at least one positive judgement, got none.")
    doc_index: dict[str, int] = {}
    rows, cols = [], []
    for i, docs in enumerate(rel.values()):
        for d in docs:
            rows.append(i)
            cols.append(doc_index.setdefault(d, len(doc_index)))
    nq = len(rel)
    A = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(nq, len(doc_index)))
    overlap = (A @ A.T).tocoo()
    off = overlap.row != overlap.col
    r, c, shared = overlap.row[off], overlap.col[off], overlap.data[off]
    sizes = np.asarray(A.sum(axis=1)).ravel()
    jaccard = shared / (sizes[r] + sizes[c] - shared)
    density = float(off.sum()) / (nq * (nq - 1)) if nq > 1 else 0.0
    return {
        "graph_density": density,
        "average_query_strength": float(jaccard.sum()) / nq,
        "n_queries": nq,
        "n_documents": len(doc_index),
    }
